"""`relforge judge finetune` (registered on the judge sub-app by relforge.judge.cli)."""

from __future__ import annotations

import typer


def register_finetune(judge_app: typer.Typer) -> None:
    """Add the `finetune` command to the `relforge judge` sub-app."""
