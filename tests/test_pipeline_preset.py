"""``judge.preset`` in the pipeline: the judge and agreement stages grade with a preset labeller (the same entry
point as ``relforge judge --preset``), and the manifest / report say which labeller judged.

The preset here is cosine-only (MiniLM, packaged) and the training queries are MedQuAD's human questions, so no
LLM is loaded at all: ``llm.spec`` points to a folder that does not exist."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from relforge.cli import main
from relforge.config import parse_config
from relforge.errors import DataError
from relforge.judge.calibrate import CalibrationHead
from relforge.judge.preset import JudgePreset
from relforge.judge.summary import PresetRecord, read_record
from relforge.pipeline.stages import describe_systems
from relforge.report import render_report

CV = {
    "kendall_tau_b": [0.587, 0.056],
    "per_query_tau_b": [0.492, 0.074],
    "quadratic_kappa": [0.685, 0.074],
    "accuracy": [0.662, 0.063],
    "macro_f1": [0.531, 0.034],
}


def _tiny_preset(path):
    rng = np.random.default_rng(0)
    cos = rng.uniform(0, 1, 400)
    head = CalibrationHead.fit(
        {"cos": cos},
        np.clip((cos * 4).astype(int), 0, 3),
        ["cos"],
        meta={"data": "bundled liveqa-med (test fixture)", "labeller": "cos-test"},
    )
    preset = JudgePreset(
        name="tiny-cos",
        description="tiny cosine-only test labeller",
        head=head,
        measured={"folds": 5, "seed": 0, "table": {"raw cos": CV, "cos-test|ordinal": CV}},
    )
    path.write_text(preset.model_dump_json())
    return path


def _config(tmp_path, preset) -> dict:
    return {
        "name": "preset",
        "llm": {"spec": f"hf:{tmp_path / 'no-such-model'}"},  # never loaded: the preset needs no LLM
        "data": {
            "source": "sample:medquad",
            "max_docs": 40,
            "test_queries": 4,
            "train_split": "train",
            "train_queries": 6,
        },
        "retrieve": {
            "method": "bm25",
            "methods": ["bm25"],
            "top_k": 10,
            "mining": {"rank_min": 1, "num_negatives": 3},
        },
        "judge": {"preset": str(preset), "batch_size": 8, "agreement": {"max_pairs": 12}},
        "train": {"variants": ["plain", "judged"]},
        "rerank": {"first_stage": "bm25"},
    }


def test_pipeline_judges_with_a_preset(tmp_path):
    preset = _tiny_preset(tmp_path / "tiny-cos.json")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, preset)))
    out = tmp_path / "run"
    # up to the agreement stage: what follows (groups, training) reads judgments.jsonl as for any judge
    assert main(["run", str(path), "--out", str(out), "--to", "agreement"]) == 0
    rows = [json.loads(x) for x in (out / "judge" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * 4  # each training question's own answer + 3 mined candidates
    for r in rows:
        assert set(r) >= {"qid", "docid", "grade", "expected", "probs", "features", "preset"}
        assert r["preset"] == "tiny-cos" and set(r["features"]) == {"cos"} and r["grade"] in (0, 1, 2, 3)
        assert sum(r["probs"].values()) == pytest.approx(1.0)
    assert len((out / "judge" / "qrels.tsv").read_text().splitlines()) == len(rows)
    summary = read_record(out / "judge" / "summary.json")
    assert isinstance(summary, PresetRecord) and summary.labeller
    assert summary.model == "preset:tiny-cos(minilm)" and summary.llm is None

    agree = json.loads((out / "judge" / "agreement.json").read_text())
    j = agree["judge"]
    assert j["pairs"] == 12 and j["n"] == 12 and j["preset"] == "tiny-cos"
    assert j["tau_b"] is not None and j["weighted_kappa"] is not None
    # the shipped adapter's validation queries, and the honest caveat: the preset was fitted on them
    assert j["queries_from"].startswith("the shipped adapter's validation split")
    assert j["held_out"] is False and j["note"].startswith("pairs the preset was fitted on (not held out)")
    assert j["cv"]["folds"] == 5 and j["cv"]["rows"]["preset tiny-cos (cos-test|ordinal)"] == CV
    raw = j["cv"]["rows"]["MiniLM cosine (raw, ranking only)"]  # grades of a raw score mean nothing
    assert raw == {"kendall_tau_b": CV["kendall_tau_b"], "per_query_tau_b": CV["per_query_tau_b"]}
    # the preset is cosine-only: its ranking of the pairs is MiniLM cosine's (a monotone map)
    assert j["tau_b"] == pytest.approx(agree["minilm_cosine"]["tau_b"], abs=1e-3)

    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["judge"]["counts"]["preset"] == "tiny-cos"
    systems = describe_systems(parse_config(yaml.safe_load(path.read_text())))  # manifest ``systems``
    assert systems["judged"].endswith("(judge: preset tiny-cos: tiny cosine-only test labeller)")
    html = render_report(out).read_text()
    assert (
        "judge — preset tiny-cos" in html and "judge: preset tiny-cos: tiny cosine-only test labeller" in html
    )
    assert "pairs the preset was fitted on (not held out)" in html
    assert "Held-out 5-fold cross-validation" in html and "0.587 ± 0.056" in html


def test_preset_refuses_llm_judge_keys():
    with pytest.raises(DataError) as e:
        parse_config({"judge": {"preset": "best", "adapter": "shipped", "mode": "generate"}}, source="c.yaml")
    assert "c.yaml: judge: judge.preset 'best' fixes the model" in str(e.value)
    assert "remove judge.adapter, judge.mode" in str(e.value)
    with pytest.raises(DataError, match="judge.agreement.zero_shot"):
        parse_config({"judge": {"preset": "best", "agreement": {"zero_shot": True}}})
    # a full dump (config.yaml of a run, --sizes) only repeats defaults: still valid
    cfg = parse_config({"judge": {"preset": "best"}})
    assert parse_config(cfg.model_dump()).judge.preset == "best"
    assert parse_config({"judge": {"adapter": "shipped"}}).judge.preset is None  # the adapter path unchanged


def test_preflight_names_a_missing_preset_and_a_finetune_clash(tmp_path):
    from relforge.pipeline.preflight import problems

    found = problems(parse_config({"judge": {"preset": str(tmp_path / "nope.json")}}))
    assert any(p.startswith("judge.preset:") and "not found" in p for p in found)
    found = problems(parse_config({"judge": {"preset": "best"}, "judge_finetune": {"enabled": True}}))
    assert any(p.startswith("judge_finetune.enabled:") for p in found)
