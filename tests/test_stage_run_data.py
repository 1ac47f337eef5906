"""``run`` of the import, generate and retrieve stages called directly on tiny inputs, and the pipeline
stage / CLI command that wrap each one writing the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from relforge.cli import main
from relforge.config import parse_config
from relforge.data import (
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_corpus,
    write_qrels,
    write_queries,
)
from relforge.data.config import ImportConfig
from relforge.errors import UsageError
from relforge.generate.config import FilterConfig, GenerateConfig, SelectConfig
from relforge.llm.base import Completion
from relforge.pipeline import layout
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_data import stage_generate, stage_import
from relforge.retrieve.config import MiningConfig, RetrieveStageConfig
from relforge.types import Document, Query

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "relforge" / "data" / "samples" / "medquad"


class _Runner:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)

    def llm(self, spec, adapter=None, **kw):  # the pipeline's shared LLM, faked
        return WordLLM()


#: made-up condition names: each occurs in one document only
WORDS = ["Zorbitis", "Quandrax", "Velmosis", "Tarnipox", "Brindlecough"]


class WordLLM:
    """Answers each chat with a question naming the condition of its document (deterministic, no model)."""

    name = "word"

    def generate(self, chats, params=None):
        out = []
        for chat in chats:
            word = next(w for w in WORDS if w in chat[-1]["content"])
            out.append(Completion(text=f"what causes {word.lower()} in adults?", finish_reason="stop"))
        return out


# --------------------------------------------------------------------------- import


def test_import_run_picks_disjoint_questions_and_the_pipeline_stage_writes_the_same(tmp_path):
    from relforge.data.run import ImportInputs, ImportSummary, run

    cfg = ImportConfig(
        max_docs=60, test_queries=5, train_split="train", train_queries=4, dev_split="dev", dev_queries=3
    )
    summary = run(cfg, ImportInputs(source=SAMPLE), tmp_path / "cli", log=lambda m: None)
    out = tmp_path / "cli"
    corpus = read_corpus(out / "corpus.jsonl")
    test, train, dev = (read_qrels(out / f"{s}-qrels.tsv") for s in ("test", "train", "dev"))
    assert (len(corpus), len(test), len(train), len(dev)) == (60, 5, 4, 3)
    assert not (set(test) & set(train)) and not (set(dev) & (set(test) | set(train)))
    assert {d for q in (test, train, dev) for docs in q.values() for d in docs} <= set(corpus)
    assert list(read_queries(out / "test-queries.jsonl")) == sorted(test)
    assert (summary.documents, summary.documents_in_source, summary.test_queries) == (60, 412, 5)
    assert (summary.train_split, summary.dev_queries, summary.medquad) == ("train", 3, None)
    assert ImportSummary.read(out / "summary.json") == summary
    text = (out / "summary.json").read_text()
    assert '"medquad"' not in text and text.index('"train_split"') < text.index('"documents"')

    data = cfg.model_dump() | {"source": str(SAMPLE)}
    ctx = StageContext(parse_config({"data": data}), tmp_path / "run", "import", _Runner())
    assert stage_import(ctx) == {"documents": 60, "test_queries": 5}
    for name, rel in (("corpus.jsonl", layout.CORPUS), ("dev-qrels.tsv", layout.DEV_QRELS)):
        assert (out / name).read_bytes() == (tmp_path / "run" / rel).read_bytes()
    assert ImportSummary.read(tmp_path / "run" / layout.DATA_SUMMARY).source == str(SAMPLE)


def test_import_run_names_the_missing_split(tmp_path):
    from relforge.data.run import ImportInputs, run

    with pytest.raises(Exception, match="data.dev_split"):
        run(ImportConfig(dev_split="nope"), ImportInputs(source=SAMPLE), tmp_path, log=lambda m: None)


# --------------------------------------------------------------------------- generate

DOCS = [
    Document(f"d{i}", f"{w} is a condition with symptoms and treatments described here.", title=w)
    for i, w in enumerate(WORDS)
]


def _gen_cfg(**kw) -> GenerateConfig:
    return GenerateConfig(
        select=SelectConfig(sample=3), filters=FilterConfig(check_style=False, min_words=1), **kw
    )


def test_generate_run_writes_queries_positives_and_a_summary_it_reads_back(tmp_path):
    from relforge.generate.run import GenerateInputs, GenerateOutputs, GenerateRecord, run

    write_corpus(tmp_path / "c.jsonl", DOCS)
    opened = []

    def open_llm():
        opened.append(WordLLM())
        return opened[-1]

    s = run(_gen_cfg(), GenerateInputs(corpus=tmp_path / "c.jsonl"), tmp_path / "g", llm=open_llm)
    assert len(opened) == 1 and (s.queries, s.documents) == (3, 3)
    queries = read_queries(tmp_path / "g" / "queries.jsonl")
    qrels = read_qrels(tmp_path / "g" / "qrels.tsv")
    assert {q.metadata["doc_id"]: {q.metadata["doc_id"]: 3} for q in queries.values()} == {
        next(iter(d)): d for d in qrels.values()
    }
    assert all(q.text.startswith("what causes ") for q in queries.values())
    record = GenerateRecord.read(tmp_path / "g" / "summary.json")
    assert record == s.record and (record.kept, record.generated, record.model) == (3, 3, "word")
    assert record.config is None  # no llm_spec: the filter counts only (the pipeline's file)
    assert (tmp_path / "g" / "rejected.jsonl").read_text() == ""

    files = GenerateOutputs.beside(tmp_path / "q.jsonl")
    s2 = run(_gen_cfg(), GenerateInputs(corpus=tmp_path / "c.jsonl"), files, llm=WordLLM(), llm_spec=["x"])
    assert files.summary.name == "q.summary.json" and not (tmp_path / "q.rejected.jsonl").exists()
    assert (s2.record.llm, s2.record.config["select"]["sample"], s2.record.queries) == (
        "x",
        3,
        str(files.queries),
    )
    assert files.queries.read_bytes() == (tmp_path / "g" / "queries.jsonl").read_bytes()


def test_generate_run_human_questions_open_no_llm_and_an_empty_result_can_fail(tmp_path):
    from relforge.generate.run import GenerateInputs, HumanQuestions, run

    write_corpus(tmp_path / "c.jsonl", DOCS)
    write_queries(tmp_path / "hq.jsonl", [Query("h1", "gout diet?"), Query("h2", "flu shot?")])
    write_qrels(tmp_path / "hq.tsv", {"h1": {"d0": 1}, "h2": {"d0": 2}})
    human = HumanQuestions(queries=tmp_path / "hq.jsonl", qrels=tmp_path / "hq.tsv", split="train")

    def no_llm():
        raise AssertionError("no LLM for human questions")

    s = run(_gen_cfg(), GenerateInputs(corpus=tmp_path / "c.jsonl", human=human), tmp_path / "h", llm=no_llm)
    assert s.counts() == {"queries": 2, "documents": 1}
    assert s.record.as_json() == {"source": "human questions, split 'train'", "kept": 2}
    assert list(read_queries(tmp_path / "h" / "queries.jsonl")) == ["h1", "h2"]

    strict = _gen_cfg().model_copy(update={"filters": FilterConfig(min_words=30, max_words=31)})
    with pytest.raises(UsageError, match="kept no query"):
        run(
            strict,
            GenerateInputs(corpus=tmp_path / "c.jsonl"),
            tmp_path / "e",
            llm=WordLLM(),
            require_queries=True,
        )
    assert (tmp_path / "e" / "rejected.jsonl").exists() and not (tmp_path / "e" / "queries.jsonl").exists()


def test_generate_stage_is_the_run_over_the_run_folder(tmp_path):
    cfg = parse_config({"generate": {"select": {"sample": 3}, "filters": {"check_style": False}}})
    write_corpus(tmp_path / layout.CORPUS, DOCS)
    ctx = StageContext(cfg, tmp_path, "generate", _Runner())
    assert stage_generate(ctx) == {"queries": 3, "documents": 3}
    assert len(read_queries(tmp_path / layout.GEN_QUERIES)) == 3
    assert '"documents": 3' in (tmp_path / layout.GEN_SUMMARY).read_text()


# --------------------------------------------------------------------------- retrieve


def test_retrieve_run_writes_candidates_first_stage_runs_and_negatives(tmp_path):
    from relforge.retrieve.run import RetrieveInputs, RetrieveOutputs, RetrieveRecord, run

    write_corpus(tmp_path / "c.jsonl", DOCS)
    write_queries(
        tmp_path / "q.jsonl", [Query("g1", "zorbitis condition symptoms"), Query("g2", "quandrax treatments")]
    )
    write_qrels(tmp_path / "q.tsv", {"g1": {"d0": 3}, "g2": {"d1": 3}})
    write_queries(tmp_path / "t.jsonl", [Query("t1", "velmosis symptoms")])
    cfg = RetrieveStageConfig(
        method="bm25", top_k=4, methods=["bm25"], mining=MiningConfig(rank_min=1, num_negatives=2)
    )
    inputs = RetrieveInputs(
        corpus=tmp_path / "c.jsonl",
        queries=tmp_path / "q.jsonl",
        positives=tmp_path / "q.tsv",
        test_queries=tmp_path / "t.jsonl",
    )
    out = RetrieveOutputs(
        candidates=tmp_path / "cand.trec",
        test_runs={"bm25": tmp_path / "test-bm25.trec"},
        negatives=tmp_path / "neg.jsonl",
        summary=tmp_path / "summary.json",
    )
    s = run(cfg, inputs, out)
    cand, test = read_run(out.candidates), read_run(out.test_runs["bm25"])
    assert (
        set(cand) == {"g1", "g2"}
        and set(test) == {"t1"}
        and next(iter(sorted(test["t1"], key=test["t1"].get, reverse=True))) == "d2"
    )
    from relforge.retrieve.mining import read_negatives

    negs = read_negatives(out.negatives)
    assert set(negs) == {"g1", "g2"} and "d0" not in negs["g1"] and all(len(v) <= 2 for v in negs.values())
    assert s.counts() == {
        "synthetic_queries": 2,
        "test_queries": 1,
        "queries_with_negatives": 2,
        "negatives": sum(len(v) for v in negs.values()),
    }
    record = RetrieveRecord.read(out.summary)
    assert (record.methods, record.candidates, record.top_k, record.dense) == (["bm25"], "bm25", 4, None)
    assert record.mining["queries"] == 2 and s.dense_precision is None


def test_retrieve_cli_writes_what_run_writes(tmp_path):
    from relforge.retrieve.run import RetrieveInputs, RetrieveOutputs, run

    write_corpus(tmp_path / "c.jsonl", DOCS)
    write_queries(
        tmp_path / "q.jsonl", [Query("g1", "zorbitis condition symptoms"), Query("g2", "quandrax treatments")]
    )
    args = ["retrieve", "--corpus", str(tmp_path / "c.jsonl"), "--queries", str(tmp_path / "q.jsonl")]
    assert main([*args, "--top-k", "3", "--out", str(tmp_path / "cli.trec")]) == 0
    cfg = RetrieveStageConfig(top_k=3)
    s = run(
        cfg,
        RetrieveInputs(corpus=tmp_path / "c.jsonl", queries=tmp_path / "q.jsonl"),
        RetrieveOutputs(candidates=tmp_path / "run.trec"),
        tag_prefix="relforge-",
    )
    assert (tmp_path / "cli.trec").read_bytes() == (tmp_path / "run.trec").read_bytes()
    lines = (tmp_path / "cli.trec").read_text().splitlines()
    assert s.candidate_lines == len(lines) and all(line.endswith(" relforge-bm25") for line in lines)


def test_data_import_cli_calls_the_same_run_and_covers_import_config(tmp_path):
    import inspect

    from relforge.data.cli import import_cmd
    from relforge.data.run import ImportInputs, run

    flags = {n: p.default.default for n, p in inspect.signature(import_cmd).parameters.items() if n != "ctx"}
    assert {f: flags.get(f, "<no flag>") for f in ImportConfig.model_fields} == ImportConfig().model_dump()

    yaml_file = tmp_path / "pipeline.yaml"  # a pipeline YAML: its data: section is read as is
    yaml_file.write_text(
        f"name: x\ndata:\n  source: {SAMPLE}\n  dev_split: dev\n  max_docs: 80\n", encoding="utf-8"
    )
    args = ["data", "import", "--config", str(yaml_file), "--set", "test_queries=6", "--dev-queries", "2"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    cfg = ImportConfig(source=str(SAMPLE), dev_split="dev", max_docs=80, test_queries=6, dev_queries=2)
    run(cfg, ImportInputs(source=SAMPLE), tmp_path / "run", log=lambda m: None)
    for name in ("corpus.jsonl", "test-qrels.tsv", "dev-queries.jsonl", "summary.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "run" / name).read_bytes()
    assert main(["data", "import", "--out", str(tmp_path / "bad"), "--set", "test_queries"]) == 2
