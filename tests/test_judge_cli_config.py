"""``--config`` / ``--set`` of ``relforge judge finetune`` and ``relforge judge agreement``, and ``relforge
judge`` reading ``judge.preset`` / the judge LLM from ``--config`` (flags given still win).

The commands run through ``relforge.cli.main`` on tiny files; what would need a model (fine-tuning, the
cross-validation, the agreement report, judging) is replaced by a function that records what it was handed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from relforge.cli import main
from relforge.config import FinetuneConfig, load_config, stage_part
from relforge.data import write_corpus, write_qrels, write_queries
from relforge.errors import RelforgeError
from relforge.judge.finetune_config import CVConfig
from relforge.types import Document, Query

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
FT_YAML = ROOT / "configs" / "judge-finetune.yaml"


class Recorded(RelforgeError):
    exit_code = 99


@pytest.fixture
def tiny(tmp_path):
    write_corpus(tmp_path / "c.jsonl", [Document("d0", "gout text"), Document("d1", "more text")])
    write_queries(tmp_path / "q.jsonl", [Query("q0", "gout"), Query("q1", "other")])
    write_qrels(tmp_path / "r.tsv", {"q0": {"d0": 3, "d1": 0}, "q1": {"d1": 1}})
    return tmp_path


# --------------------------------------------------------------------------- judge finetune


@pytest.fixture
def finetune(tiny, monkeypatch):
    """``finetune(*args) -> (exit code, [configs handed to run_cv / finetune_judge])``."""
    import relforge.judge.cv as cv
    import relforge.judge.finetune as ft

    seen: list = []

    def fake_finetune_judge(base, corpus, queries, qrels, out, cfg, **kw):
        seen.append(cfg)
        summary = {"best_epoch": 1, "class_counts": {}, "zero_shot": None, "best": None}
        return summary | {"timing": {"epoch_seconds": []}}

    def fake_run_cv(llm, corpus, queries, qrels, out, cfg, cv_cfg, **kw):
        seen.append(cv_cfg)
        return SimpleNamespace(judges=[])

    monkeypatch.setattr(ft, "finetune_judge", fake_finetune_judge)
    monkeypatch.setattr(cv, "run_cv", fake_run_cv)
    base = ["judge", "finetune", "--corpus", str(tiny / "c.jsonl"), "--queries", str(tiny / "q.jsonl"),
            "--qrels", str(tiny / "r.tsv"), "--llm", "hf:x", "--out", str(tiny / "out"), "--overwrite"]  # fmt: skip

    def call(*args):
        seen.clear()
        code = main([*base, *(str(a) for a in args)])
        return code, list(seen)

    return call


def test_finetune_reads_the_pipeline_yamls_judge_finetune_section(finetune, capsys):
    expected = stage_part(load_config(FT_YAML).judge_finetune, FinetuneConfig)
    assert expected != FinetuneConfig()  # the YAML sets recipe keys: the comparison has teeth
    code, seen = finetune("--config", FT_YAML, "--set", "cv.folds=1")
    assert code == 0, capsys.readouterr().err
    assert seen == [expected]
    # a pipeline YAML without the section: the pipeline's defaults for it
    code, seen = finetune("--config", DEMO, "--set", "cv.folds=1")
    assert code == 0 and seen == [stage_part(load_config(DEMO).judge_finetune, FinetuneConfig)]


def test_finetune_takes_the_section_pasted_as_is(finetune, tmp_path, capsys):
    raw = yaml.safe_load(FT_YAML.read_text(encoding="utf-8"))["judge_finetune"]
    (tmp_path / "section.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, seen = finetune("--config", tmp_path / "section.yaml", "--folds", "1")
    assert code == 0
    assert seen == [stage_part(load_config(FT_YAML).judge_finetune, FinetuneConfig)]
    err = capsys.readouterr().err
    assert "data, enabled: pipeline setting(s) relforge judge finetune does not read" in err
    assert "data: --corpus, --queries, --qrels" in err


def test_finetune_precedence_and_cv_keys(finetune, tmp_path):
    assert finetune("--config", FT_YAML, "--set", "cv.folds=1")[1][0].epochs == 4  # the file's
    assert finetune("--config", FT_YAML, "--set", "cv.folds=1", "--set", "epochs=2")[1][0].epochs == 2
    _, seen = finetune("--config", FT_YAML, "--set", "cv.folds=1", "--set", "epochs=2", "--epochs", "3")
    assert seen[0].epochs == 3  # a flag given beats --set
    _, seen = finetune("--set", "cv.folds=3", "--set", "cv.threshold_metric=macro_f1", "--seed", "4")
    assert seen[0] == CVConfig(folds=3, seed=4, threshold_metric="macro_f1")  # cv.seed follows --seed
    assert seen[1].seed == 4 and len(seen) == 2  # then the final all-data adapter
    _, seen = finetune("--set", "cv.folds=3", "--set", "cv.seed=7", "--seed", "4")
    assert seen[0].seed == 7 and seen[1].seed == 4
    (tmp_path / "cv.yaml").write_text("epochs: 2\n", encoding="utf-8")  # a file: the flags' defaults stay
    _, seen = finetune("--config", tmp_path / "cv.yaml", "--no-final-adapter")
    assert seen == [CVConfig(final_adapter=False)]


def test_finetune_config_errors_name_the_key(finetune, tmp_path, capsys):
    assert finetune("--set", "bogus=1") == (2, [])
    assert "--set bogus: unknown key 'bogus'" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("epochs: 0\n", encoding="utf-8")  # the pipeline's rule: >= 1
    assert finetune("--config", tmp_path / "bad.yaml") == (2, [])
    assert f"{tmp_path / 'bad.yaml'}: epochs: Input should be greater than or equal to 1" in (
        capsys.readouterr().err
    )
    assert finetune("--set", "cv.folds=0") == (2, [])
    assert "--set cv.folds: Input should be greater than or equal to 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- judge agreement


@pytest.fixture
def agreement(tiny, monkeypatch):
    """``agreement(*args) -> (exit code, the keyword arguments handed to run_agreement)``."""
    import relforge.judge.run as judge_run

    seen: list = []

    def record(**kwargs):
        seen.append(kwargs)
        raise Recorded("recorded")

    monkeypatch.setattr(judge_run, "run_agreement", record)
    base = ["judge", "agreement", "--human", str(tiny / "r.tsv"), "--llm", str(tiny / "j.jsonl")]

    def call(*args):
        seen.clear()
        code = main([*base, *(str(a) for a in args)])
        return (0, seen[-1]) if code == Recorded.exit_code else (code, None)

    return call


def test_agreement_takes_the_demo_section_and_its_keys(agreement, tmp_path, capsys):
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))["judge"]["agreement"]
    (tmp_path / "section.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, kw = agreement("--config", tmp_path / "section.yaml")
    assert code == 0 and (kw["measure"], kw["seed"]) == ("nDCG@10", 0)
    err = capsys.readouterr().err
    assert "human, max_pairs, queries: pipeline setting(s) relforge judge agreement does not read" in err
    assert agreement("--config", DEMO)[0] == 0  # the whole pipeline YAML
    (tmp_path / "p.yaml").write_text(
        "judge:\n  agreement:\n    measure: P@5\n    seed: 3\n", encoding="utf-8"
    )
    _, kw = agreement("--config", tmp_path / "p.yaml")
    assert (kw["measure"], kw["seed"]) == ("P@5", 3)
    _, kw = agreement("--config", tmp_path / "p.yaml", "--set", "measure=nDCG@5", "--seed", "9")
    assert (kw["measure"], kw["seed"]) == ("nDCG@5", 9)


def test_agreement_config_errors(agreement, capsys):
    assert agreement("--set", "bogus=1") == (2, None)
    assert "--set bogus: unknown key 'bogus'; allowed: measure, seed" in capsys.readouterr().err


# --------------------------------------------------------------------------- judge: preset and LLM


@pytest.fixture
def judge(tiny, monkeypatch):
    """``judge(*args) -> (exit code, {"preset", "llm_spec"} handed to relforge.judge.run.run)``."""
    import relforge.judge.run as judge_run

    seen: list = []

    def record(cfg, inputs, outs, **kwargs):
        seen.append({"preset": kwargs.get("preset"), "llm_spec": kwargs.get("llm_spec"), "cfg": cfg})
        raise Recorded("recorded")

    monkeypatch.setattr(judge_run, "run", record)
    base = ["judge", "--corpus", str(tiny / "c.jsonl"), "--queries", str(tiny / "q.jsonl"),
            "--pairs", str(tiny / "r.tsv"), "--out", str(tiny / "j.jsonl"), "--overwrite"]  # fmt: skip

    def call(*args):
        seen.clear()
        code = main([*base, *(str(a) for a in args)])
        return (0, seen[-1]) if code == Recorded.exit_code else (code, None)

    return call


def _yaml(tmp_path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


def test_judge_reads_the_preset_and_the_llm_from_config(judge, tmp_path, capsys):
    code, got = judge("--config", DEMO)  # the demo's judge.preset: best, no --llm needed
    assert code == 0, capsys.readouterr().err
    assert (got["preset"], got["llm_spec"]) == ("best", None) and got["cfg"].batch_size == 16
    err = capsys.readouterr().err
    assert f"note: {DEMO}: judge.agreement: pipeline setting(s) relforge judge does not read" in err
    assert "preset" not in err  # read, not noted
    # a pipeline YAML without a preset: the judge LLM as relforge run picks it
    _, got = judge("--config", _yaml(tmp_path, "p.yaml", "name: t\nllm:\n  spec: hf:spec\n"))
    assert (got["preset"], got["llm_spec"]) == (None, "hf:spec")
    _, got = judge("--config", _yaml(tmp_path, "p2.yaml", "llm: {spec: hf:spec}\njudge: {llm: hf:own}\n"))
    assert got["llm_spec"] == "hf:own"
    # the judge section on its own
    _, got = judge("--config", _yaml(tmp_path, "s.yaml", "llm: hf:sec\nbatch_size: 3\n"))
    assert (got["preset"], got["llm_spec"], got["cfg"].batch_size) == (None, "hf:sec", 3)
    _, got = judge("--config", _yaml(tmp_path, "s2.yaml", "preset: best\n"))
    assert got["preset"] == "best"


def test_judge_flags_given_win_over_the_configs_preset_and_llm(judge, tmp_path, capsys):
    _, got = judge("--config", DEMO, "--llm", "hf:flag")  # an explicit --llm: the LLM judge
    assert (got["preset"], got["llm_spec"]) == (None, "hf:flag")
    assert "--llm given: the preset of" in capsys.readouterr().err
    _, got = judge("--config", _yaml(tmp_path, "s.yaml", "llm: hf:sec\n"), "--preset", "best")
    assert (got["preset"], got["llm_spec"]) == ("best", None)
    _, got = judge("--config", _yaml(tmp_path, "s2.yaml", "llm: hf:sec\n"), "--llm", "hf:flag")
    assert got["llm_spec"] == "hf:flag"
    # the file's preset fixes the model: LLM-judge flags are refused as with --preset
    assert judge("--config", DEMO, "--mode", "generate") == (2, None)
    assert f"the preset of --config {DEMO} (judge.preset) fixes the model" in capsys.readouterr().err
