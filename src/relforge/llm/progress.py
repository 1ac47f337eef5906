"""Progress of long LLM batches: :func:`relforge.progress.progress` (a rich bar on a terminal, plain
``done/total, rate, ETA`` lines in a log file). ``progress_bar`` is kept as its older name."""

from __future__ import annotations

from relforge.progress import progress, warn

progress_bar = progress

__all__ = ["progress", "progress_bar", "warn"]
