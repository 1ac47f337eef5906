"""Progress for long stages: a live rich bar on a terminal, plain lines in a log file.

When stderr is a terminal, :func:`progress` draws a rich bar. When it is not (output redirected to a file,
CI, ``nohup``), it prints one plain line at a steady interval instead::

    judge: 120/1164 (10%), 1.9/s, ETA 9m10s

plus a first line when it starts and a last one when it ends. The interval is ``interval`` seconds, or
``$RELFORGE_PROGRESS_INTERVAL`` (default 15). ``$RELFORGE_PROGRESS=plain`` forces plain lines on a terminal
too, ``=bar`` forces the bar. :func:`warn` prints a warning line on the console whether progress is on or
off (retries, fallbacks): the user must see those in a log file too.

>>> with progress(len(items), "judge") as advance:
...     for batch in batches:
...         work(batch)
...         advance(len(batch))
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

DEFAULT_INTERVAL = 15.0

Advance = Callable[..., None]


def _noop(n: int = 1) -> None:
    return None


def warn(message: str, *, stream: IO[str] | None = None) -> None:
    """One ``warning: ...`` line on stderr (above a live bar if one is drawn), flushed at once."""
    out = stream or sys.stderr
    print(f"warning: {message}", file=out, flush=True)


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``4000`` -> ``1h06m``; ``9`` -> ``9s``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def plain_line(label: str, done: int, total: int, elapsed: float) -> str:
    """``label: done/total (pct%), rate/s, ETA ...`` (rate and ETA once something is done)."""
    pct = 100.0 * done / total if total else 100.0
    line = f"{label}: {done}/{total} ({pct:.0f}%)"
    if done and elapsed > 0:
        rate = done / elapsed
        line += f", {rate:.2f}/s" if rate < 10 else f", {rate:.0f}/s"
        line += f", ETA {format_duration((total - done) / rate)}" if done < total else ""
    return line + f", {format_duration(elapsed)} elapsed"


class PlainProgress:
    """Counts items and prints :func:`plain_line` every ``interval`` seconds from a daemon thread (so a
    line appears even while one long batch runs), plus start and end lines.

    Args:
        total: number of items.
        label: what is counted (``judge``, ``generate``...).
        interval: seconds between lines.
        stream: where lines go (default stderr).
    """

    def __init__(self, total: int, label: str, *, interval: float, stream: IO[str] | None = None):
        self.total, self.label, self.interval = int(total), label, float(interval)
        self.stream = stream or sys.stderr
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._tick, daemon=True, name=f"progress-{label}")

    def _print(self) -> None:
        with self._lock:
            done = self.done
        print(
            plain_line(self.label, done, self.total, time.monotonic() - self._t0),
            file=self.stream,
            flush=True,
        )

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._print()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += int(n)

    def __enter__(self) -> PlainProgress:
        print(f"{self.label}: 0/{self.total} started", file=self.stream, flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._print()


def _interval(interval: float | None) -> float:
    if interval is not None:
        return float(interval)
    try:
        return max(0.05, float(os.environ.get("RELFORGE_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def use_plain(stream: IO[str] | None = None) -> bool:
    """True when progress should be plain lines: stderr is not a terminal, or ``RELFORGE_PROGRESS=plain``."""
    mode = os.environ.get("RELFORGE_PROGRESS", "").strip().lower()
    if mode in ("plain", "bar"):
        return mode == "plain"
    s = stream or sys.stderr
    try:
        return not s.isatty()
    except (AttributeError, ValueError):
        return True


@contextmanager
def progress(
    total: int,
    label: str,
    *,
    enabled: bool = True,
    min_total: int = 2,
    interval: float | None = None,
    stream: IO[str] | None = None,
) -> Iterator[Advance]:
    """Yield ``advance(n=1)`` for a job of ``total`` items: a rich bar on a terminal, plain lines otherwise.

    Args:
        total: number of items.
        label: shown before the counts.
        enabled: False shows nothing (``--no-progress``); :func:`warn` lines still appear.
        min_total: below this many items nothing is shown (single calls stay quiet).
        interval: seconds between plain lines (default ``$RELFORGE_PROGRESS_INTERVAL`` or 15).
        stream: where plain lines go (default stderr).
    """
    if not enabled or total < min_total:
        yield _noop
        return
    if use_plain(stream):
        with PlainProgress(total, label, interval=_interval(interval), stream=stream) as p:
            yield p.advance
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream) if stream is not None else Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)
