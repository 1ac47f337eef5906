"""The root CLI: help, version, `python -m relforge`, and RelforgeError -> exit code + one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

import relforge
from relforge import cli
from relforge.cli import main
from relforge.errors import DataError, MissingInputError, RelforgeError, UsageError


def test_help_lists_the_stages(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "relforge" in out.lower() and "data" in out


def test_data_help_lists_the_commands(capsys):
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("medquad", "convert", "stats", "sample", "validate"):
        assert cmd in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == relforge.__version__


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=env)


def test_python_dash_m_and_console_script():
    r = _run(sys.executable, "-m", "relforge", "--help")
    assert r.returncode == 0 and "data" in r.stdout, r.stderr
    exe = os.path.join(os.path.dirname(sys.executable), "relforge")
    if not os.path.exists(exe):
        pytest.skip("console script not installed next to the interpreter")
    r = _run(exe, "--help")
    assert r.returncode == 0 and "data" in r.stdout
    # a user error through the real entry point: exit code 4, one line on stderr, no traceback
    r = _run(exe, "data", "stats", "/nonexistent/folder")
    assert r.returncode == 4
    assert r.stderr.strip().splitlines() == [
        "error: /nonexistent/folder: no such folder (expected a BEIR folder with corpus.jsonl)"
    ]


def test_python_dash_m_version():
    r = _run(sys.executable, "-m", "relforge", "--version")
    assert r.returncode == 0 and r.stdout.strip() == relforge.__version__


@pytest.mark.parametrize(
    "exc, code",
    [
        (UsageError("bad flag --x"), 2),
        (MissingInputError("no such file"), 4),
        (DataError("malformed JSON", path="c.jsonl", line=7), 5),
        (RelforgeError("boom"), 6),
    ],
)
def test_relforge_error_becomes_exit_code_and_one_line(monkeypatch, capsys, exc, code):
    probe = typer.Typer()

    @probe.command()
    def go() -> None:
        raise exc

    monkeypatch.setattr(cli, "app", probe)
    assert main([]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {exc}"]
    if isinstance(exc, DataError):
        assert err[0] == "error: c.jsonl:7: malformed JSON"


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
