"""EvalResult JSON/CSV round trips and the ``relforge evaluate`` command (exit codes, files, errors)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from relforge.cli import main
from relforge.evaluate import EvalResult, evaluate

FIX = Path(__file__).parent / "fixtures" / "eval"
RUNS = [str(FIX / f"{n}.trec") for n in ("bm25", "dense", "reranker")]


@pytest.fixture(scope="module")
def result():
    return evaluate(
        FIX / "qrels.trec",
        {n: Path(p) for n, p in zip(("bm25", "dense", "reranker"), RUNS, strict=True)},
        measures=["nDCG@10", "RR(rel=2)@10", "P@10"],
        permutation_rounds=1000,
        pairs=[("reranker", "dense")],
    )


def test_json_round_trip(result, tmp_path):
    text = result.to_json(tmp_path / "m.json")
    assert EvalResult.from_json(text) == result
    assert EvalResult.from_json(tmp_path / "m.json") == result
    assert result.pairwise and EvalResult.from_json(text).pairwise == result.pairwise
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["format"] == "relforge.eval/1" and d["baseline"] == "bm25"
    assert d["significance"]["dense"]["nDCG@10"]["ttest_p"] == result.significance["dense"]["nDCG@10"].ttest_p
    assert d["settings"]["tie_policy"].startswith("score desc, then doc id asc")
    # NaN p-values (fewer than 2 queries) become null and come back as NaN
    tiny = evaluate({"q1": {"a": 1}}, {"x": {"q1": {"a": 1.0}}, "y": {"q1": {"b": 1.0}}})
    assert '"ttest_p": null' in tiny.to_json()
    back = EvalResult.from_json(tiny.to_json())
    assert math.isnan(back.significance["y"]["nDCG@10"].ttest_p)


def test_csv_round_trip(result, tmp_path):
    result.to_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert [r["run"] for r in rows] == ["bm25", "dense", "reranker"]
    for r in rows:
        assert int(r["n_queries"]) == len(result.queries)
        for m in result.measures:
            assert float(r[m]) == result.aggregates[r["run"]][m]  # exact (repr of floats)
            if r["run"] == "bm25":
                assert r[f"{m} ttest_p"] == "" and r[f"{m} rand_p"] == ""
            else:
                assert float(r[f"{m} ttest_p"]) == result.significance[r["run"]][m].ttest_p
                assert float(r[f"{m} rand_p"]) == result.significance[r["run"]][m].perm_p
    pq = list(csv.DictReader(io.StringIO(result.per_query_csv())))
    assert len(pq) == 3 * len(result.queries)
    for r in pq:
        assert float(r["RR(rel=2)@10"]) == result.per_query[r["run"]]["RR(rel=2)@10"][r["query_id"]]


def test_cli_writes_table_json_csv(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "evaluate",
            "--qrels",
            str(FIX / "qrels.tsv"),
            "--run",
            RUNS[0],
            "--run",
            RUNS[2],
            "--json",
            str(out / "m.json"),
            "--csv",
            str(out / "m.csv"),
            "--per-query",
            str(out / "pq.csv"),
            "--measures",
            "nDCG@10,MRR@10",
            "--rel",
            "2",
            "--rounds",
            "1000",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "bm25 (baseline)" in captured.out and "reranker" in captured.out and "RR(rel=2)@10" in captured.out
    assert "p t-test" in captured.out and "1 qrels queries have no grade > 0" in captured.err
    assert "lacks 1 of 11 queries" in captured.err
    res = EvalResult.from_json(out / "m.json")
    ref = evaluate(
        FIX / "qrels.trec",
        {"bm25": Path(RUNS[0]), "reranker": Path(RUNS[2])},
        measures=["nDCG@10", "MRR@10"],
        rel=2,
        permutation_rounds=1000,
    )
    assert res == ref
    assert f"{ref.aggregates['reranker']['nDCG@10']:.4f}" in captured.out
    assert (out / "m.csv").read_text().startswith("run,n_queries,nDCG@10,")
    assert (out / "pq.csv").read_text().count("\n") == 1 + 2 * 11


def test_cli_names_and_baseline(tmp_path, capsys):
    code = main(
        [
            "evaluate",
            "--qrels",
            str(FIX / "qrels.trec"),
            "--run",
            RUNS[0],
            "--run",
            RUNS[1],
            "--run",
            RUNS[2],
            "--names",
            "A,B,C",
            "--baseline",
            "B",
            "--pair",
            "C:A",
            "--json",
            str(tmp_path / "m.json"),
            "--rounds",
            "500",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = EvalResult.from_json(tmp_path / "m.json")
    assert res.runs == ["A", "B", "C"] and res.baseline == "B" and list(res.significance) == ["A", "C"]
    assert [(c["run"], c["versus"]) for c in res.pairwise] == [("C", "A")]
    assert "Pairwise comparisons" in captured.out and "C vs A" in captured.out
    assert main(["evaluate", "--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--pair", "x"]) == 2


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--qrels", "/nonexistent/qrels.tsv", "--run", RUNS[0]], 4, "/nonexistent/qrels.tsv"),
        (["--qrels", str(FIX / "qrels.trec"), "--run", "/nonexistent/run.trec"], 4, "/nonexistent/run.trec"),
        (["--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--measures", "nDCG@10,Foo@3"], 2, "Foo@3"),
        (["--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--baseline", "zzz"], 2, "zzz"),
        (["--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--names", "a,b"], 2, "--names"),
        (
            ["--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--empty-queries", "drop"],
            2,
            "--empty-queries",
        ),
        (
            ["--qrels", str(FIX / "qrels.trec"), "--run", RUNS[0], "--rounds", "5"],
            2,
            "--rounds: Input should be greater",
        ),
        (["--qrels", str(FIX / "qrels.trec")], 2, "run"),
    ],
)
def test_cli_errors(args, code, needle, capsys):
    assert main(["evaluate", *args]) == code
    captured = capsys.readouterr()
    assert needle in captured.err


def test_cli_malformed_qrels_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tvery\n")
    assert main(["evaluate", "--qrels", str(bad), "--run", RUNS[0]]) == 5
    assert f"{bad}:3" in capsys.readouterr().err
