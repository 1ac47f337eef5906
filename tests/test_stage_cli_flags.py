"""Every config field of the train / rerank / generate / judge / retrieve / evaluate stages has a CLI flag whose
default is the config's, and each flag added for a field that had none reaches the config the stage runs with (back ends faked)."""

from __future__ import annotations

import inspect

import pytest

from relforge.cli import main
from relforge.data import write_corpus
from relforge.generate.config import FilterConfig, GenerateConfig, SelectConfig
from relforge.judge.config import JudgeConfig
from relforge.train.config import RerankConfig, TrainConfig
from relforge.types import Document


def _flag_defaults(fn) -> dict:
    """``{parameter: default}`` of a typer command function (the defaults its options declare)."""
    return {name: p.default.default for name, p in inspect.signature(fn).parameters.items() if name != "ctx"}


# --------------------------------------------------------------------------- relforge train


def test_train_flags_cover_train_config_with_its_defaults():
    from relforge.train.cli import train

    flags = _flag_defaults(train)
    assert {f: flags.get(f, "<no flag>") for f in TrainConfig.model_fields} == TrainConfig().model_dump()


def test_rerank_flags_cover_rerank_config_and_the_pipeline_section_extends_it():
    from relforge.config import RerankSection
    from relforge.train.cli import rerank_cmd

    flags = _flag_defaults(rerank_cmd)
    flags["doc_fields"] = flags["doc_fields"].split(",")  # --doc-fields is comma-separated
    assert {f: flags.get(f, "<no flag>") for f in RerankConfig.model_fields} == RerankConfig().model_dump()
    # one set of fields: the pipeline section adds its own keys and only re-states top_k (its CPU budget)
    assert set(RerankConfig.model_fields) < set(RerankSection.model_fields)
    section, stage = RerankSection().model_dump(), RerankConfig().model_dump()
    assert {k for k in stage if section[k] != stage[k]} == {"top_k"}
    assert (section["top_k"], stage["top_k"]) == (20, 100)


@pytest.fixture
def trained(monkeypatch):
    import relforge.train.trainer as trainer

    seen = []

    def fake(groups, out, cfg, dev=None):
        seen.append(cfg)
        return {"model_dir": str(out), "steps": 1}

    monkeypatch.setattr(trainer, "train_cross_encoder", fake)
    monkeypatch.setattr(trainer, "train_bi_encoder", fake)
    return seen


def test_train_scale_flag(tmp_path, trained, capsys):
    args = ["train", "--groups", str(tmp_path / "g"), "--out", str(tmp_path / "m"), "--kind", "bi"]
    assert main([*args, "--scale", "7.5"]) == 0
    assert trained[-1].scale == 7.5 and trained[-1].kind == "bi"
    assert main([*args, "--scale", "0", "--overwrite"]) == 2
    assert "--scale: Input should be greater than 0" in capsys.readouterr().err


def test_train_logging_steps_flag(tmp_path, trained, capsys):
    args = ["train", "--groups", str(tmp_path / "g"), "--out", str(tmp_path / "m")]
    assert main([*args, "--logging-steps", "3"]) == 0
    assert trained[-1].logging_steps == 3
    assert main([*args, "--logging-steps", "0", "--overwrite"]) == 2
    assert "--logging-steps: Input should be greater than or equal to 1 (got 0)" in capsys.readouterr().err


# --------------------------------------------------------------------------- relforge generate


def test_generate_flags_cover_generate_config_with_its_defaults():
    from relforge.generate.cli import _FLAG_MAP, generate

    flags = _flag_defaults(generate)
    fields = {name: (name,) for name in flags if name in GenerateConfig.model_fields}
    fields |= {name: (f,) if isinstance(f, str) else f for name, f in _FLAG_MAP.items()}
    by_field = {f: flags[name] for name, fs in fields.items() for f in fs}
    expected = {f: v for f, v in GenerateConfig().model_dump(exclude={"select", "filters"}).items()}
    expected |= {f"select.{f}": v for f, v in SelectConfig().model_dump().items()}  # select.seed: --seed
    expected |= {f"filters.{f}": v for f, v in FilterConfig().model_dump().items()}
    assert by_field == expected


@pytest.fixture
def generated(monkeypatch, tmp_path):
    """``relforge generate`` args on a 3-document corpus; the configs generate_queries was called with."""
    import relforge.generate as gen
    import relforge.llm as llm_mod
    from relforge.generate.queries import GenerateResult

    seen = []

    def fake_generate(model, docs, cfg, corpus=None):
        seen.append(cfg)
        summary = {"documents": len(docs), "generated": 0, "kept": 0, "dropped": {}}
        return GenerateResult([], {}, summary | {"prompt_id": "p", "prompt_hash": "0" * 12})

    class FakeLLM:
        def describe(self):
            return {}

    monkeypatch.setattr(gen, "generate_queries", fake_generate)
    monkeypatch.setattr(llm_mod, "load_llm", lambda spec, **kw: FakeLLM())
    write_corpus(tmp_path / "c.jsonl", [Document(f"d{i}", f"Document {i} about gout.") for i in range(3)])
    args = ["generate", "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "q.jsonl")]
    return args, seen


@pytest.mark.parametrize(
    "flag, value, section, field, expected, in_file",
    [
        ("--id-prefix", "syn", "", "id_prefix", "syn", "file"),
        ("--diverse-model", "bge-small", "select", "model", "bge-small", "e5-small"),
        ("--diverse-cache-dir", "emb-cache", "select", "cache_dir", "emb-cache", "file-cache"),
        ("--ngram", "2", "filters", "ngram", 2, 3),
        ("--max-copy-overlap", "0.25", "filters", "max_copy_overlap", 0.25, 0.5),
        ("--no-check-style", None, "filters", "check_style", False, True),
        ("--round-trip-model", "bge-small", "filters", "round_trip_model", "bge-small", "e5-small"),
    ],
)
def test_generate_added_flag(generated, tmp_path, flag, value, section, field, expected, in_file):
    args, seen = generated
    given = [flag] if value is None else [flag, value]

    def got():
        return getattr(getattr(seen[-1], section) if section else seen[-1], field)

    assert main([*args, *given, "--output", "json"]) == 0
    assert got() == expected
    # with --config: the file's value unless the flag is given on the command line
    line = f"{field}: {str(in_file).lower() if isinstance(in_file, bool) else in_file}\n"
    (tmp_path / "g.yaml").write_text(f"{section}:\n  {line}" if section else line, encoding="utf-8")
    assert main([*args, "--config", str(tmp_path / "g.yaml"), "--overwrite"]) == 0
    assert got() == in_file
    assert main([*args, "--config", str(tmp_path / "g.yaml"), *given, "--overwrite"]) == 0
    assert got() == expected


# --------------------------------------------------------------------------- relforge judge


def test_judge_flags_cover_judge_config_with_its_defaults():
    from relforge.judge.cli import judge

    flags = _flag_defaults(judge)
    # --thresholds is text parsed into the list; --max-new-tokens unset means the config's (or the reasoning one)
    special = {"thresholds": None, "max_new_tokens": None}
    expected = JudgeConfig().model_dump() | special
    assert {f: flags.get(f, "<no flag>") for f in JudgeConfig.model_fields} == expected


@pytest.fixture
def judged(monkeypatch, tmp_path):
    import relforge.judge.run as run

    seen = []
    record = dict(
        pairs=0, queries=0, model="m", seconds=0.0, pairs_per_s=None, grades={}, unparsed=0, retried=0
    )
    summary = run.JudgeSummary(pairs=0, unlabelled=0, record={**record, "skipped_unknown": 0})
    monkeypatch.setattr(run, "run", lambda cfg, inputs, out, **kw: seen.append(cfg) or summary)
    args = ["judge", "--corpus", "c.jsonl", "--queries", "q.jsonl", "--pairs", "p.tsv", "--llm", "hf:x"]
    return [*args, "--out", str(tmp_path / "j.jsonl")], seen


def test_judge_reasoning_max_new_tokens_flag(judged, capsys):
    args, seen = judged
    assert main([*args, "--reasoning-max-new-tokens", "40"]) == 0
    assert seen[-1].reasoning_max_new_tokens == 40 and seen[-1].max_new_tokens == JudgeConfig().max_new_tokens
    assert main([*args, "--reasoning-max-new-tokens", "0"]) == 2
    assert "invalid judge setting" in capsys.readouterr().err


def test_judge_retry_temperature_flag(judged, capsys):
    args, seen = judged
    assert main([*args, "--retry-temperature", "1.3"]) == 0
    assert seen[-1].retry_temperature == 1.3
    assert main([*args, "--retry-temperature", "-1"]) == 2
    assert "invalid judge setting" in capsys.readouterr().err


# --------------------------------------------------------------------------- retrieve, retrieve mine, evaluate


def test_retrieve_flags_cover_retrieve_config_with_its_defaults():
    from relforge.retrieve.cli import mine_cmd, retrieve_cmd
    from relforge.retrieve.config import MiningConfig, RetrieveConfig

    flags = _flag_defaults(retrieve_cmd)
    flags["doc_fields"] = flags["doc_fields"].split(",")  # --doc-fields is comma-separated
    assert {
        f: flags.get(f, "<no flag>") for f in RetrieveConfig.model_fields
    } == RetrieveConfig().model_dump()
    flags = _flag_defaults(mine_cmd)
    assert {f: flags.get(f, "<no flag>") for f in MiningConfig.model_fields} == MiningConfig().model_dump()


def test_evaluate_flags_cover_eval_config_with_its_defaults():
    from relforge.evaluate.cli import evaluate_cmd
    from relforge.evaluate.config import EvalConfig

    flags = _flag_defaults(evaluate_cmd)
    flags["permutation_rounds"] = flags.pop("rounds")  # --rounds
    expected = EvalConfig().model_dump() | {"measures": ",".join(EvalConfig().measures)}  # comma-separated
    assert {f: flags.get(f, "<no flag>") for f in EvalConfig.model_fields} == expected
