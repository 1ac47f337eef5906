"""1-epoch LCE training on a tiny task, reload, ONNX vs torch reranking, and the train/rerank CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from relforge.types import Document, Query

TOPICS = [
    "gout",
    "asthma",
    "anemia",
    "glaucoma",
    "psoriasis",
    "measles",
    "rickets",
    "scurvy",
    "tetanus",
    "rabies",
    "malaria",
    "cholera",
]
ASPECTS = [("causes", "is caused by"), ("symptoms", "shows symptoms such as")]


@pytest.fixture(scope="module")
def task():
    corpus, queries, qrels = {}, {}, {}
    for t in TOPICS:
        for j, (qa, da) in enumerate(ASPECTS):
            corpus[f"{t}-{j}"] = Document(f"{t}-{j}", f"{t} {da} many things.", title=t.title() if j else "")
            queries[f"q-{t}-{j}"] = Query(f"q-{t}-{j}", f"{qa} of {t}?")
            qrels[f"q-{t}-{j}"] = {f"{t}-{j}": 1}
    run = {q: {d: 1.0 for d in corpus} for q in queries}  # every document is a candidate
    return corpus, queries, qrels, run


@pytest.fixture(scope="module")
def groups(task):
    from relforge.dataset import GroupConfig, build_groups

    corpus, queries, qrels, run = task
    ds, _ = build_groups(queries, qrels, run, corpus, None, GroupConfig(group_size=4, sampling="random"))
    return ds


def _mrr(model, ds) -> float:
    from relforge.train.rerank import torch_logits

    cols = ["positive", "negative_1", "negative_2", "negative_3"]
    scores = torch_logits(model, [(r["query"], r[c]) for r in ds for c in cols]).reshape(-1, 4)
    return float(np.mean([1 / (1 + int((s[1:] > s[0]).sum())) for s in scores]))


@pytest.fixture(scope="module")
def trained(groups, task, tmp_path_factory):
    import transformers

    from relforge.train import TrainConfig, train_cross_encoder
    from relforge.train.rerank import load_cross_encoder
    from relforge.train.trainer import DevSet

    corpus, queries, qrels, run = task
    transformers.set_seed(0)
    before = _mrr(load_cross_encoder("minilm", 24), groups)
    out = tmp_path_factory.mktemp("lce") / "model"
    dev_q = list(queries)[:4]
    dev = DevSet(
        corpus,
        queries,
        {q: qrels[q] for q in dev_q},
        {q: {d: float(d in qrels[q]) * 0.5 + (d < "b") for d in corpus} for q in dev_q},
        top_k=4,
    )
    cfg = TrainConfig(max_length=24, batch_groups=6, lr=2e-4, warmup_ratio=0.0, logging_steps=1, eval_steps=2)
    summary = train_cross_encoder(groups, out, cfg, dev=dev)
    return out, summary, before


def test_one_epoch_lce_improves_training_ranking_and_reloads(trained, groups):
    from sentence_transformers import CrossEncoder

    out, summary, before = trained
    assert summary["steps"] == 4  # 24 groups / 6 per step, 1 epoch
    assert [p["step"] for p in summary["dev_curve"]] == [0, 2, 4]  # 0: the untrained start (random head)
    assert summary["selected"] == "trained" and summary["best_checkpoint_step"] in (2, 4)
    assert summary["train_time_s"] > 0 and summary["loss_curve"][0]["step"] == 1
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 4
    assert not (out / ".checkpoints").exists()
    model = CrossEncoder(str(out))  # a plain CrossEncoder folder
    assert model.num_labels == 1
    after = _mrr(model, groups)
    assert after > before + 0.2, (before, after)


def test_onnx_rerank_equals_torch_rerank(trained, task):
    from relforge.train.rerank import OnnxCrossEncoder, load_cross_encoder, rerank, torch_logits

    out, _, _ = trained
    corpus, queries, qrels, run = task
    sub = {q: run[q] for q in list(run)[:6]}
    r_torch = rerank(str(out), corpus, queries, sub, top_k=10, backend="torch")
    r_onnx = rerank(str(out), corpus, queries, sub, top_k=10, backend="onnx")
    assert (out / "onnx" / "model.onnx").exists()  # cached beside the model
    for q in sub:
        assert len(r_onnx[q]) == 10
        assert sorted(r_onnx[q], key=lambda d: (-r_onnx[q][d], d)) == sorted(
            r_torch[q], key=lambda d: (-r_torch[q][d], d)
        )
        assert max(abs(r_onnx[q][d] - r_torch[q][d]) for d in r_torch[q]) < 1e-4
    # int8: cached beside the fp32 export, smaller, approximately the same scores
    r_int8 = rerank(str(out), corpus, queries, sub, top_k=10, backend="onnx-int8")
    q8, f32 = out / "onnx" / "model-int8.onnx", out / "onnx" / "model.onnx"
    assert q8.exists() and q8.stat().st_size < 0.75 * f32.stat().st_size  # embeddings stay fp32
    a = [r_torch[q][d] for q in sub for d in r_torch[q]]
    b = [r_int8[q][d] for q in sub for d in r_torch[q]]
    assert np.corrcoef(a, b)[0, 1] > 0.95 and 0 < max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1.0
    # length-sorted batching returns scores in input order, equal to CrossEncoder.predict's logits
    ce = load_cross_encoder(str(out))
    pairs = [("causes of gout?", "gout is caused by many things " * k) for k in (1, 5, 2, 9)]
    import torch

    want = ce.predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(torch_logits(ce, pairs, batch_size=3), want, atol=1e-4)
    np.testing.assert_allclose(OnnxCrossEncoder(ce, str(out)).predict(pairs, batch_size=3), want, atol=1e-4)


def test_rerank_bi_encoder_and_argument_errors(task):
    from relforge.errors import DataError, UsageError
    from relforge.train.rerank import rerank

    corpus, queries, qrels, run = task
    sub = {q: run[q] for q in list(run)[:3]}
    r = rerank("minilm", corpus, queries, sub, top_k=5, kind="bi")
    q0 = next(iter(sub))
    assert len(r[q0]) == 5 and all(-1.0 <= s <= 1.0 for s in r[q0].values())
    with pytest.raises(UsageError, match="backend 'gpu' is not one of auto, onnx, onnx-int8, torch"):
        rerank("minilm", corpus, queries, sub, backend="gpu")
    onnx = rerank("minilm", corpus, queries, sub, top_k=5, kind="bi", backend="onnx")  # bi-encoders too
    assert max(abs(onnx[q][d] - r[q][d]) for q in r for d in r[q]) < 1e-4
    with pytest.raises(UsageError, match="cannot run on backend 'onnx'"):
        rerank("minilm", corpus, queries, sub, kind="bi", backend="onnx", precision="bf16")
    with pytest.raises(DataError, match="document 'nope'"):
        rerank("minilm", corpus, queries, {q0: {"nope": 1.0}}, kind="bi")


def test_cli_dataset_train_rerank(task, tmp_path):
    from relforge.cli import main
    from relforge.data import read_run, write_corpus, write_qrels, write_queries, write_run

    corpus, queries, qrels, run = task
    write_corpus(tmp_path / "c.jsonl", corpus.values())
    write_queries(tmp_path / "q.jsonl", queries.values())
    write_qrels(tmp_path / "qrels.tsv", qrels)
    sub = {q: run[q] for q in list(run)[:4]}
    write_run(tmp_path / "run.trec", sub)
    (tmp_path / "j.jsonl").write_text(
        "".join(json.dumps({"qid": q, "docid": d, "grade": 3}) + "\n" for q in qrels for d in qrels[q])
    )

    def build(*extra: str) -> int:
        files = [
            "--queries",
            "q.jsonl",
            "--positives",
            "qrels.tsv",
            "--run",
            "run.trec",
            "--corpus",
            "c.jsonl",
        ]
        args = [str(tmp_path / a) if a.endswith((".jsonl", ".tsv", ".trec")) else a for a in files]
        return main(["dataset", "build", *args, *extra])

    assert (
        build("--judgments", str(tmp_path / "j.jsonl"), "--group-size", "4", "--out", str(tmp_path / "g"))
        == 0
    )
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["groups"] == 24 and summary["candidates"]["unjudged"] == 4 * 23  # 4 queries in the run
    assert build("--mix", "hard,bogus", "--out", str(tmp_path / "g2")) == 2
    assert (
        main(["train", "--groups", str(tmp_path / "g"), "--out", str(tmp_path / "m"), "--loss", "nope"]) == 2
    )
    assert (
        main(
            [
                "train",
                "--groups",
                str(tmp_path / "g"),
                "--out",
                str(tmp_path / "m"),
                "--loss",
                "lambda",
                "--max-length",
                "16",
                "--max-steps",
                "1",
                "--batch-groups",
                "4",
            ]
        )
        == 0
    )
    assert (tmp_path / "m" / "training_summary.json").exists()
    out_run = tmp_path / "re.trec"
    model_dir = tmp_path / "m"  # the listwise model just trained by the CLI
    assert (
        main(
            [
                "rerank",
                "--model",
                str(model_dir),
                "--corpus",
                str(tmp_path / "c.jsonl"),
                "--queries",
                str(tmp_path / "q.jsonl"),
                "--run",
                str(tmp_path / "run.trec"),
                "--out",
                str(out_run),
                "--top-k",
                "5",
            ]
        )
        == 0
    )
    got = read_run(out_run)
    assert sorted(got) == sorted(sub) and all(len(v) == 5 for v in got.values())


def _dense_lce(model, ds) -> float:
    """Mean dense-LCE loss of the groups under ``model`` (no gradient)."""
    import torch

    from relforge.train.losses import DenseLCELoss

    cols = ["query", "positive", "negative_1", "negative_2", "negative_3"]
    with torch.no_grad():
        emb = [model.encode(ds[c], convert_to_tensor=True) for c in cols]
        logits = DenseLCELoss(model).group_logits(emb)
    return float(torch.nn.functional.cross_entropy(logits, torch.zeros(len(ds), dtype=torch.long)))


def test_dense_lce_training_lowers_group_loss_and_reloads(task, tmp_path):
    from sentence_transformers import SentenceTransformer

    from relforge.dataset import GroupConfig, build_groups
    from relforge.models import resolve_model
    from relforge.train import TrainConfig, train_bi_encoder

    corpus, queries, qrels, run = task
    # a mapping MiniLM does not know: each question's positive is the topic's OTHER aspect
    flipped = {q: {f"{d[:-1]}{1 - int(d[-1])}": 1 for d in rel} for q, rel in qrels.items()}
    groups, _ = build_groups(
        queries, flipped, run, corpus, None, GroupConfig(group_size=4, sampling="random")
    )
    before = _dense_lce(SentenceTransformer(resolve_model("minilm")), groups)
    cfg = TrainConfig(
        kind="bi", max_length=24, batch_groups=6, lr=1e-4, epochs=2, warmup_ratio=0.0, logging_steps=1
    )
    summary = train_bi_encoder(groups, tmp_path / "bi", cfg)
    assert summary["kind"] == "bi" and summary["loss"] == "lce" and summary["steps"] == 8
    after = _dense_lce(SentenceTransformer(str(tmp_path / "bi")), groups)
    assert after < before - 0.1, (before, after)


@pytest.mark.parametrize(("kind", "loss"), [("cross", "bce"), ("cross", "listnet"), ("bi", "mnrl")])
def test_other_losses_train_and_reload(kind, loss, groups, tmp_path):
    """bce / listnet (cross-encoder) and MNRL (bi-encoder) run a real optimiser step and save loadable models."""
    import math

    from sentence_transformers import CrossEncoder, SentenceTransformer

    from relforge.train import TrainConfig, train_bi_encoder, train_cross_encoder

    cfg = TrainConfig(
        kind=kind,
        loss=loss,
        max_length=24,
        batch_groups=6,
        lr=1e-4,
        max_steps=2,
        warmup_ratio=0.0,
        logging_steps=1,
    )
    train = train_bi_encoder if kind == "bi" else train_cross_encoder
    summary = train(groups, tmp_path / "m", cfg)
    assert summary["loss"] == loss and summary["steps"] == 2
    losses = [p["loss"] for p in summary["loss_curve"]]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    model = SentenceTransformer(str(tmp_path / "m")) if kind == "bi" else CrossEncoder(str(tmp_path / "m"))
    if kind == "bi":
        assert model.encode(["gout"]).shape == (1, 384)
    else:
        assert model.num_labels == 1 and model.predict([("causes of gout?", "gout is caused by")]).shape == (
            1,
        )


def test_dev_selection_keeps_the_untrained_start_unless_a_checkpoint_beats_it(task, tmp_path):
    """Issue 17: with a dev set, step 0 competes. Training on the topic's OTHER aspect is worse than
    MiniLM on the true questions (start kept, written unchanged) and better on the flipped ones."""
    from sentence_transformers import SentenceTransformer

    from relforge.dataset import GroupConfig, build_groups
    from relforge.models import resolve_model
    from relforge.train import TrainConfig, train_bi_encoder
    from relforge.train.trainer import DevSet, dev_ndcg

    corpus, queries, qrels, run = task
    flipped = {q: {f"{d[:-1]}{1 - int(d[-1])}": 1 for d in rel} for q, rel in qrels.items()}
    groups, _ = build_groups(
        queries, flipped, run, corpus, None, GroupConfig(group_size=4, sampling="random")
    )
    cfg = TrainConfig(
        kind="bi",
        max_length=24,
        batch_groups=6,
        lr=1e-4,
        epochs=2,
        warmup_ratio=0.0,
        logging_steps=1,
        eval_steps=4,
    )
    start = SentenceTransformer(resolve_model("minilm")).encode(["causes of gout?", "gout is caused by"])

    true_dev = DevSet(corpus, queries, qrels, run, top_k=len(corpus))
    kept = train_bi_encoder(groups, tmp_path / "kept", cfg, dev=true_dev)
    assert kept["selected"] == "start" and kept["best_checkpoint_step"] == 0
    assert [p["step"] for p in kept["dev_curve"]] == [0, 4, 8]
    assert (
        kept["best_dev_ndcg@10"]
        == kept["start_dev_ndcg@10"]
        > max(p["ndcg@10"] for p in kept["dev_curve"][1:])
    )
    written = SentenceTransformer(str(tmp_path / "kept")).encode(["causes of gout?", "gout is caused by"])
    np.testing.assert_allclose(written, start, atol=1e-5)  # the untrained weights, not the last step's

    flipped_dev = DevSet(corpus, queries, flipped, run, top_k=len(corpus))
    trained = train_bi_encoder(groups, tmp_path / "trained", cfg, dev=flipped_dev)
    assert trained["selected"] == "trained" and trained["best_checkpoint_step"] in (4, 8)
    assert trained["best_dev_ndcg@10"] > trained["start_dev_ndcg@10"]
    moved = SentenceTransformer(str(tmp_path / "trained")).encode(["causes of gout?", "gout is caused by"])
    assert np.abs(moved - start).max() > 1e-3

    # WiSE-FT: the halfway weights compete too; what is written scores on dev what the summary says
    wise_cfg = cfg.model_copy(update={"interpolate": [0.5]})
    wise = train_bi_encoder(groups, tmp_path / "wise", wise_cfg, dev=flipped_dev)
    assert [p["alpha"] for p in wise["interpolation_curve"]] == [0.5]
    assert wise["best_dev_ndcg@10"] == max(
        wise["start_dev_ndcg@10"], trained["best_dev_ndcg@10"], wise["interpolation_curve"][0]["ndcg@10"]
    )
    reloaded = SentenceTransformer(str(tmp_path / "wise"))
    assert dev_ndcg(reloaded, flipped_dev, "bi") == pytest.approx(wise["best_dev_ndcg@10"], abs=1e-9)

    # without the start as a candidate; eval_steps 3 does not divide 8 steps: the last step is scored too
    off_cfg = cfg.model_copy(update={"keep_start": False, "eval_steps": 3})
    off = train_bi_encoder(groups, tmp_path / "off", off_cfg, dev=true_dev)
    assert [p["step"] for p in off["dev_curve"]] == [3, 6, 8]
    assert off["selected"] == "trained" and off["best_checkpoint_step"] in (3, 6, 8)
