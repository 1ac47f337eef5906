"""relforge without its `[local]`/`[train]` extras: data, BM25, evaluation and the judge over an
OpenAI-compatible server (a real HTTP server on 127.0.0.1) run with torch, transformers, sentence-transformers,
peft, accelerate, gguf and ONNX absent; a command that needs them fails with the pip command to run.

"Absent" is real, not a mock: the child Python starts without site (``-S``) on a copy of this environment's
site-packages (symlinks) that leaves those packages out, so ``import torch`` and
``importlib.util.find_spec("torch")`` behave as on a machine where they were never installed.

``dataset build`` is not run here: under a symlinked site-packages `datasets`' fingerprinting (dill) fails to
pickle pyarrow's ``MonthDayNano`` even with every package linked, torch included: an artifact of the links,
not of torch's absence (measured 2026-12-06)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from relforge.errors import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
ABSENT = {n for names in EXTRAS.values() for n in names} | {"torchgen", "functorch", "trl"}


def _dist_name(entry: str) -> str:
    """``torch-2.13.0+cpu.dist-info`` -> ``torch``; ``sentence_transformers`` -> ``sentence_transformers``."""
    return entry.split("-")[0].lower() if entry.endswith((".dist-info", ".egg-info")) else entry.lower()


@pytest.fixture(scope="module")
def no_torch_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site-without-torch")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = _dist_name(entry.name).removesuffix(".py")
        if name in ABSENT or entry.suffix == ".pth" or name.startswith("__editable__"):
            continue
        (site / entry.name).symlink_to(entry)
    return site


def _relforge(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RELFORGE"))}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{ROOT / 'src'}"
    code = "import sys; from relforge.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_environment_really_lacks_torch(no_torch_site, tmp_path):
    r = _relforge(no_torch_site, tmp_path, "--version")
    assert r.returncode == 0, r.stderr
    env = {"PYTHONPATH": f"{no_torch_site}{os.pathsep}{ROOT / 'src'}", "PATH": os.environ.get("PATH", "")}
    probe = "import importlib.util as u; print([m for m in ('torch','transformers','sentence_transformers','peft') if u.find_spec(m)])"
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_core_commands_run_without_torch(no_torch_site, tmp_path, tiny_llm_dir):
    from relforge.llm.hf import HFBackend
    from relforge.llm.serve import LLMServer

    def ok(*args: str) -> str:
        r = _relforge(no_torch_site, tmp_path, *args)
        assert r.returncode == 0, f"relforge {' '.join(args)}: {r.stderr[-2000:]}"
        return r.stdout + r.stderr

    ok("data", "sample", "medquad", "--out", "s")
    ok(
        "retrieve",
        "--corpus",
        "s/corpus.jsonl",
        "--queries",
        "s/queries.jsonl",
        "--method",
        "bm25",
        "--top-k",
        "10",
        "--out",
        "bm25.trec",
    )
    out = ok("evaluate", "--qrels", "s/qrels/test.tsv", "--run", "bm25.trec", "--measures", "nDCG@10")
    assert "nDCG@10" in out
    qid, docid = (tmp_path / "s/qrels/test.tsv").read_text().splitlines()[1].split("\t")[:2]
    (tmp_path / "pairs.tsv").write_text(f"{qid}\t{docid}\n")
    server = LLMServer(HFBackend.load(tiny_llm_dir, batch_size=2, progress=False), port=0, model_name="tiny")
    with server.running():
        ok("judge", "--corpus", "s/corpus.jsonl", "--queries", "s/queries.jsonl", "--pairs", "pairs.tsv", "--llm", f"openai:{server.url}#tiny", "--out", "j.jsonl", "--no-cache", "--no-progress")  # fmt: skip
    line = (tmp_path / "j.jsonl").read_text().splitlines()[0]
    assert f'"qid": "{qid}"' in line and '"probs"' in line


def test_a_command_needing_torch_names_the_extra(no_torch_site, tmp_path):
    _relforge(no_torch_site, tmp_path, "data", "sample", "medquad", "--out", "s")
    qid, docid = (tmp_path / "s/qrels/test.tsv").read_text().splitlines()[1].split("\t")[:2]
    (tmp_path / "run.trec").write_text(f"{qid} Q0 {docid} 1 1.0 bm25\n")
    r = _relforge(no_torch_site, tmp_path, "rerank", "--model", "minilm", "--kind", "bi", "--corpus", "s/corpus.jsonl", "--queries", "s/queries.jsonl", "--run", "run.trec", "--out", "r.trec")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "pip install 'relforge[local]'" in r.stderr and "Traceback" not in r.stderr


def test_core_dependencies_leave_the_extras_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {
        d.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_")
        for d in project["dependencies"]
    }
    assert not core & ABSENT
    local = {d.split(">")[0].lower().replace("-", "_") for d in project["optional-dependencies"]["local"]}
    train = {d.split(">")[0].lower().replace("-", "_") for d in project["optional-dependencies"]["train"]}
    assert set(EXTRAS["local"]) <= local <= train and set(EXTRAS["train"]) <= train
