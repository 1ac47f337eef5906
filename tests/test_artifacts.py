"""relforge.artifacts: the run-folder files shared by the pipeline and the report, and manifest.json
written and read through one class; the report renders what the real evaluate and report stages wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from relforge import artifacts
from relforge.artifacts import Manifest
from relforge.pipeline import layout
from relforge.pipeline.runner import Stage, read_manifest, run_stages, write_manifest

FIX = Path(__file__).parent / "fixtures" / "eval"


def test_layout_and_report_name_the_same_files():
    from relforge.report import ARTIFACTS

    for name in ("MANIFEST", "METRICS_JSON", "EXTRA_SUMMARY", "JUDGMENTS", "AGREEMENT", "ABLATION_JSON"):
        assert getattr(layout, name) is getattr(artifacts, name)
    assert layout.JUDGE_FINETUNE_METRICS == layout.judge_finetune_file("metrics.jsonl")
    assert layout.extra_dir("x") == "eval/extra/x" and layout.REPORT == "report.html"
    assert set(ARTIFACTS.values()) == {
        layout.MANIFEST,
        layout.METRICS_JSON,
        layout.JUDGMENTS,
        layout.AGREEMENT,
        layout.JUDGE_FINETUNE_METRICS,
        layout.DATASET_SUMMARY,
        layout.ABLATION_JSON,
        layout.EXTRA_SUMMARY,
    }


def _write(name: str):
    def body(ctx):
        ctx.path(f"{name}.txt").write_text(name)
        return {"written": name}

    return Stage(name, body, outputs=lambda cfg: [f"{name}.txt"], config=lambda cfg: {"v": 1})


def test_runner_manifest_round_trips_through_the_model(tmp_path):
    run_stages([_write("a"), _write("b")], {}, tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    m = Manifest.read(tmp_path)
    assert m.stage_order == ["a", "b"] and m.stages["b"].status == "done"
    assert m.stages["a"].counts == {"written": "a"} and m.stages["a"].outputs == {
        "a.txt": m.stages["a"].outputs["a.txt"]
    }
    assert json.dumps(m.to_data(), indent=2) + "\n" == text  # same keys, same order, nothing added
    assert read_manifest(tmp_path) == json.loads(text)
    data = read_manifest(tmp_path)
    data["stages"]["a"]["status"] = "skipped"  # not a status the runner writes
    with pytest.raises(ValidationError, match="status"):
        write_manifest(tmp_path, data)
    assert Manifest.read(tmp_path).stages["a"].status == "done"  # the file was left as it was


def test_report_renders_what_the_evaluate_and_report_stages_wrote(tmp_path):
    """The real stages (relforge run --only evaluate, then --only report) on first-stage and reranked runs
    put in place: the systems' descriptions reach the report through the manifest."""
    from relforge.config import parse_config
    from relforge.pipeline.stages import build_stages, describe_systems

    cfg = parse_config(
        {
            "judge": {"enabled": False},
            "retrieve": {"methods": ["bm25", "dense"]},
            "train": {"variants": ["plain"]},
            "rerank": {"first_stage": "dense"},
            "evaluate": {"permutation_rounds": 200, "measures": ["nDCG@10", "MRR@10"]},
        }
    )
    for rel, src in (
        (layout.TEST_QRELS, "qrels.tsv"),
        (layout.first_stage_test("bm25"), "bm25.trec"),
        (layout.first_stage_test("dense"), "dense.trec"),
        (layout.BACKBONE_RUN, "dense.trec"),
        (layout.rerank_run("plain"), "reranker.trec"),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIX / src, tmp_path / rel)
    (tmp_path / layout.dataset("plain")).mkdir(parents=True)
    (tmp_path / layout.dataset("plain") / "groups.jsonl").write_text("")
    stages = build_stages(cfg)
    run_stages(stages, cfg, tmp_path, only="evaluate")
    run_stages(stages, cfg, tmp_path, only="report")
    m = Manifest.read(tmp_path)
    assert m.systems == describe_systems(cfg) and list(m.systems) == ["bm25", "dense", "backbone", "plain"]
    assert set(m.stages["evaluate"].counts) == {f"{s}:nDCG@10" for s in m.systems}
    html = (tmp_path / layout.REPORT).read_text()
    for heading in ("Retrieval metrics", "Run configuration and timings"):
        assert f"<h2>{heading}</h2>" in html
    for desc in m.systems.values():
        assert desc in html
    assert "<td>evaluate</td>" in html and "<td>report</td>" in html
    assert "vs <strong>backbone</strong>" in html  # comparison_pairs: plain vs backbone
