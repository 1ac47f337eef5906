"""`relforge judge --preset`: the shipped labeller (QL + cosine + calibration head) end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from relforge.cli import main
from relforge.judge.calibrate import CalibrationHead
from relforge.judge.judge import read_judgments
from relforge.judge.preset import PRESET_DIR, JudgePreset
from relforge.judge.summary import PresetRecord, read_record


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    d = tmp_path_factory.mktemp("beir")
    docs = [
        {"_id": "d1", "title": "What causes anemia?", "text": "Anemia is caused by a lack of iron or B12."},
        {"_id": "d2", "title": "Flu symptoms", "text": "Influenza causes fever, cough and muscle aches."},
        {"_id": "d3", "title": "Knee surgery", "text": "Arthroscopy of the knee repairs torn cartilage."},
    ]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    qs = [
        {"_id": "q1", "text": "What causes anemia?"},
        {"_id": "q2", "text": "What are the symptoms of flu?"},
    ]
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in qs))
    (d / "pairs.tsv").write_text("q1\td1\nq1\td3\nq2\td2\nq2\td3\nq2\td2\n")  # one duplicate
    return d


def _args(beir, out, *extra):
    return [
        "judge",
        "--corpus",
        str(beir / "corpus.jsonl"),
        "--queries",
        str(beir / "queries.jsonl"),
        "--pairs",
        str(beir / "pairs.tsv"),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _cosine_preset(path, kind="ordinal"):
    rng = np.random.default_rng(0)
    cos = rng.uniform(0, 1, 400)
    grades = np.clip((cos * 4).astype(int), 0, 3)
    head = CalibrationHead.fit({"cos": cos}, grades, ["cos"], kind=kind)
    path.write_text(JudgePreset(name="cos-only", head=head).model_dump_json())
    return path


#: the shipped preset is written by benchmarks/judge_preset.py; until it is computed and committed, the tests
#: that read it say so instead of passing
needs_best = pytest.mark.skipif(
    not (PRESET_DIR / "best.json").exists(),
    reason="presets/best.json not shipped yet (python benchmarks/judge_preset.py writes it)",
)


def test_preset_file_with_cosine_only(beir, tmp_path):
    out = tmp_path / "j.jsonl"
    preset = _cosine_preset(tmp_path / "cos-only.json")
    assert main(_args(beir, out, "--preset", str(preset), "--qrels-out", str(tmp_path / "q.txt"))) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["qid"], r["docid"]) for r in rows] == [("q1", "d1"), ("q1", "d3"), ("q2", "d2"), ("q2", "d3")]
    for r in rows:
        assert set(r) >= {"qid", "docid", "grade", "expected", "probs", "features", "preset"}
        assert sum(r["probs"].values()) == pytest.approx(1.0) and r["grade"] in (0, 1, 2, 3)
        assert set(r["features"]) == {"cos"} and -1 <= r["features"]["cos"] <= 1
    by = {(r["qid"], r["docid"]): r for r in rows}
    # MiniLM: the matching answer is closer than the knee surgery one, so the expected grade is higher
    assert by["q1", "d1"]["expected"] > by["q1", "d3"]["expected"]
    assert by["q2", "d2"]["expected"] > by["q2", "d3"]["expected"]
    assert len(read_judgments(out)) == 4  # readable by `relforge judge agreement`
    summary = read_record(tmp_path / "j.summary.json")
    assert isinstance(summary, PresetRecord) and summary.grades is not None
    assert summary.pairs == 4 and summary.llm is None and summary.embedder == "minilm"
    assert (tmp_path / "q.txt").read_text().count("\n") == 4


def test_preset_record_counts_the_graded_pairs_by_source(beir, tmp_path):
    """A preset's summary counts the graded pairs by source like the LLM judge's (the pipeline's inputs:
    the queries' own documents and their mined candidates)."""
    from relforge.data import write_qrels
    from relforge.judge.config import JudgeConfig
    from relforge.judge.run import JudgeInputs, JudgeOutputs, run
    from relforge.retrieve.candidates import Candidate, write_candidates

    write_qrels(tmp_path / "pos.tsv", {"q1": {"d1": 1}, "q2": {"d2": 1}})
    cands = [Candidate(query_id="q1", doc_id="d3", rank=2, score=1.5, source="bm25"),
             Candidate(query_id="q2", doc_id="d3", source="random")]  # fmt: skip
    write_candidates(tmp_path / "cand.jsonl", cands)
    inputs = JudgeInputs(corpus=beir / "corpus.jsonl", queries=beir / "queries.jsonl",
                         positives=tmp_path / "pos.tsv", negatives=tmp_path / "cand.jsonl")  # fmt: skip
    outs = JudgeOutputs(judgments=tmp_path / "j.jsonl", summary=tmp_path / "s.json", record_files=False)
    run(JudgeConfig(), inputs, outs, preset=str(_cosine_preset(tmp_path / "cos.json")), progress=False)
    rec = read_record(tmp_path / "s.json")
    assert isinstance(rec, PresetRecord) and rec.sources == {"bm25": 1, "positive": 2, "random": 1}
    assert rec.write(tmp_path / "again.json").read_bytes() == (tmp_path / "s.json").read_bytes()


@needs_best
def test_preset_with_ql_features_on_a_tiny_llm(beir, tmp_path, tiny_llm_dir):
    shipped = JudgePreset.load("ql")
    rng = np.random.default_rng(0)
    names = ["ql_cond", "ql_pmi", "cos"]
    x = {f: rng.normal(size=50) for f in names}
    head = CalibrationHead.fit(x, rng.integers(0, 4, 50), names)
    path = tmp_path / "tiny.json"
    path.write_text(shipped.model_copy(update={"llm": f"hf:{tiny_llm_dir}", "head": head}).model_dump_json())
    out = tmp_path / "j.jsonl"
    assert main(_args(beir, out, "--preset", str(path))) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]["features"]) == set(names)
    assert all(np.isfinite(list(r["features"].values())).all() for r in rows)


@needs_best
def test_preset_refuses_flags_it_fixes_and_unknown_names(beir, tmp_path, capsys):
    out = tmp_path / "j.jsonl"
    assert main(_args(beir, out, "--preset", "best", "--llm", "smollm2", "--adapter", "auto")) == 2
    assert "drop --llm, --adapter" in capsys.readouterr().err
    assert main(_args(beir, out, "--preset", "no-such-preset")) != 0
    assert "shipped: ['best', 'ql', 'qwen']" in capsys.readouterr().err
    assert not out.exists()


@needs_best
def test_shipped_best_preset_is_documented_and_consistent():
    p = JudgePreset.load("best")
    assert (PRESET_DIR / "best.json").stat().st_size < 200_000  # the probe weights: 3 x 2,880 floats
    assert p.head.features and p.head.values == [0, 1, 2, 3]
    table = p.measured["table"]
    assert "cosine-only (MiniLM)|ordinal" in table and "raw cos" in table
    assert p.head.meta["n_train"] == 1147
    # the probe preset (docs/judge-probe.md#shipped-as-best): SmolLM2's 576-wide states, its held-out row
    assert p.probe is not None and p.head.features == ["probe", "cos"]
    assert len(p.probe.coef) == 576 * len(p.probe.layers) and max(p.probe.layers) <= 30
    from relforge.judge.labeller import preset_cv

    cv = preset_cv(p)
    assert cv is not None and cv["labeller"] == "probe + cosine|ordinal" and cv["folds"] == 5
    assert cv["source"] == "docs/judge-probe.md#shipped-as-best"
    assert preset_cv(JudgePreset.load("ql"))["source"] == "docs/judge-preset.md"
    mine = cv["rows"]["preset best (probe + cosine|ordinal)"]["kendall_tau_b"]
    assert mine[0] > table["cosine-only (MiniLM)|ordinal"]["kendall_tau_b"][0]


def test_shipped_qwen_preset_is_the_same_recipe_on_the_optional_model():
    from relforge.judge.labeller import preset_cv

    p = JudgePreset.load("qwen")
    assert (
        p.llm == "qwen0.5b" and p.precision == "auto" and (PRESET_DIR / "qwen.json").stat().st_size < 200_000
    )
    assert p.head.features == ["probe", "cos"] and p.head.meta["n_train"] == 1147
    # Qwen2.5-0.5B's 896-wide states of at most its 24 layers, the held-out row documented on its own section
    assert len(p.probe.coef) == 896 * len(p.probe.layers) and max(p.probe.layers) <= 24
    cv = preset_cv(p)
    assert cv["labeller"] == "probe + cosine|ordinal" and cv["source"] == "docs/judge-probe.md#preset-qwen"


def test_continuation_logprobs_match_prompt_token_logprobs(tiny_llm_dir):
    from relforge.judge.ql import _chat, continuation_logprobs, query_likelihood
    from relforge.judge.run import open_llm

    llm = open_llm(f"hf:{tiny_llm_dir}", cache=False)  # prefix sharing on, as the preset runs it
    chats = [_chat("Anemia is a lack of iron.", "What causes anemia?", "W"), _chat("x", "What is flu?", "W")]
    got = continuation_logprobs(llm, chats)
    inner = vars(llm).get("llm", llm)
    for c, lp in zip(chats, got, strict=True):
        ref = inner.prompt_token_logprobs(inner.encode_chat(c, continue_final=True))
        assert lp == pytest.approx(ref[-len(lp) :], abs=1e-4)
    f = query_likelihood(llm, ["What causes anemia?", "What is flu?"], ["Anemia is iron.", "Flu."])
    assert f["ql_pmi"] == pytest.approx(np.subtract(f["ql_cond"], f["ql_prior"]).tolist())


@needs_best
@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_preset_precision_reaches_its_llm(beir, tmp_path, tiny_llm_dir, prec):
    from relforge.data import read_corpus, read_queries
    from relforge.judge.run import judge_with_preset

    assert JudgePreset.load("best").precision == "auto"  # the shipped preset: bf16 where the CPU has it
    assert JudgePreset.load("ql").precision == "auto"
    shipped = JudgePreset.load(
        "ql"
    )  # QL features run on any LLM (the best preset's probe needs SmolLM2's 30 layers)
    preset = shipped.model_copy(update={"llm": f"hf:{tiny_llm_dir}", "precision": prec})
    queries, corpus = read_queries(beir / "queries.jsonl"), read_corpus(beir / "corpus.jsonl")
    rows, info = judge_with_preset(preset, queries, corpus, [("q1", "d1"), ("q2", "d3")], progress=False)
    assert info["llm_backend"]["precision"] == prec
    assert len(rows) == 2 and all(np.isfinite(list(r["features"].values())).all() for r in rows)


def _probe_preset(path, tiny_llm_dir):
    """A preset whose head reads a ridge probe on the tiny LLM's hidden states and cosine."""
    from relforge.judge.probe import ProbeSpec, RidgeProbe, hidden_features, select
    from relforge.llm.hf import HFBackend

    llm = HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)
    qs = [f"what causes condition {i}" for i in range(8) for _ in range(3)]
    ds = [f"Condition {i} is described in section {j}." for i in range(8) for j in range(3)]
    f = hidden_features(llm, qs, ds, prompt="ql", layers=[2])
    y = np.tile([0.0, 1.0, 3.0], 8)
    ridge = RidgeProbe(alphas=[10.0], inner_k=4).fit(select(f["hidden"], f["layers"], "last", [2]), y, qs)
    probe = ProbeSpec.from_ridge(ridge, prompt="ql", pool="last", layers=[2])
    rng = np.random.default_rng(0)
    x = {"probe": rng.normal(size=60), "cos": rng.uniform(0, 1, 60)}
    head = CalibrationHead.fit(x, rng.integers(0, 4, 60), ["probe", "cos"])
    preset = JudgePreset(name="probe-tiny", llm=f"hf:{tiny_llm_dir}", head=head, probe=probe)
    path.write_text(preset.model_dump_json())
    return path, preset, llm


def test_preset_with_a_hidden_state_probe(beir, tmp_path, tiny_llm_dir):
    """`relforge judge --preset` with a probe feature: each pair's probe score is the probe's score of
    that pair (query text, title + text), and the judgments name the LLM and the embedder."""
    from relforge.data import read_corpus, read_queries
    from relforge.types import doc_text

    path, preset, llm = _probe_preset(tmp_path / "probe.json", tiny_llm_dir)
    out = tmp_path / "j.jsonl"
    assert main(_args(beir, out, "--preset", str(path))) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and all(set(r["features"]) == {"probe", "cos"} for r in rows)
    qs, ds = read_queries(beir / "queries.jsonl"), read_corpus(beir / "corpus.jsonl")
    want = preset.probe.score(
        llm, [qs[r["qid"]].text for r in rows], [doc_text(ds[r["docid"]]) for r in rows]
    )
    np.testing.assert_allclose([r["features"]["probe"] for r in rows], want, rtol=1e-4, atol=1e-4)
    assert rows[0]["model"] == f"preset:probe-tiny(hf:{tiny_llm_dir}+minilm)"
    summary = read_record(tmp_path / "j.summary.json")
    assert summary.llm == f"hf:{tiny_llm_dir}" and summary.embedder == "minilm"


def test_preset_using_a_probe_it_does_not_have_is_refused(beir, tmp_path, tiny_llm_dir, capsys):
    path, preset, _ = _probe_preset(tmp_path / "probe.json", tiny_llm_dir)
    bad = json.loads(path.read_text())
    bad["probe"] = None
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(_args(beir, tmp_path / "j.jsonl", "--preset", str(tmp_path / "bad.json"))) == 5  # a DataError
    assert "'probe' feature but the preset has no 'probe' section" in capsys.readouterr().err
    assert not (tmp_path / "j.jsonl").exists()
