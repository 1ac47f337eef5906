"""Issue 15, family "silently wrong": bad sizes, grades, scores and empty inputs give a clear error
(file:line, non-zero exit) or a counted outcome printed on the console. Real ``relforge`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.test_reliability_outputs import relforge


@pytest.fixture()
def beir(tmp_path) -> Path:
    f = tmp_path / "beir"
    (f / "qrels").mkdir(parents=True)
    (f / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"document number {i}"}) + "\n" for i in range(6))
    )
    (f / "queries.jsonl").write_text('{"_id": "q1", "text": "number one"}\n{"_id": "q2", "text": "two"}\n')
    (f / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t3\nq2\td2\t2\n")
    return f


def _run(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(f"{q} Q0 {d} {i + 1} {s} t\n" for i, (q, d, s) in enumerate(rows)))
    return path


@pytest.mark.parametrize(
    "args, key",
    [
        (("--top-k", "-1"), "top_k"),
        (("--top-k", "0"), "top_k"),
        (("--batch-size", "0"), "batch_size"),
        (("--max-doc-tokens", "-5"), "max_doc_tokens"),
    ],
)
def test_judge_rejects_non_positive_sizes(beir, tmp_path, args, key):
    run = _run(tmp_path / "run.trec", [("q1", "d1", "2"), ("q1", "d2", "1")])
    r = relforge(
        "judge", "--corpus", beir / "corpus.jsonl", "--queries", beir / "queries.jsonl", "--pairs", run,
        "--llm", "smollm2", "--out", tmp_path / "j.jsonl", *args,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    flag = "--" + key.replace("_", "-")  # the message names the flag that set the bad value
    assert args[0] == flag and f"{flag}: Input should be greater than or equal to 1" in r.stderr
    assert not (tmp_path / "j.jsonl").exists()


def test_pipeline_yaml_sizes_rejected(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("judge:\n  top_k: -1\nretrieve:\n  top_k: 0\n")
    r = relforge("run", cfg, "--out", tmp_path / "o", "--dry-run")
    assert r.returncode == 5
    assert "judge.top_k" in r.stderr and "retrieve.top_k" in r.stderr


@pytest.mark.parametrize("score", ["inf", "nan", "-inf"])
def test_non_finite_run_scores_name_file_and_line(beir, tmp_path, score):
    run = _run(tmp_path / "run.trec", [("q1", "d1", "2.0"), ("q1", "d2", score)])
    r = relforge("evaluate", "--qrels", beir / "qrels" / "test.tsv", "--run", run)
    assert r.returncode == 5 and f"{run}:2:" in r.stderr and "finite" in r.stderr


def test_empty_run_and_empty_queries_fail(beir, tmp_path):
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    r = relforge("evaluate", "--qrels", beir / "qrels" / "test.tsv", "--run", empty)
    assert r.returncode == 5 and "empty" in r.stderr
    noq = tmp_path / "q.jsonl"
    noq.write_text("\n")
    r = relforge(
        "retrieve", "--corpus", beir / "corpus.jsonl", "--queries", noq, "--out", tmp_path / "r.trec",
        "--method", "bm25",
    )  # fmt: skip
    assert r.returncode == 5 and "no queries" in r.stderr and not (tmp_path / "r.trec").exists()


def _build(beir: Path, tmp_path: Path, judgments: list[dict]) -> object:
    run = _run(tmp_path / "run.trec", [("q1", f"d{i}", str(9 - i)) for i in range(6)])
    j = tmp_path / "j.jsonl"
    j.write_text("".join(json.dumps(x) + "\n" for x in judgments))
    pos = tmp_path / "pos.tsv"
    pos.write_text("query-id\tcorpus-id\tscore\nq1\td1\t3\n")
    return relforge(
        "dataset", "build", "--queries", beir / "queries.jsonl", "--positives", pos, "--run", run,
        "--corpus", beir / "corpus.jsonl", "--out", tmp_path / "groups", "--judgments", j,
        "--group-size", "3",
    )  # fmt: skip


def test_dataset_build_rejects_out_of_scale_grades_and_nan(beir, tmp_path):
    r = _build(beir, tmp_path, [{"qid": "q1", "docid": "d1", "grade": 7}])
    assert r.returncode == 5 and "j.jsonl:1:" in r.stderr and "outside the judging scale" in r.stderr
    r = _build(beir, tmp_path, [{"qid": "q1", "docid": "d1", "grade": 2}, {"qid": "q1", "docid": "d2",
               "grade": 1, "expected": float("nan")}])  # fmt: skip
    assert r.returncode == 5 and "j.jsonl:2:" in r.stderr and "finite" in r.stderr


def test_dataset_build_counts_and_prints_unknown_ids(beir, tmp_path):
    js = [{"qid": "q1", "docid": "d1", "grade": 3}, {"qid": "q1", "docid": "d3", "grade": 0}]
    js += [{"qid": "nope", "docid": "d1", "grade": 1}, {"qid": "q1", "docid": "ghost", "grade": 0}]
    r = _build(beir, tmp_path, js)
    assert r.returncode == 0, r.stderr
    assert "1 judgments name unknown queries and 1 unknown documents" in r.stderr
    s = json.loads((tmp_path / "groups" / "summary.json").read_text())
    assert s["judgments"]["unknown_query"] == 1 and s["judgments"]["unknown_document"] == 1


def test_data_validate_fails_on_conflicting_duplicate_qrels(beir):
    assert relforge("data", "validate", beir).returncode == 0
    with open(beir / "qrels" / "test.tsv", "a") as fh:
        fh.write("q1\td1\t3\nq1\td1\t0\n")  # an identical repeat is fine, a different grade is not
    r = relforge("data", "validate", beir)
    assert r.returncode == 5 and "judged twice with different grades" in r.stderr and "[5]" in r.stderr


def test_judge_redirected_prints_plain_progress_lines(beir, tmp_path, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("RELFORGE_PROGRESS_INTERVAL", "0")
    run = _run(tmp_path / "run.trec", [("q1", f"d{i}", str(9 - i)) for i in range(6)])
    r = relforge(
        "judge", "--corpus", beir / "corpus.jsonl", "--queries", beir / "queries.jsonl", "--pairs", run,
        "--llm", f"hf:{tiny_llm_dir}", "--out", tmp_path / "j.jsonl", "--no-cache", "--batch-size", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("judging (probs)")]
    # start and end lines are deterministic; lines in between depend on timing (tested on PlainProgress below)
    assert lines[0] == "judging (probs): 0/6 started" and "6/6 (100%)" in lines[-1], r.stderr
    assert "\r" not in r.stderr.split("judging", 1)[1]  # no live-bar redraws in a log file


def test_plain_progress_ticks_while_one_long_batch_runs():
    import io
    import time

    from relforge.progress import PlainProgress

    out = io.StringIO()
    with PlainProgress(4, "judge", interval=0.02, stream=out) as p:
        p.advance(1)
        time.sleep(0.5)  # one long batch: 25 intervals, lines must keep coming from the ticker thread
        p.advance(3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "judge: 0/4 started" and lines[-1].startswith("judge: 4/4 (100%)")
    mid = [ln for ln in lines[1:-1] if ln.startswith("judge: 1/4 (25%)")]
    assert len(mid) >= 2, lines
