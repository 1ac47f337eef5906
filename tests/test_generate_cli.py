"""`relforge generate` end to end with a real (tiny, random) HF model: files, summary, cache, config."""

from __future__ import annotations

import json

from relforge.cli import main
from relforge.data import read_qrels, read_queries, write_corpus
from relforge.types import Document

DOCS = [
    Document(
        f"d{i}",
        f"Document {i} about {topic}: causes, symptoms and treatment.",
        title=topic,
        metadata={"source": src},
    )
    for i, (topic, src) in enumerate(
        [("gout", "A"), ("flu", "A"), ("eczema", "B"), ("asthma", "B"), ("acne", "C")]
    )
]


def test_generate_cli_tiny_model(tmp_path, tiny_llm_dir):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    (tmp_path / "g.yaml").write_text(
        "filters:\n  min_words: 1\n  check_style: false\nmax_new_tokens: 8\n", encoding="utf-8"
    )
    args = [
        "generate",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--out",
        str(tmp_path / "q.jsonl"),
        "--llm",
        f"hf:{tiny_llm_dir}",
        "--sample",
        "3",
        "--diverse-by",
        "source",
        "--per-doc",
        "2",
        "--config",
        str(tmp_path / "g.yaml"),
        "--cache",
        str(tmp_path / "cache.sqlite"),
        "--rejects-out",
        str(tmp_path / "rej.jsonl"),
        "--output",
        "json",
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "q.summary.json").read_text())
    assert summary["documents"] == 3 and summary["generated"] == 6
    assert summary["kept"] + sum(summary["dropped"].values()) == 6  # every query is accounted for
    assert (
        summary["config"]["filters"]["min_words"] == 1 and summary["config"]["max_new_tokens"] == 8
    )  # from YAML
    assert (
        summary["config"]["per_doc"] == 2 and summary["config"]["select"]["diverse_by"] == "source"
    )  # flags
    assert set(summary["selection"]["groups"]) == {"A", "B", "C"}
    queries = read_queries(tmp_path / "q.jsonl")
    assert len(queries) == summary["kept"]
    qrels = read_qrels(tmp_path / "q.qrels.tsv") if queries else {}
    assert {qid: next(iter(d)) for qid, d in qrels.items()} == {
        q.id: q.metadata["doc_id"] for q in queries.values()
    }
    n_rejected = len((tmp_path / "rej.jsonl").read_text().splitlines())
    assert n_rejected == 6 - summary["kept"]
    first = (tmp_path / "q.jsonl").read_bytes()
    assert main([*args, "--overwrite"]) == 0  # rerun: answered from the cache, identical output
    assert (tmp_path / "q.jsonl").read_bytes() == first


def test_generate_cli_usage_errors(tmp_path):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    base = [
        "generate",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--out",
        str(tmp_path / "q.jsonl"),
        "--no-cache",
    ]
    assert (
        main([*base, "--diverse-by", "qtype", "--sample", "2"]) == 2
    )  # no such field: before any model load
    assert main([*base, "--prompt", "nope"]) == 2
    assert main([*base, "--style", "poem"]) == 2  # invalid config value (a usage error naming --style)
    assert (
        main(["generate", "--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "q.jsonl")])
        == 4
    )


def test_generate_cli_nearest_examples(tmp_path, tiny_llm_dir):
    from relforge.data import write_jsonl

    write_corpus(tmp_path / "c.jsonl", DOCS)
    pool = [
        {"document": f"{t} is treated with rest.", "query": f"How is {t} treated?"} for t in ("gout", "acne")
    ]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    base = [
        "generate",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--llm",
        f"hf:{tiny_llm_dir}",
        "--output",
        "json",
    ]
    base += ["--examples", str(tmp_path / "pool.jsonl"), "--n-examples", "1", "--max-new-tokens", "4"]
    base += ["--set", "filters.min_words=1", "--set", "filters.check_style=false"]
    assert main([*base, "--out", str(tmp_path / "f.jsonl")]) == 0
    assert main([*base, "--out", str(tmp_path / "n.jsonl"), "--example-selection", "nearest"]) == 0
    fixed = json.loads((tmp_path / "f.summary.json").read_text())
    near = json.loads((tmp_path / "n.summary.json").read_text())
    assert near["config"]["example_selection"] == "nearest" and near["generated"] == len(DOCS)
    assert near["prompt_hash"] != fixed["prompt_hash"]
