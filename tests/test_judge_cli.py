"""`relforge judge` and `relforge judge agreement` end to end on a tiny BEIR folder with the tiny model."""

from __future__ import annotations

import json

import pytest

from relforge.cli import main
from relforge.judge.summary import read_record


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    d = tmp_path_factory.mktemp("beir")
    docs = [
        {
            "_id": "d1",
            "title": "Anemia",
            "text": "Anemia is caused by a lack of iron, blood loss or B12 deficiency.",
        },
        {"_id": "d2", "title": "Flu", "text": "Influenza causes fever, cough, sore throat and muscle aches."},
        {"_id": "d3", "title": "Knee surgery", "text": "Arthroscopy of the knee repairs torn cartilage."},
        {"_id": "d4", "title": "Iron", "text": "Iron-rich foods include red meat, beans and spinach."},
    ]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    qs = [
        {"_id": "q1", "text": "What causes anemia?"},
        {"_id": "q2", "text": "What are the symptoms of flu?"},
    ]
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in qs))
    (d / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t3\nq1\td4\t1\nq1\td3\t0\nq2\td2\t3\nq2\td3\t0\nq2\td1\t0\n"
    )
    (d / "run_a.txt").write_text(
        "q1 Q0 d1 1 3 a\nq1 Q0 d4 2 2 a\nq1 Q0 d3 3 1 a\nq2 Q0 d2 1 3 a\nq2 Q0 d1 2 2 a\n"
    )
    (d / "run_b.txt").write_text(
        "q1 Q0 d3 1 3 b\nq1 Q0 d4 2 2 b\nq1 Q0 d1 3 1 b\nq2 Q0 d1 1 3 b\nq2 Q0 d2 2 2 b\n"
    )
    (d / "run_c.txt").write_text("q1 Q0 d4 1 3 c\nq1 Q0 d1 2 2 c\nq2 Q0 d2 1 3 c\n")
    return d


def _judge_args(beir, tiny_llm_dir, out, *extra):
    return [
        "judge",
        "--corpus",
        str(beir / "corpus.jsonl"),
        "--queries",
        str(beir / "queries.jsonl"),
        "--pairs",
        str(beir / "qrels.tsv"),
        "--llm",
        f"hf:{tiny_llm_dir}",
        "--out",
        str(out),
        "--no-cache",
        "--no-progress",
        "--max-doc-tokens",
        "32",
        *extra,
    ]


def test_help_lists_subcommands(capsys):
    assert main(["judge", "--help"]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "finetune" in out and "--pairs" in out and "--qrels-out" in out


def test_judge_then_agreement(beir, tiny_llm_dir, tmp_path, capsys):
    out, qrels_out = tmp_path / "judgments.jsonl", tmp_path / "llm.qrels"
    assert main(_judge_args(beir, tiny_llm_dir, out, "--qrels-out", str(qrels_out))) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["qid"], r["docid"]) for r in rows] == [
        ("q1", "d1"),
        ("q1", "d4"),
        ("q1", "d3"),
        ("q2", "d2"),
        ("q2", "d3"),
        ("q2", "d1"),
    ]
    for r in rows:
        assert r["mode"] == "probs" and r["grade"] in (0, 1, 2, 3) and 0 <= r["expected"] <= 3
        assert abs(sum(r["probs"].values()) - 1) < 1e-6 and len(r["template_hash"]) == 12
    assert len(qrels_out.read_text().splitlines()) == 6
    summary = read_record(tmp_path / "judgments.summary.json")
    assert summary.pairs == 6 and summary.unparsed == 0 and summary.pairs_per_s > 0
    assert "judged 6 pairs of 2 queries" in capsys.readouterr().err

    rep, png = tmp_path / "agreement.json", tmp_path / "cm.png"
    runs = [str(beir / f"run_{x}.txt") for x in "abc"]
    assert (
        main(
            [
                "judge",
                "agreement",
                "--human",
                str(beir / "qrels.tsv"),
                "--llm",
                str(out),
                "--out",
                str(rep),
                "--png",
                str(png),
                "--runs",
                *runs,
            ]
        )
        == 0
    )
    report = json.loads(rep.read_text())
    assert report["counts"]["matched"] == 6 and report["all"]["n"] == 6
    assert set(report["system"]["runs"]) == {"run_a", "run_b", "run_c"}
    assert 0 < report["rerank"]["nDCG@10"] <= 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "kendall_tau_b" in printed and "confusion" in printed


def test_calibrate_on_and_thresholds(beir, tiny_llm_dir, tmp_path):
    out = tmp_path / "j.jsonl"
    assert main(_judge_args(beir, tiny_llm_dir, out, "--calibrate-on", str(beir / "qrels.tsv"))) == 0
    summary = read_record(tmp_path / "j.summary.json")
    assert len(summary.thresholds) == 3 and summary.calibrated_on.endswith("qrels.tsv")
    assert main(_judge_args(beir, tiny_llm_dir, out, "--thresholds", "-1,-1,-1", "--overwrite")) == 0
    assert {json.loads(x)["grade"] for x in out.read_text().splitlines()} == {3}


def test_cli_errors(beir, tiny_llm_dir, tmp_path, capsys):
    assert main(["judge", "--corpus", str(beir / "corpus.jsonl")]) == 2
    assert "needs --queries, --pairs, --llm, --out" in capsys.readouterr().err
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("q1\td1\nq7\td1\n")
    args = _judge_args(beir, tiny_llm_dir, tmp_path / "j.jsonl")
    args[args.index("--pairs") + 1] = str(pairs)
    assert main(args) == 5
    assert "unknown query ids (1): ['q7']" in capsys.readouterr().err
    assert main([*args, "--on-missing", "skip"]) == 0
    assert main([*args, "--thresholds", "1,x", "--overwrite"]) == 2
    assert (
        main(
            [
                "judge",
                "agreement",
                "--human",
                str(beir / "qrels.tsv"),
                "--llm",
                str(tmp_path / "j.jsonl"),
                "--runs",
                str(beir / "run_a.txt"),
            ]
        )
        == 2
    )


def test_adapter_auto_resolves_shipped_adapter_and_its_truncation(tmp_path):
    import json

    from relforge.judge.config import JudgeConfig
    from relforge.judge.finetune import shipped_adapter_dir
    from relforge.judge.run import resolve_adapter

    shipped = shipped_adapter_dir()
    trained_budget = json.loads((shipped / "relforge.json").read_text())["max_doc_tokens"]
    adapter, cfg = resolve_adapter("auto", JudgeConfig())
    assert adapter == shipped and cfg.max_doc_tokens == trained_budget
    # an explicit budget wins over the adapter's
    _, cfg = resolve_adapter("auto", JudgeConfig(max_doc_tokens=trained_budget + 7))
    assert cfg.max_doc_tokens == trained_budget + 7
    # a folder without relforge.json leaves the config alone
    adapter, cfg = resolve_adapter(tmp_path, JudgeConfig())
    assert adapter == tmp_path and cfg.max_doc_tokens is None
    assert resolve_adapter(None, JudgeConfig()) == (None, JudgeConfig())


def test_adapter_auto_note_points_to_the_best_preset():
    from relforge.judge.labeller import preset_cv, shipped_adapter_note
    from relforge.judge.preset import JudgePreset

    note = shipped_adapter_note()
    tau = next(iter(preset_cv(JudgePreset.load("best"))["rows"].values()))["kendall_tau_b"]
    assert "--preset best" in note and f"{tau[0]:.3f} +- {tau[1]:.3f}" in note and "5-fold by query" in note
