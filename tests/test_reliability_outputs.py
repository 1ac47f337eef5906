"""Issue 15, family "data loss": no command replaces a file or fills a folder it was not asked to.

Real ``relforge`` subprocesses: the CLI is the interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relforge.outputs import MARKER


def relforge(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "relforge", *map(str, args)], env=env, capture_output=True, text=True, cwd=cwd
    )


def _corpus(path: Path) -> Path:
    path.write_text('{"_id": "d1", "text": "alpha"}\n{"_id": "d2", "text": "beta"}\n')
    return path


def test_convert_to_hf_refuses_a_foreign_folder_and_never_deletes_it(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    src = _corpus(folder / "corpus.jsonl")  # the input sits inside the output folder
    notes = folder / "notes.txt"
    notes.write_text("precious")
    r = relforge("data", "convert", src, folder, "--kind", "corpus", "--to", "hf")
    assert r.returncode == 2, r.stderr
    assert "not created by relforge" in r.stderr and "--overwrite" in r.stderr
    assert src.read_text().count("\n") == 2 and notes.read_text() == "precious"

    # another folder: fine, marked as relforge's; a second conversion may replace it (it is ours)
    out = tmp_path / "hf"
    assert relforge("data", "convert", src, out, "--kind", "corpus", "--to", "hf").returncode == 0
    assert (out / MARKER).is_file() and (out / "dataset_info.json").is_file()
    assert relforge("data", "convert", src, out, "--kind", "corpus", "--to", "hf").returncode == 0

    # --overwrite into the foreign folder writes the dataset and keeps every other file
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    r = relforge("data", "convert", src, other, "--kind", "corpus", "--to", "hf", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (other / "keep.txt").read_text() == "keep" and (other / "dataset_info.json").is_file()
    assert not (other / MARKER).exists()  # still not ours: a later run without --overwrite is refused
    r = relforge("data", "convert", src, other, "--kind", "corpus", "--to", "hf")
    assert r.returncode == 2


def test_an_existing_output_file_needs_overwrite(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    dst = tmp_path / "corpus.csv"
    dst.write_text("someone else's file\n")
    r = relforge("data", "convert", src, dst, "--kind", "corpus")
    assert r.returncode == 2 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert dst.read_text() == "someone else's file\n"
    assert relforge("data", "convert", src, dst, "--kind", "corpus", "--overwrite").returncode == 0
    assert dst.read_text().startswith("_id,")

    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "alpha"}\n')
    run = tmp_path / "run.trec"
    run.write_text("precious run\n")
    r = relforge("retrieve", "--corpus", src, "--queries", queries, "--out", run, "--method", "bm25")
    assert r.returncode == 2 and run.read_text() == "precious run\n"


def test_folder_commands_refuse_foreign_folders(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    for args in (
        ("run", cfg, "--out", foreign, "--dry-run"),
        ("data", "sample", "liveqa-med", "--out", foreign),
        ("data", "medquad", tmp_path / "missing.tar.xz", "--out", foreign),
    ):
        r = relforge(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "not created by relforge" in r.stderr, args
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]

    # a folder relforge created is reused without --overwrite (rerun, resume)
    ok = tmp_path / "groups"
    assert relforge("data", "sample", "liveqa-med", "--out", tmp_path / "s").returncode == 0
    s = tmp_path / "s"
    assert (s / MARKER).is_file()
    assert (
        relforge("data", "convert", s / "qrels" / "test.tsv", ok, "--kind", "qrels", "--to", "hf").returncode
        == 0
    )
    assert (
        relforge("data", "convert", s / "qrels" / "test.tsv", ok, "--kind", "qrels", "--to", "hf").returncode
        == 0
    )
