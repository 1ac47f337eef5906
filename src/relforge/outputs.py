"""One output guard for every command that writes: nothing the user did not ask relforge to replace is lost.

Rules (see docs/reliability.md):

- an output **file** that exists is replaced only with ``--overwrite``;
- an output **folder** that exists and is not empty is written into only when relforge created it (it
  holds the marker file :data:`MARKER`, or a pipeline ``manifest.json``) or with ``--overwrite``;
- relforge never deletes (``rmtree``) a folder it did not create: with ``--overwrite`` on a foreign
  folder, the files relforge writes replace same-named files and every other file stays.
"""

from __future__ import annotations

import os
from pathlib import Path

from relforge.errors import UsageError

#: marker file relforge writes into every output folder it creates
MARKER = ".relforge-output"
#: files that also mark a folder as relforge's own (pipeline artifacts folders of older versions)
_OWN_FILES = (MARKER, "manifest.json")


def owned(folder: str | os.PathLike) -> bool:
    """True when ``folder`` was created by relforge (holds :data:`MARKER` or a pipeline manifest)."""
    p = Path(folder)
    return any((p / name).is_file() for name in _OWN_FILES)


def _is_empty_dir(p: Path) -> bool:
    return p.is_dir() and not any(p.iterdir())


def guard_file(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check that ``path`` may be written as a file; raises :class:`UsageError` (exit 2) otherwise."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a folder; give a file name")
    if p.exists() and not overwrite:
        raise UsageError(
            f"{flag} {p}: the file exists; add --overwrite to replace it, or choose another {flag}"
        )
    return p


def guard_dir(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check that ``path`` may be written as an output folder; raises :class:`UsageError` otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder; choose another {flag}")
    if p.is_dir() and not _is_empty_dir(p) and not owned(p) and not overwrite:
        raise UsageError(
            f"{flag} {p}: the folder exists, is not empty and was not created by relforge; choose another "
            f"{flag}, or add --overwrite (relforge then replaces only the files it writes and deletes "
            "nothing else)"
        )
    return p


def claim_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (parents too) and, when it is new or empty, mark it as relforge's output.

    A non-empty folder relforge did not create (written into with ``--overwrite``) is never marked, so
    nothing later treats the user's other files as relforge's to replace."""
    p = Path(path)
    fresh = not p.exists() or _is_empty_dir(p)
    p.mkdir(parents=True, exist_ok=True)
    if fresh:
        (p / MARKER).write_text("written by relforge; relforge commands may replace this folder\n")
    return p


def prepare_dir(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """:func:`guard_dir` then :func:`claim_dir`."""
    guard_dir(path, overwrite=overwrite, flag=flag)
    return claim_dir(path)
