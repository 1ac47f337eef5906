"""The judge and agreement stages' one entry points, called directly on tiny inputs (tiny random LLM,
packaged MiniLM): relforge.judge.run.run and relforge.judge.agreement_run.run, and agreement.json read
back through the model that wrote it (the pipeline's summary and the report read it so)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relforge.errors import DataError
from relforge.judge.agreement_run import AgreementInputs, AgreementOutputs, AgreementReport
from relforge.judge.agreement_run import run as run_agreement
from relforge.judge.config import AgreementConfig, JudgeConfig
from relforge.judge.run import JudgeInputs, JudgeOutputs, candidate_pairs, run
from relforge.judge.summary import JudgeRecord, PresetRecord, read_record

FIXTURES = Path(__file__).parent / "fixtures" / "judge-summaries"


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    d = tmp_path_factory.mktemp("beir")
    docs = {
        "d1": "Anemia is caused by a lack of iron, blood loss or B12 deficiency.",
        "d2": "Influenza causes fever, cough, sore throat and muscle aches.",
        "d3": "Arthroscopy of the knee repairs torn cartilage.",
        "d4": "Iron-rich foods include red meat, beans and spinach.",
    }
    (d / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items())
    )
    qs = {"q1": "What causes anemia?", "q2": "What are the symptoms of flu?"}
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in qs.items()))
    grades = [
        ("q1", "d1", 3),
        ("q1", "d4", 1),
        ("q1", "d3", 0),
        ("q2", "d2", 3),
        ("q2", "d3", 0),
        ("q2", "d1", 1),
    ]
    (d / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{x}\t{g}\n" for q, x, g in grades)
    )
    (d / "positives.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\nq1\td1\t1\n")
    (d / "negatives.json").write_text(json.dumps({"q1": ["d4", "d3"], "q2": ["d3"]}))
    return d


def test_candidate_pairs_positives_then_negatives_queries_sorted():
    pairs = candidate_pairs({"q2": {"b": 1}, "q1": {"z": 1, "a": 1}}, {"q1": ["m", "c"], "q9": ["x"]})
    assert pairs == [("q1", "a"), ("q1", "z"), ("q1", "m"), ("q1", "c"), ("q2", "b")]


def test_judge_inputs_read_both_negatives_formats_through_the_one_reader(beir, tmp_path):
    """The judge's candidates: a pipeline run's negatives.json or ``relforge retrieve mine``'s JSONL, read
    by relforge.retrieve.mining.read_negatives (as the groups stage reads them), the same pairs."""
    mined = tmp_path / "negatives.jsonl"
    rows = [{"query_id": "q1", "negatives": ["d4", "d3"], "random_negatives": []}]
    mined.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"query_id": "q2", "negatives": ["d3"]}]))
    files = dict(
        corpus=beir / "corpus.jsonl", queries=beir / "queries.jsonl", positives=beir / "positives.tsv"
    )
    plain = JudgeInputs(**files, negatives=beir / "negatives.json").pairs_to_judge(None)
    assert JudgeInputs(**files, negatives=mined).pairs_to_judge(None) == plain
    assert plain == [("q1", "d1"), ("q1", "d4"), ("q1", "d3"), ("q2", "d2"), ("q2", "d3")]
    (tmp_path / "bad.jsonl").write_text('{"qid": "q1"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: expected a candidate"):
        JudgeInputs(**files, negatives=tmp_path / "bad.jsonl").pairs_to_judge(None)


def test_judge_inputs_need_one_source_of_pairs(tmp_path):
    with pytest.raises(ValueError, match="either pairs or positives"):
        JudgeInputs(corpus=tmp_path, queries=tmp_path)
    with pytest.raises(ValueError, match="either pairs or positives"):
        JudgeInputs(corpus=tmp_path, queries=tmp_path, pairs=tmp_path, positives=tmp_path)


def test_judge_run_pipeline_shape(beir, tiny_llm_dir, tmp_path):
    """positives + negatives (the pipeline's inputs), a short record: the stage's counts and files."""
    from relforge.judge.run import open_llm

    spec = f"hf:{tiny_llm_dir}"
    inputs = JudgeInputs(
        corpus=beir / "corpus.jsonl",
        queries=beir / "queries.jsonl",
        positives=beir / "positives.tsv",
        negatives=beir / "negatives.json",
    )
    outs = JudgeOutputs(
        judgments=tmp_path / "j.jsonl",
        qrels=tmp_path / "q.tsv",
        summary=tmp_path / "s.json",
        record_files=False,
    )
    llm = open_llm(spec, cache=False, batch_size=4)
    summary = run(JudgeConfig(max_doc_tokens=32), inputs, outs, llm=llm, llm_spec=spec, progress=False)
    rows = [json.loads(line) for line in outs.judgments.read_text().splitlines()]
    assert [(r["qid"], r["docid"]) for r in rows] == [
        ("q1", "d1"),
        ("q1", "d4"),
        ("q1", "d3"),
        ("q2", "d2"),
        ("q2", "d3"),
    ]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in rows)
    assert summary.counts() == {"pairs": 5, "unlabelled": 0}
    assert len(outs.qrels.read_text().splitlines()) == 5
    record = read_record(outs.summary)
    assert isinstance(record, JudgeRecord) and record == summary.record
    assert (record.pairs, record.queries, record.adapter, record.llm) == (5, 2, None, spec)
    keys = list(json.loads(outs.summary.read_text()))
    assert keys[-3:] == ["llm_stats", "adapter", "llm"] and "template" not in keys and "config" not in keys


def test_judge_record_counts_the_judged_pairs_by_source(beir, tiny_llm_dir, tmp_path):
    """The summary's ``sources``: each judged pair's origin (the query's own document = ``positive``, a
    mined candidate's retrieval method or ``random``), written and read back through JudgeRecord; a pairs
    file leaves it out, an old negatives file's candidates are ``unknown``."""
    from relforge.judge.run import open_llm
    from relforge.retrieve.candidates import Candidate, write_candidates

    write_candidates(
        tmp_path / "candidates.jsonl",
        [
            Candidate(query_id="q1", doc_id="d4", rank=2, score=0.5, source="hybrid"),
            Candidate(query_id="q1", doc_id="d3", source="random"),
            Candidate(query_id="q2", doc_id="d3", rank=3, score=0.25, source="hybrid"),
        ],
    )
    spec = f"hf:{tiny_llm_dir}"
    llm = open_llm(spec, cache=False, batch_size=4)
    files = dict(corpus=beir / "corpus.jsonl", queries=beir / "queries.jsonl")

    def record(name: str, **inputs) -> JudgeRecord:
        outs = JudgeOutputs(judgments=tmp_path / f"{name}.jsonl", summary=tmp_path / f"{name}.json")
        cfg = JudgeConfig(max_doc_tokens=16)
        run(cfg, JudgeInputs(**files, **inputs), outs, llm=llm, llm_spec=spec, progress=False)
        rec = read_record(outs.summary)
        assert rec.write(tmp_path / "again.json").read_bytes() == outs.summary.read_bytes()
        return rec

    pos = beir / "positives.tsv"
    rec = record("mined", positives=pos, negatives=tmp_path / "candidates.jsonl")
    assert rec.sources == {"hybrid": 2, "positive": 2, "random": 1} and rec.pairs == 5
    assert json.loads((tmp_path / "mined.json").read_text())["sources"] == rec.sources
    assert record("old", positives=pos, negatives=beir / "negatives.json").sources == {
        "positive": 2,
        "unknown": 3,
    }
    assert record("own", positives=pos).sources == {"positive": 2}
    assert record("pairs", pairs=beir / "qrels.tsv").sources is None
    assert "sources" not in json.loads((tmp_path / "pairs.json").read_text())


def test_judge_run_cli_shape(beir, tiny_llm_dir, tmp_path):
    """A pairs file cut to top_k, the LLM opened from its spec, the full record beside the judgments."""
    run_file = tmp_path / "run.trec"
    run_file.write_text("q1 Q0 d1 1 3 a\nq1 Q0 d4 2 2 a\nq1 Q0 d3 3 1 a\nq2 Q0 d2 1 3 a\nq2 Q0 d1 2 2 a\n")
    inputs = JudgeInputs(corpus=beir / "corpus.jsonl", queries=beir / "queries.jsonl", pairs=run_file)
    out = tmp_path / "judgments.jsonl"
    cfg = JudgeConfig(top_k=1, mode="generate", max_doc_tokens=16, max_new_tokens=2)
    summary = run(cfg, inputs, out, llm_spec=f"hf:{tiny_llm_dir}", cache=False, progress=False)
    assert summary.pairs == 2 and summary.preset is None
    rec = read_record(tmp_path / "judgments.summary.json")
    assert isinstance(rec, JudgeRecord) and rec == summary.record
    assert (rec.pairs_file, rec.out, rec.qrels_out) == (str(run_file), str(out), None)
    assert rec.config["top_k"] == 1 and rec.config["mode"] == "generate" and rec.template
    keys = list(json.loads((tmp_path / "judgments.summary.json").read_text()))
    assert keys[-8:] == [
        "llm",
        "llm_backend",
        "adapter",
        "template",
        "pairs_file",
        "out",
        "qrels_out",
        "config",
    ]
    assert [json.loads(x)["docid"] for x in out.read_text().splitlines()] == ["d1", "d2"]


@pytest.mark.parametrize(
    "name, cls",
    [
        ("cli", JudgeRecord),
        ("calibrated", JudgeRecord),
        ("generate", JudgeRecord),
        ("pipeline", JudgeRecord),
        ("preset-cli", PresetRecord),
        ("preset-pipeline", PresetRecord),
    ],
)
def test_judge_summary_files_read_and_written_back_byte_identical(name, cls, tmp_path):
    """Summary files the untyped writer wrote (relforge judge, --calibrate-on, generate mode, the pipeline's
    record, a preset's of both): read by their class, written back byte for byte."""
    path = FIXTURES / f"{name}.json"
    rec = read_record(path)
    assert type(rec) is cls
    assert rec.write(tmp_path / "s.json").read_bytes() == path.read_bytes()


def test_judge_summary_is_typed_and_refuses_unknown_keys(tmp_path):
    rec = read_record(FIXTURES / "pipeline.json")
    assert (rec.pairs, rec.grades, rec.cache_hits, rec.template) == (
        5,
        {"0": 5, "1": 0, "2": 0, "3": 0},
        0,
        None,
    )
    data = json.loads((FIXTURES / "pipeline.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps({**data, "pairz": 1}))
    with pytest.raises(ValueError, match="pairz"):
        read_record(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({**data, "pairs": "many"}))
    with pytest.raises(ValueError, match="pairs"):
        read_record(tmp_path / "bad.json")


def test_judge_run_refuses_calibration_outside_probs(beir, tmp_path):
    from relforge.errors import UsageError

    inputs = JudgeInputs(
        corpus=beir / "corpus.jsonl",
        queries=beir / "queries.jsonl",
        pairs=beir / "qrels.tsv",
        calibrate_on=beir / "qrels.tsv",
    )
    with pytest.raises(UsageError, match="needs --mode probs"):
        run(JudgeConfig(mode="generate"), inputs, tmp_path / "j.jsonl", llm_spec="hf:none")


def test_agreement_run_writes_and_reads_back_the_report(beir, tiny_llm_dir, tmp_path):
    spec = f"hf:{tiny_llm_dir}"
    outs = AgreementOutputs(
        agreement=tmp_path / "judge" / "agreement.json", confusion={"judge": tmp_path / "cm.png"}
    )
    logged: list[str] = []
    summary = run_agreement(
        AgreementConfig(queries="all", max_pairs=5),
        AgreementInputs(human=beir, human_name="tiny-human"),
        outs,
        judge=JudgeConfig(max_doc_tokens=32),
        seed=3,
        llm_spec=spec,
        log=logged.append,
    )
    raw = json.loads(outs.agreement.read_text())
    assert list(raw) == ["judge", "minilm_cosine"]
    judge, cos = raw["judge"], raw["minilm_cosine"]
    assert judge["n"] == cos["n"] == judge["pairs"] == 5 and judge["human"] == "tiny-human"
    assert judge["queries_from"] == "all" and judge["llm"] == spec and judge["adapter"] is None
    assert (
        judge["labeller"] == f"LLM judge {spec}, zero-shot (relevance-0to3, probs)" and "labeller" not in cos
    )
    assert list(judge)[:3] == ["n", "tau_b", "per_query_tau_b"] and list(cos)[:2] == ["model", "n"]
    assert summary.counts()["pairs"] == 5 and summary.minilm_tau_b == cos["tau_b"]
    assert summary.judge_tau_b == judge["tau_b"] and outs.confusion["judge"].exists()
    # the file reads back through the model unchanged, and writes back byte for byte
    back = AgreementReport.read(outs.agreement)
    assert back.entries() == raw and back.judge.tau_b == judge["tau_b"]
    back.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == outs.agreement.read_bytes()


def test_agreement_run_honours_the_measure_and_seed_settings(beir, tiny_llm_dir, tmp_path):
    """``judge.agreement.measure`` / ``seed`` (the settings ``relforge judge agreement`` shares) reach the
    comparison: the rerank measure and the balanced subsample's seed (defaults: nDCG@10, 0)."""

    def judge_entry(cfg: AgreementConfig, name: str) -> dict:
        outs = AgreementOutputs(agreement=tmp_path / name / "agreement.json")
        run_agreement(cfg, AgreementInputs(human=beir), outs, judge=JudgeConfig(max_doc_tokens=32),
                      llm_spec=f"hf:{tiny_llm_dir}", log=lambda m: None)  # fmt: skip
        return json.loads(outs.agreement.read_text())["judge"]

    default = judge_entry(AgreementConfig(queries="all"), "default")
    assert list(default["rerank"]) == ["nDCG@10"] and default["balanced"]["seed"] == 0
    set_ = judge_entry(AgreementConfig(queries="all", measure="P@2", seed=5), "set")
    assert list(set_["rerank"]) == ["P@2"] and set_["balanced"]["seed"] == 5


def test_agreement_report_keeps_ints_and_order():
    rep = AgreementReport.model_validate(
        {
            "minilm_cosine": {"tau_b": 1, "n": 2, "extra": "kept"},
            "judge": {"weighted_kappa": 0.5, "confusion": [[1, 0], [0, 2]]},
        }
    )
    assert list(rep.entries()) == ["judge", "minilm_cosine"]  # the written order
    assert rep.entries()["minilm_cosine"] == {"n": 2, "tau_b": 1, "extra": "kept"}
    assert isinstance(rep.entries()["minilm_cosine"]["tau_b"], int)


def test_report_reads_the_real_agreement_writer(beir, tiny_llm_dir, tmp_path):
    """The report's loader goes through AgreementReport: the real writer's file renders its numbers."""
    from relforge.report.render import load_artifacts

    outs = AgreementOutputs(agreement=tmp_path / "judge" / "agreement.json")
    run_agreement(
        AgreementConfig(queries="all", max_pairs=4),
        AgreementInputs(human=beir),
        outs,
        judge=JudgeConfig(max_doc_tokens=32),
        llm_spec=f"hf:{tiny_llm_dir}",
        log=lambda m: None,
    )
    got = load_artifacts(tmp_path, strict=True)["agreement"]
    written = json.loads(outs.agreement.read_text())
    assert got["minilm_cosine"]["tau_b"] == written["minilm_cosine"]["tau_b"]
    assert got["judge"]["labels"] == ["0", "1", "2", "3"] and got["judge"]["n"] == 4
