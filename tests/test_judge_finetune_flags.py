"""`relforge judge finetune` flags: one per config field, defaults read from the config models."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from relforge.judge.finetune_cli import finetune
from relforge.judge.finetune_config import CVConfig, FinetuneConfig
from relforge.judge.finetune_flags import FLAGS, cv_config, finetune_config, unflagged


def test_every_config_field_has_a_flag_on_the_command():
    assert unflagged(FinetuneConfig) == []
    assert unflagged(CVConfig) == ["seed"]  # the folds share --seed
    params = inspect.signature(finetune).parameters
    for name, flag in FLAGS.items():
        assert name in params, name  # the table's flag is a parameter of the command
        assert params[name].default.default == flag.default(), name


def test_flag_defaults_are_the_config_defaults():
    values = {name: flag.default() for name, flag in FLAGS.items()}
    assert finetune_config(values) == FinetuneConfig()
    assert cv_config(values) == CVConfig()


@pytest.fixture()
def captured(tmp_path, monkeypatch):
    """Run the command with training stubbed out; returns (run, seen configs)."""
    import relforge.judge.cv as cv
    import relforge.judge.finetune as ft
    from relforge.cli import main
    from relforge.data import write_corpus, write_qrels, write_queries
    from relforge.types import Document, Query

    write_corpus(tmp_path / "c.jsonl", [Document("d0", "text"), Document("d1", "more text")])
    write_queries(tmp_path / "q.jsonl", [Query("q0", "query"), Query("q1", "other")])
    write_qrels(tmp_path / "r.tsv", {"q0": {"d0": 1}, "q1": {"d1": 0}})
    seen: list[FinetuneConfig] = []

    def fake_finetune_judge(base, corpus, queries, qrels, out, cfg, **kw):
        seen.append(cfg)
        return {
            "best_epoch": 1,
            "class_counts": {},
            "zero_shot": None,
            "best": None,
            "timing": {"epoch_seconds": []},
        }

    def fake_run_cv(llm, corpus, queries, qrels, out, cfg, cv_cfg, **kw):
        seen.append(cv_cfg)
        return SimpleNamespace(judges=[])

    monkeypatch.setattr(ft, "finetune_judge", fake_finetune_judge)
    monkeypatch.setattr(cv, "run_cv", fake_run_cv)
    base = ["judge", "finetune", "--corpus", str(tmp_path / "c.jsonl"), "--queries", str(tmp_path / "q.jsonl"),
            "--qrels", str(tmp_path / "r.tsv"), "--llm", "hf:x", "--out", str(tmp_path / "out"), "--folds", "1"]  # fmt: skip

    def run(*flags: str) -> int:
        return main([*base, *flags])

    return run, seen


def test_no_flags_give_the_config_defaults(captured):
    run, seen = captured
    assert run() == 0
    assert seen == [FinetuneConfig()]


def test_the_added_flags_reach_the_config(captured):
    run, seen = captured
    flags = ["--max-seq-len", "512", "--val-queries", "q0, q1", "--max-val-pairs", "7", "--test-queries", "q1",
             "--lora-dropout", "0.1", "--target-modules", "q_proj,v_proj", "--no-cache-frozen",
             "--weight-decay", "0.01", "--warmup-ratio", "0.1", "--max-grad-norm", "0.5", "--eval-batch-size", "4",
             "--no-bf16", "--gradient-checkpointing", "--threads", "2", "--adapter-dtype", "float32"]  # fmt: skip
    assert run(*flags) == 0
    cfg = seen[-1]
    assert (cfg.max_seq_len, cfg.val_queries, cfg.max_val_pairs, cfg.test_queries) == (
        512,
        ["q0", "q1"],
        7,
        ["q1"],
    )
    assert (cfg.lora_dropout, cfg.target_modules, cfg.cache_frozen) == (0.1, ["q_proj", "v_proj"], False)
    assert (cfg.weight_decay, cfg.warmup_ratio, cfg.max_grad_norm, cfg.eval_batch_size) == (0.01, 0.1, 0.5, 4)
    assert (cfg.bf16, cfg.gradient_checkpointing, cfg.threads, cfg.adapter_dtype) == (
        False,
        True,
        2,
        "float32",
    )
    # 0 / empty mean "not set", as for --lora-layers and --max-per-class
    assert run("--threads", "0", "--max-val-pairs", "0", "--val-queries", "", "--bf16") == 0
    cfg = seen[-1]
    assert (cfg.threads, cfg.max_val_pairs, cfg.val_queries, cfg.bf16) == (None, None, None, True)
    assert cfg.gradient_checkpointing is None and cfg.target_modules == "all-linear"


def test_a_bad_added_setting_is_a_usage_error(captured, capsys):
    run, seen = captured
    assert run("--adapter-dtype", "int4") == 2
    err = capsys.readouterr().err  # the flag named, as every stage command's (relforge.cli_config)
    assert "invalid judge finetune setting: --adapter-dtype: Input should be 'float32' or 'float16'" in err
    assert run("--warmup-ratio", "1.5") == 2 and not seen


def test_the_cv_flags_reach_the_cv_config(captured):
    run, seen = captured
    assert (
        run("--folds", "3", "--seed", "4", "--threshold-metric", "macro_f1", "--cosine-model", "bge-small")
        == 0
    )
    assert seen[0] == CVConfig(folds=3, seed=4, threshold_metric="macro_f1", cosine_model="bge-small")
    assert isinstance(seen[1], FinetuneConfig) and seen[1].seed == 4  # then the final all-data adapter
    assert run("--folds", "3", "--no-final-adapter") == 0 and seen[2] == CVConfig(
        folds=3, final_adapter=False
    )
    assert len(seen) == 3
    assert run("--folds", "3", "--threshold-metric", "f2") == 2 and len(seen) == 3
