"""Packaged samples: present, valid BEIR, attributed, small; `relforge data sample/stats/validate/convert`."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from relforge.cli import main
from relforge.data import read_beir, read_qrels, read_table, validate_corpus
from relforge.data.samples import SAMPLES, sample_path
from relforge.errors import UsageError


def test_sample_names_and_unknown_name():
    assert set(SAMPLES) == {"medquad", "liveqa-med"}
    with pytest.raises(UsageError, match=r"unknown sample 'nope'; available: medquad, liveqa-med"):
        sample_path("nope")


def test_samples_total_size_is_small():
    total = sum(p.stat().st_size for name in SAMPLES for p in sample_path(name).rglob("*") if p.is_file())
    assert total < 6_000_000


def test_medquad_sample():
    folder = sample_path("medquad")
    splits = {}
    for sp in ("train", "dev", "test"):
        corpus, queries, qrels = read_beir(folder, sp)  # validates ids against corpus and queries
        splits[sp] = qrels
    assert 300 <= len(corpus) <= 600 and len(queries) == len(corpus)
    assert sum(len(q) for q in splits.values()) == len(queries)
    assert all(len(q) >= 50 for q in splits.values())  # dev and test large enough to evaluate on
    sources = {d.metadata["source"] for d in corpus.values()}
    assert sources == {
        "CancerGov",
        "GARD",
        "GHR",
        "MPlusHealthTopics",
        "NIDDK",
        "NINDS",
        "NIHSeniorHealth",
        "NHLBI",
        "CDC",
    }
    # whole documents, split by document
    split_of_doc = defaultdict(set)
    for sp, qr in splits.items():
        for qid in qr:
            split_of_doc[queries[qid].metadata["document"]].add(sp)
    assert all(len(v) == 1 for v in split_of_doc.values())
    # the same split as a full import
    from relforge.data.medquad import split_units  # noqa: F401  (documented in the README)

    assert all(queries[q].metadata["split"] == sp for sp, qr in splits.items() for q in qr)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for needle in (
        "CC BY 4.0",
        "Ben Abacha",
        "Demner-Fushman",
        "BMC Bioinformatics 20:511, 2019",
        "python -m relforge.data.samples.build",
    ):
        assert needle in readme
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["answered_pairs"] == len(corpus)


def test_liveqa_sample():
    folder = sample_path("liveqa-med")
    corpus, queries, qrels = read_beir(folder, "test")
    assert (len(queries), len(corpus)) == (51, 1065)
    rows = sum(1 for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:] if line.strip())
    assert rows == 1236  # a byte copy; 89 (query, answer) pairs are judged twice upstream, the last row wins
    assert sum(len(v) for v in qrels.values()) == 1147
    assert {g for d in qrels.values() for g in d.values()} == {0, 1, 2, 3}
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for needle in ("CC BY 4.0", "TREC 2017", "LiveQA", "Ben Abacha", "BMC Bioinformatics"):
        assert needle in readme
    v = validate_corpus(folder / "corpus.jsonl")
    assert v["duplicates"] == 0 and v["empty"] == 0


def test_cli_sample_copy(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "sample", "medquad", "--out", str(out)]) == 0
    assert (out / "README.md").exists() and (out / "qrels" / "dev.tsv").exists()
    assert not list(out.rglob("*.py"))
    assert read_qrels(out / "qrels" / "test.tsv") == read_qrels(sample_path("medquad") / "qrels" / "test.tsv")
    assert main(["data", "sample", "medquad", "--out", str(out)]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main(["data", "sample", "medquad", "--out", str(out), "--force"]) == 0
    assert main(["data", "sample", "nope", "--out", str(tmp_path / "x")]) == 2


def test_cli_stats_on_liveqa(capsys):
    assert main(["data", "stats", str(sample_path("liveqa-med"))]) == 0
    out = capsys.readouterr().out
    assert "grade 0" in out and "grade 3" in out and "test=51" in out
    assert main(["data", "stats", str(sample_path("liveqa-med")), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    t = s["qrels"]["test"]
    assert t["labels"] == {"0": 669, "1": 383, "2": 130, "3": 54}  # rows, as in the upstream README
    assert (t["rows"], t["pairs"], t["duplicate_pairs"], t["conflicting_duplicates"]) == (1236, 1147, 89, 89)
    assert s["corpus"]["count"] == 1065 and s["queries"]["words"]["p50"] > 5


def test_cli_validate(tmp_path, capsys):
    assert main(["data", "validate", str(sample_path("medquad"))]) == 0
    assert "duplicate ids" in capsys.readouterr().out
    bad = tmp_path / "bad"
    assert main(["data", "sample", "medquad", "--out", str(bad)]) == 0
    with (bad / "corpus.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"_id": "GARD_x", "text": ""}\n')
    assert main(["data", "validate", str(bad)]) == 5
    assert "1 empty documents" in capsys.readouterr().err
    with (bad / "qrels" / "dev.tsv").open("a", encoding="utf-8") as fh:
        fh.write("nope\tGARD_x\t1\n")
    assert main(["data", "validate", str(bad)]) == 5
    assert "unknown query id 'nope'" in capsys.readouterr().err


def test_cli_convert(tmp_path, capsys):
    src = sample_path("medquad") / "corpus.jsonl"
    assert main(["data", "convert", str(src), str(tmp_path / "c.parquet"), "--kind", "corpus"]) == 0
    assert "(beir -> parquet)" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "convert",
                str(tmp_path / "c.parquet"),
                str(tmp_path / "c.csv"),
                "--kind",
                "corpus",
                "--out-columns",
                "id=docid,text=body",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "convert",
                str(tmp_path / "c.csv"),
                str(tmp_path / "c.jsonl"),
                "--kind",
                "corpus",
                "--columns",
                "id=docid,text=body",
            ]
        )
        == 0
    )
    assert read_table(tmp_path / "c.jsonl", "corpus") == read_table(src, "corpus")
    qrels = sample_path("medquad") / "qrels" / "test.tsv"
    assert main(["data", "convert", str(qrels), str(tmp_path / "q.trec"), "--kind", "qrels"]) == 0
    assert read_qrels(tmp_path / "q.trec") == read_qrels(qrels)
    assert main(["data", "convert", str(src), str(tmp_path / "x.out"), "--kind", "corpus"]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["data", "convert", str(src), str(tmp_path / "x.csv"), "--kind", "docs"]) == 2
