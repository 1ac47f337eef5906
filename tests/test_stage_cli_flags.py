"""Every config field of the train / generate / judge stages has a CLI flag whose default is the config's,
and each flag added for a field that had none reaches the config the stage runs with (back ends faked)."""

from __future__ import annotations

import inspect

import pytest

from relforge.cli import main
from relforge.train.config import TrainConfig


def _flag_defaults(fn) -> dict:
    """``{parameter: default}`` of a typer command function (the defaults its options declare)."""
    return {name: p.default.default for name, p in inspect.signature(fn).parameters.items() if name != "ctx"}


# --------------------------------------------------------------------------- relforge train


def test_train_flags_cover_train_config_with_its_defaults():
    from relforge.train.cli import train

    flags = _flag_defaults(train)
    assert {f: flags.get(f, "<no flag>") for f in TrainConfig.model_fields} == TrainConfig().model_dump()


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
    assert "logging_steps: Input should be greater than or equal to 1" in capsys.readouterr().err
