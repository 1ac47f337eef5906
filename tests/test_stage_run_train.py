"""The groups and train stages' one entry points, relforge.dataset.run.run and relforge.train.run.run, called
directly on tiny inputs; their summary files read back through the classes that wrote them."""

from __future__ import annotations

import inspect
import json

import pytest

from relforge.data import write_corpus, write_qrels, write_queries, write_run
from relforge.dataset.config import DatasetConfig, GroupConfig
from relforge.dataset.run import GroupsInputs, GroupsOutputs, candidate_run, run
from relforge.dataset.summary import DatasetSummary, GroupSetSummary, bucket_summary
from relforge.errors import UsageError
from relforge.outputs import MARKER
from relforge.retrieve.mining import read_negatives
from relforge.types import Document, Query

TOPICS = ["gout", "asthma", "anemia", "glaucoma", "psoriasis", "measles"]


@pytest.fixture()
def files(tmp_path):
    """6 queries, each with its own document as positive; the run retrieves 4 of the 12 documents."""
    corpus = [
        Document(f"{t}-{j}", f"{t} text {j}.", title=t.title() if j else "") for t in TOPICS for j in (0, 1)
    ]
    queries = [Query(f"q-{t}", f"what causes {t}?") for t in TOPICS]
    qrels = {f"q-{t}": {f"{t}-0": 1} for t in TOPICS}
    ids = [d.id for d in corpus]
    run_ = {q: {d: 10.0 - i for i, d in enumerate(ids[:4])} for q in qrels}
    write_corpus(tmp_path / "corpus.jsonl", corpus)
    write_queries(tmp_path / "queries.jsonl", queries)
    write_qrels(tmp_path / "qrels.tsv", qrels)
    write_run(tmp_path / "run.trec", run_)
    # every query's positive is judged relevant, its first two candidates: one hard, one false negative
    js = []
    for q, rel in qrels.items():
        (pos,) = rel
        others = [d for d in ids[:4] if d != pos]
        js += [{"qid": q, "docid": pos, "grade": 3}, {"qid": q, "docid": others[0], "grade": 1}]
        js.append({"qid": q, "docid": others[1], "grade": 2, "expected": 2.4})
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(x) + "\n" for x in js))
    return GroupsInputs(
        queries=tmp_path / "queries.jsonl",
        positives=tmp_path / "qrels.tsv",
        run=tmp_path / "run.trec",
        corpus=tmp_path / "corpus.jsonl",
    )


def test_groups_run_into_a_folder_builds_one_set_and_claims_it(files, tmp_path):
    res = run(GroupConfig(group_size=3), files, tmp_path / "g")
    (summary,) = res.variants.values()
    assert list(res.variants) == ["plain"] and res.counts() == {"plain_groups": 6}
    assert (tmp_path / "g" / MARKER).is_file()  # a plain folder is relforge's output
    assert GroupSetSummary.read(tmp_path / "g" / "summary.json") == summary
    assert summary.judged is False and summary.negatives_drawn["unjudged"] == 12
    rows = [json.loads(x) for x in (tmp_path / "g" / "groups.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in rows] == sorted(f"q-{t}" for t in TOPICS)
    # the run's two best candidates that are not the query's own document, in run order
    assert (
        rows[0]["doc_ids"] == ["anemia-0", "gout-0", "gout-1"] and rows[0]["buckets"][1:] == ["unjudged"] * 2
    )


def test_groups_run_builds_every_variant_and_the_summary_across(files, tmp_path):
    inputs = files.model_copy(update={"judgments": tmp_path / "j.jsonl"})
    folders = {v: tmp_path / "dataset" / v for v in ("plain", "judged", "soft")}
    outputs = GroupsOutputs(folders=folders, summary=tmp_path / "dataset" / "summary.json")
    logged: list[str] = []
    res = run(DatasetConfig(group_size=3, mix=["hard", "soft", "random"]), inputs, outputs, log=logged.append)
    assert not (folders["plain"] / MARKER).exists()  # a pipeline layout is written as it is
    judged, soft = res.variants["judged"], res.variants["soft"]
    assert judged.policies["false_negatives"]["negatives_removed"] == 6
    assert soft.config.false_negatives == "keep-as-soft" and soft.negatives_drawn["hard"] == 12
    assert judged.negatives_drawn == {"hard": 6, "soft": 0, "unjudged": 0, "random": 6}
    assert any(line.startswith("groups soft: false_negatives policy 'keep-as-soft'") for line in logged)
    raw = json.loads(outputs.summary.read_text())
    assert raw == bucket_summary({v: s.as_json() for v, s in res.variants.items()})
    assert list(raw)[:2] == ["buckets", "groups_plain"] and raw["policy_soft_false_negatives"]["policy"] == (
        "keep-as-soft"
    )
    back = DatasetSummary.read(outputs.summary)
    assert back == res.across() and back.variants["judged"].groups == 6 and "plain" not in back.policies
    assert back.as_json() == raw  # the flat file, written back key for key


def test_groups_run_on_empty_error_and_judged_variants_need_judgments(files, tmp_path):
    with pytest.raises(UsageError, match="plain groups: no group could be built"):
        run(GroupConfig(group_size=6, mix=["unjudged"]), files, tmp_path / "g", on_empty="error")
    # at most 4 candidates per query: 5 negatives cannot be drawn (and no random ones)
    assert run(GroupConfig(group_size=6, mix=["unjudged"]), files, tmp_path / "g2").counts() == {
        "plain_groups": 0
    }
    with pytest.raises(UsageError, match="need judgments"):
        run(GroupConfig(), files, GroupsOutputs(folders={"judged": tmp_path / "j"}))
    with pytest.raises(ValueError, match="soft_policies"):  # a plain GroupConfig has no soft variant
        run(GroupConfig(), files.model_copy(update={"judgments": tmp_path / "j.jsonl"}),
            GroupsOutputs(folders={"soft": tmp_path / "s"}))  # fmt: skip


def test_mined_negatives_restrict_the_candidates_in_both_formats(files, tmp_path):
    rows = [{"query_id": "q-gout", "negatives": ["asthma-0", "measles-1"], "random_negatives": ["measles-1"]}]
    (tmp_path / "n.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "n.json").write_text(json.dumps({"q-gout": ["asthma-0", "measles-1"]}))
    assert (
        read_negatives(tmp_path / "n.jsonl")
        == read_negatives(tmp_path / "n.json")
        == {"q-gout": ["asthma-0", "measles-1"]}
    )
    cand = candidate_run(
        {"q-gout": {"gout-1": 3.0, "asthma-0": 2.0}}, {"q-gout": {"gout-0": 1}}, {"q-gout": ["asthma-0", "x"]}
    )
    # the positive and the random negative "x" are outside the run: below its lowest score, in mined order
    assert cand == {"q-gout": {"gout-0": 1.0, "asthma-0": 2.0, "x": pytest.approx(0.998)}}
    res = run(GroupConfig(group_size=3, mix=["unjudged"]), files.model_copy(update={"negatives": tmp_path / "n.json"}),
              tmp_path / "g")  # fmt: skip
    assert res.counts() == {"plain_groups": 1}  # the other queries have no mined negative: no group
    assert json.loads((tmp_path / "g" / "groups.jsonl").read_text())["doc_ids"] == [
        "gout-0",
        "asthma-0",
        "measles-1",
    ]


def test_dataset_build_flags_cover_group_config_with_its_defaults():
    from relforge.cli import app

    (group,) = [g for g in app.registered_groups if g.name == "dataset"]
    (cmd,) = [c for c in group.typer_instance.registered_commands if c.name == "build"]
    params = inspect.signature(cmd.callback).parameters.items()
    flags = {n: p.default.default for n, p in params if n != "ctx"}
    d = GroupConfig()
    expected = d.model_dump() | {
        "mix": ",".join(d.mix),
        "doc_fields": ",".join(d.doc_fields),
    }  # comma-separated
    assert {f: flags.get(f, "<no flag>") for f in GroupConfig.model_fields} == expected


# --------------------------------------------------------------------------- train


@pytest.fixture()
def groups_dir(files, tmp_path):
    run(GroupConfig(group_size=3, sampling="random"), files, tmp_path / "groups")
    return tmp_path / "groups"


def test_train_run_writes_the_model_and_its_summaries(files, groups_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from relforge.train.config import TrainConfig
    from relforge.train.run import TrainInputs, TrainOutputs, TrainSummary
    from relforge.train.run import run as train

    cfg = TrainConfig(kind="bi", max_length=16, batch_groups=3, max_steps=1, logging_steps=1, dev_top_k=3)
    dev = {"dev_corpus": files.corpus, "dev_queries": files.queries, "dev_qrels": files.positives}
    inputs = TrainInputs(groups=groups_dir, **dev, dev_run=files.run)
    out = TrainOutputs(model=tmp_path / "m", summary=tmp_path / "m-summary.json")
    summary = train(cfg, inputs, out)
    assert summary.steps == 1 and summary.groups == 6 and summary.kind == "bi" and summary.config == cfg
    assert summary.selected in ("start", "trained") and summary.dev_curve[0]["step"] == 0
    assert summary.model_dir == str(tmp_path / "m")
    assert TrainSummary.read(out.summary) == summary
    inside = json.loads((tmp_path / "m" / "training_summary.json").read_text())
    assert inside == {k: v for k, v in summary.as_json().items() if k != "model_dir"}
    assert "start_dev_ndcg@10" in inside and "model_dir" not in inside
    scalars = summary.scalars()
    assert scalars["steps"] == 1 and "loss_curve" not in scalars and "best_dev_ndcg@10" in scalars
    assert SentenceTransformer(str(tmp_path / "m")).encode(["gout"]).shape == (1, 384)
    with pytest.raises(UsageError, match="dev evaluation needs all of"):
        train(cfg, TrainInputs(groups=groups_dir, **dev), tmp_path / "m2")


def test_train_run_without_dev_leaves_the_dev_keys_out(groups_dir, tmp_path, monkeypatch):
    import relforge.train.trainer as trainer
    from relforge.train.config import TrainConfig
    from relforge.train.run import TrainInputs, variant_config
    from relforge.train.run import run as train

    seen = []

    def fake(groups, out, cfg, dev=None):
        seen.append((groups, cfg, dev))
        return {"kind": cfg.kind, "steps": 2, "best_dev_ndcg@10": None, "model_dir": str(out)}

    monkeypatch.setattr(trainer, "train_cross_encoder", fake)
    summary = train(TrainConfig(), TrainInputs(groups=groups_dir), tmp_path / "m")
    assert summary.as_json() == {
        "kind": "cross",
        "steps": 2,
        "best_dev_ndcg@10": None,
        "model_dir": str(tmp_path / "m"),
    }
    assert seen[-1][0] == groups_dir and seen[-1][2] is None and (tmp_path / "m" / MARKER).is_file()
    # a pipeline variant: the section's fields only, the soft variant with the soft loss
    from relforge.config import TrainSection

    section = TrainSection(kind="bi", variants=["plain", "soft"], soft_loss="margin_mse")
    assert variant_config(section, "plain", soft_loss=section.soft_loss) == TrainConfig(kind="bi")
    soft = variant_config(section, "soft", soft_loss=section.soft_loss, eval_steps=7)
    assert (soft.loss, soft.eval_steps, type(soft)) == ("margin_mse", 7, TrainConfig)


def test_train_summary_says_whether_it_is_the_untrained_backbone():
    """A bi-encoder whose dev set kept its start is the backbone system, reranked with backend auto as the
    backbone is (its run is reused); a checkpoint, a cross-encoder, no dev selection or another backend is
    not."""
    from relforge.train.run import TrainSummary

    start = TrainSummary(kind="bi", selected="start")
    assert start.kept_start and start.is_backbone("auto")
    assert not start.is_backbone("onnx") and not start.is_backbone("torch")
    assert not TrainSummary(kind="bi", selected="trained").is_backbone("auto")
    assert not TrainSummary(kind="bi").is_backbone("auto")  # no dev set: nothing was selected
    cross = TrainSummary(kind="cross", selected="start")
    assert cross.kept_start and not cross.is_backbone("auto")
