"""One configurable document layout (``doc_fields``): what BM25, the dense encoder, the groups, the dev
evaluation during training and reranking see, set once in a pipeline YAML or per stage CLI."""

from __future__ import annotations

import json

import pytest

from relforge.cli import main
from relforge.config import parse_config
from relforge.data import read_run, write_corpus, write_qrels, write_queries, write_run
from relforge.types import Document, Query, check_doc_fields, doc_text

DOCS = [
    Document("d1", "Aspirin thins the blood.", title="Aspirin", metadata={"url": "https://x.org/zebraword"}),
    Document("d2", "Ibuprofen eases pain.", title="Ibuprofen", metadata={"url": "https://x.org/other"}),
    Document("d3", "Paracetamol lowers fever.", title="", metadata={"url": " "}),
]


def test_doc_text_layouts():
    assert doc_text(DOCS[0]) == "Aspirin\nAspirin thins the blood."
    assert doc_text(DOCS[2]) == "Paracetamol lowers fever."  # blank title left out
    assert (
        doc_text(DOCS[0], ["title", "text", "url"])
        == "Aspirin\nAspirin thins the blood.\nurl: https://x.org/zebraword"
    )
    assert (
        doc_text(DOCS[2], ["title", "text", "url", "focus"]) == "Paracetamol lowers fever."
    )  # blank/missing
    assert doc_text(DOCS[0], ["text"]) == "Aspirin thins the blood."
    with pytest.raises(ValueError, match="must include 'text'"):
        check_doc_fields(["title", "url"])
    with pytest.raises(ValueError, match="distinct"):
        check_doc_fields(["text", "text"])


def test_pipeline_doc_fields_spread_and_must_agree():
    cfg = parse_config({"doc_fields": ["title", "text", "url"]})
    assert (
        cfg.retrieve.doc_fields == cfg.groups.doc_fields == cfg.rerank.doc_fields == ["title", "text", "url"]
    )
    own = parse_config({"doc_fields": ["title", "text", "url"], "retrieve": {"doc_fields": ["text"]}})
    assert own.retrieve.doc_fields == ["text"] and own.rerank.doc_fields == ["title", "text", "url"]
    assert parse_config({}).groups.doc_fields == ["title", "text"]
    with pytest.raises(Exception, match="groups.doc_fields .* and rerank.doc_fields .* differ"):
        parse_config({"groups": {"doc_fields": ["text"]}})


@pytest.fixture
def files(tmp_path):
    write_corpus(tmp_path / "corpus.jsonl", DOCS)
    write_queries(tmp_path / "queries.jsonl", [Query("q1", "zebraword"), Query("q2", "aspirin blood")])
    write_qrels(tmp_path / "qrels.tsv", {"q1": {"d1": 1}, "q2": {"d1": 1}})
    return tmp_path


def test_bm25_sees_the_layout(files):
    """The url token is found only when the url is a field BM25 indexes; the index saved for one layout is
    not reused for another."""
    args = ["retrieve", "--corpus", str(files / "corpus.jsonl"), "--queries", str(files / "queries.jsonl")]
    args += ["--index-dir", str(files / "idx")]
    assert main([*args, "--out", str(files / "a.trec")]) == 0
    assert main([*args, "--out", str(files / "b.trec"), "--doc-fields", "title,text,url"]) == 0
    assert read_run(files / "a.trec").get("q1", {}) == {}
    assert list(read_run(files / "b.trec")["q1"]) == ["d1"]
    assert main([*args, "--out", str(files / "c.trec"), "--overwrite"]) == 0  # the default layout again
    assert read_run(files / "c.trec").get("q1", {}) == {}
    assert main([*args, "--out", str(files / "d.trec"), "--doc-fields", "title"]) == 2  # no text: refused


def test_groups_texts_follow_the_layout(files):
    write_run(
        files / "run.trec", {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    )
    base = [
        "dataset",
        "build",
        "--queries",
        str(files / "queries.jsonl"),
        "--positives",
        str(files / "qrels.tsv"),
    ]
    base += ["--run", str(files / "run.trec"), "--corpus", str(files / "corpus.jsonl"), "--group-size", "3"]
    assert main([*base, "--out", str(files / "g"), "--doc-fields", "text,url"]) == 0
    row = json.loads((files / "g" / "groups.jsonl").read_text().splitlines()[0])
    assert row["positive"] == "Aspirin thins the blood.\nurl: https://x.org/zebraword"
    assert row["negative_1"] == "Ibuprofen eases pain.\nurl: https://x.org/other"
    from relforge.train.run import groups_doc_fields

    assert groups_doc_fields(files / "g") == ("text", "url")  # what dev evaluation during training shows
    assert groups_doc_fields(files / "g" / "groups.jsonl") == ("text", "url")
    assert groups_doc_fields(files / "nowhere") == ("title", "text")


def test_rerank_and_dense_follow_the_layout(files):
    """MiniLM scores differ when the url line is part of the document (bi-encoder rerank); the dense
    embeddings cache keeps one file per layout."""
    from relforge.retrieve.dense import encode_corpus

    write_run(files / "run.trec", {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}})
    args = ["rerank", "--model", "minilm", "--kind", "bi", "--corpus", str(files / "corpus.jsonl")]
    args += ["--queries", str(files / "queries.jsonl"), "--run", str(files / "run.trec")]
    assert main([*args, "--out", str(files / "a.trec")]) == 0
    assert main([*args, "--out", str(files / "b.trec"), "--doc-fields", "title,text,url"]) == 0
    a, b = read_run(files / "a.trec")["q1"], read_run(files / "b.trec")["q1"]
    assert a["d3"] == pytest.approx(b["d3"], abs=1e-4)  # d3 has no url: the same text
    assert b["d1"] > a["d1"] + 0.05  # the query word is in d1's url
    cache = files / "emb"
    _, e1 = encode_corpus(DOCS, cache_dir=cache, progress=False)
    _, e2 = encode_corpus(DOCS, cache_dir=cache, progress=False, doc_fields=("title", "text", "url"))
    assert len(list(cache.glob("*.npy"))) == 2 and abs(float(e1[0] @ e2[0])) < 0.9999
