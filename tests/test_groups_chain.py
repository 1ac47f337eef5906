"""The CLI chain (``retrieve mine`` -> ``dataset build``) and ``relforge run`` build identical groups from
identical inputs: plain (no judge), judged, and the soft variant's policies, random negatives included."""

from __future__ import annotations

import json

import pytest

from relforge.cli import main
from relforge.data import read_run
from relforge.pipeline import run_pipeline

GROUP_FLAGS = ["--group-size", "4", "--min-positive-grade", "0", "--mix", "hard,soft,unjudged,random"]


def _config(llm_dir: str) -> dict:
    return {
        "name": "chain",
        # the human training questions stand in for generated ones (no LLM before the judge)
        "data": {
            "source": "sample:medquad",
            "max_docs": 40,
            "test_queries": 3,
            "train_split": "train",
            "train_queries": 8,
        },  # fmt: skip
        "llm": {"spec": f"hf:{llm_dir}", "batch_size": 4},
        "retrieve": {
            "method": "bm25",
            "methods": ["bm25"],
            "top_k": 12,
            "mining": {"rank_min": 1, "num_negatives": 3, "random_share": 0.34},  # 2 hard + 1 random
        },
        "judge": {"adapter": None, "max_doc_tokens": 32, "agreement": {"enabled": False}},
        "groups": {"group_size": 4, "min_positive_grade": 0},
        "train": {"variants": ["plain", "judged", "soft"]},
        "rerank": {"first_stage": "bm25"},
    }


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_llm_dir):
    out = tmp_path_factory.mktemp("chain") / "run"
    run_pipeline(_config(tiny_llm_dir), out, to_stage="groups")
    return out


def _build(run_dir, out, *extra: str) -> None:
    files = {
        "--queries": "generate/queries.jsonl",
        "--positives": "generate/qrels.tsv",
        "--run": "retrieve/candidates.trec",
        "--corpus": "data/corpus.jsonl",
    }
    args = [a for flag, rel in files.items() for a in (flag, str(run_dir / rel))]
    assert main(["dataset", "build", *args, "--out", str(out), *GROUP_FLAGS, *extra]) == 0


SOFT = ["--bad-positive", "keep-as-soft", "--false-negatives", "keep-as-soft"]  # groups.soft_policies


@pytest.mark.parametrize(
    "variant, judged, policies", [("plain", False, []), ("judged", True, []), ("soft", True, SOFT)]
)
def test_cli_chain_and_relforge_run_build_identical_groups(pipeline_run, tmp_path, variant, judged, policies):
    negs = tmp_path / "negatives.jsonl"
    mine = ["retrieve", "mine", "--run", str(pipeline_run / "retrieve/candidates.trec"), "--out", str(negs)]
    mine += [
        "--qrels",
        str(pipeline_run / "generate/qrels.tsv"),
        "--corpus",
        str(pipeline_run / "data/corpus.jsonl"),
    ]
    assert main([*mine, "--rank-min", "1", "--num-negatives", "3", "--random-share", "0.34"]) == 0
    extra = (["--judgments", str(pipeline_run / "judge/judgments.jsonl")] if judged else []) + policies
    _build(pipeline_run, tmp_path / "cli", "--negatives", str(negs), *extra)
    ours, theirs = tmp_path / "cli", pipeline_run / "dataset" / variant
    groups = (theirs / "groups.jsonl").read_text()
    retrieved = read_run(pipeline_run / "retrieve/candidates.trec")
    rows = [json.loads(line) for line in groups.splitlines()]
    outside = [d for r in rows for d in r["doc_ids"][1:] if d not in retrieved[r["qid"]]]
    assert len(rows) >= 4 and outside  # mined random negatives (outside the run) are in the groups
    assert (ours / "groups.jsonl").read_text() == groups
    assert (ours / "summary.json").read_bytes() == (theirs / "summary.json").read_bytes()
    by_source = json.loads((theirs / "summary.json").read_text())["negatives_by_source"]
    assert set(by_source) == {"bm25", "random"}  # random negatives are mining's: the groups draw none
    assert sum(by_source.values()) == sum(len(r["doc_ids"]) - 1 for r in rows)
    # without the mined negatives the CLI buckets every retrieved candidate: other groups
    _build(pipeline_run, tmp_path / "whole", *extra)
    assert (tmp_path / "whole" / "groups.jsonl").read_text() != groups


def test_mine_cli_and_relforge_run_write_the_same_candidates_file(pipeline_run, tmp_path):
    """One writer: ``retrieve mine`` on the run's candidates writes retrieve/negatives.jsonl byte for byte
    (the source read from the run's tag), one record per mined negative: rank and score of the bm25 ones
    in the candidates run, none for the random ones."""
    from relforge.retrieve.candidates import read_candidates

    ours = tmp_path / "negatives.jsonl"
    args = ["retrieve", "mine", "--run", str(pipeline_run / "retrieve/candidates.trec"), "--out", str(ours)]
    args += [
        "--qrels",
        str(pipeline_run / "generate/qrels.tsv"),
        "--corpus",
        str(pipeline_run / "data/corpus.jsonl"),
    ]
    assert main([*args, "--rank-min", "1", "--num-negatives", "3", "--random-share", "0.34"]) == 0
    theirs = pipeline_run / "retrieve/negatives.jsonl"
    assert ours.read_bytes() == theirs.read_bytes()
    records = read_candidates(theirs)
    retrieved = read_run(pipeline_run / "retrieve/candidates.trec")
    hard = [r for r in records if r.source == "bm25"]
    rand = [r for r in records if r.source == "random"]
    assert len(hard) == 2 * len(rand) > 0 and len(records) == len(hard) + len(rand)
    assert all(r.rank is None and r.score is None for r in rand)
    for r in hard:
        ranked = sorted(retrieved[r.query_id].items(), key=lambda x: (-x[1], x[0]))
        assert ranked[r.rank - 1] == (r.doc_id, r.score)
