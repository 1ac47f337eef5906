"""Resumable result shards of an engine run, keyed by the LLM cache's content hash.

A run's work folder holds ``LOCK`` and ``shard-<time>-<pid>.jsonl`` files. Each line is one finished
item ``{"key": <call_key>, ...}`` appended and flushed as soon as it is known, so a driver killed with
SIGKILL loses only what was in flight. A rerun reads every shard, skips the keys already there and
appends to a new shard; the final output is built from the shards, one item per key.

Guarantees: one driver per work folder (``LOCK`` is an exclusive ``flock`` held for the whole run and
released by the OS when the process dies, so a killed driver never leaves a stale lock; a second driver
is refused with the holder's pid). ``flock`` is per machine: on a network file system shared by drivers
on several hosts, use one output location per driver. A line torn by a kill mid-write (no newline at the
end of a shard) is ignored and counted; if a key were ever written twice the first one is kept and the
duplicates counted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relforge.errors import DataError, UsageError


def default_workdir(out: str | Path) -> Path:
    """``<out>.ray`` beside the output file."""
    out = Path(out)
    return out.with_name(out.name + ".ray")


class ShardStore:
    """The work folder of one output: an exclusive lock, the finished items, an append-only shard.

    Use as a context manager: entering takes the lock (or raises :class:`UsageError`), reads the shards
    and opens a new one for appending; leaving closes it and releases the lock.
    """

    def __init__(self, workdir: str | Path):
        self.dir = Path(workdir)
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = 0
        self.duplicates = 0
        self.written = 0
        self._lock_fh: Any = None
        self._fh: Any = None

    def __enter__(self) -> ShardStore:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._load()
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"
        self._fh = open(self.dir / name, "a", encoding="utf-8")  # noqa: SIM115
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            if self._fh.name and os.path.getsize(self._fh.name) == 0:
                os.unlink(self._fh.name)
            self._fh = None
        if self._lock_fh is not None:
            import fcntl

            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _take_lock(self) -> None:
        import fcntl

        fh = open(self.dir / "LOCK", "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise UsageError(
                f"another relforge driver ({holder}) is writing {self.dir}; wait for it to finish, or give this "
                f"run another output (--out) or engine workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        fh.flush()
        self._lock_fh = fh

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.jsonl"))

    def _load(self) -> None:
        for path in self.shards():
            for obj in _read_shard(path, self):
                key = obj["key"]
                if key in self.done:
                    self.duplicates += 1
                    continue
                self.done[key] = obj

    def add(self, item: dict[str, Any]) -> None:
        """Append one finished item (must hold ``key``) and flush it to the OS at once."""
        if item["key"] in self.done:
            self.duplicates += 1
            return
        self._fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done[item["key"]] = item
        self.written += 1

    def sync(self) -> None:
        """fsync the open shard (survives a machine crash, not only a process kill)."""
        if self._fh is not None:
            os.fsync(self._fh.fileno())


def _read_shard(path: Path, store: ShardStore) -> Iterator[dict[str, Any]]:
    data = path.read_text(encoding="utf-8")
    lines = data.split("\n")
    complete, tail = lines[:-1], lines[-1]
    if tail.strip():  # the last line has no newline: torn by a kill mid-write
        store.torn += 1
    for lineno, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise DataError(
                "shard line is not JSON (delete the shard to recompute it)", path=path, line=lineno
            ) from None
        if not isinstance(obj, dict) or "key" not in obj:
            raise DataError("shard line has no 'key'", path=path, line=lineno)
        yield obj
