"""``--timeout`` / ``--retries``: the CLI options every LLM-using command shares, and their backend options."""

from __future__ import annotations

import typer


def timeout_option() -> typer.models.OptionInfo:
    return typer.Option(
        None, "--timeout", min=0.001, help="openai: seconds per request before it is retried (default 60)."
    )


def retries_option() -> typer.models.OptionInfo:
    return typer.Option(
        None,
        "--retries",
        min=0,
        help="openai: retries on 429/5xx/timeouts, each printed on stderr (default 4).",
    )


def llm_net_options(spec: str, timeout: float | None, retries: int | None) -> dict:
    """``--timeout`` / ``--retries`` as backend options (openai: backends only; an error elsewhere)."""
    from relforge.errors import UsageError
    from relforge.llm import parse_spec

    opts = {k: v for k, v in (("timeout", timeout), ("max_retries", retries)) if v is not None}
    if opts and parse_spec(spec)[0] != "openai":
        raise UsageError("--timeout and --retries apply to openai: LLM specs (local models do not time out)")
    return opts
