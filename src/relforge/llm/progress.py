"""A rich progress bar for long LLM batches (on stderr; a no-op when disabled or for short jobs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    total: int, description: str, *, enabled: bool = True, min_total: int = 2
) -> Iterator[Callable]:
    """Yield ``advance(n=1)``; draws a rich bar on stderr when ``enabled`` and ``total >= min_total``.

    Args:
        total: number of items.
        description: label shown left of the bar.
        enabled: False disables the bar entirely (``progress=False`` of the backends).
        min_total: below this many items no bar is drawn (single calls stay quiet).

    Yields:
        A function advancing the bar by ``n`` items.
    """
    if not enabled or total < min_total:
        yield lambda n=1: None
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
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
