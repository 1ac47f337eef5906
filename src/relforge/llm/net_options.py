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


def precision_option() -> typer.models.OptionInfo:
    return typer.Option(
        None,
        "--precision",
        help="hf (local models): auto|fp32|bf16|int8 (auto = bf16 where the CPU/GPU has it, else fp32; "
        "fp16 on GPU only; default fp32 on CPU). See docs/precision.md.",
    )


def llm_precision_options(spec: str, precision: str | None) -> dict:
    """``--precision`` as a backend option: ``{"precision": p}`` for local (hf) models, ``{}`` when not given.

    Raises:
        UsageError: an unknown value, or a precision other than ``auto`` for a non-hf spec (an ``openai:``
            server or llama.cpp GGUF file has its own precision, which relforge cannot change).
    """
    from relforge.errors import UsageError
    from relforge.llm import parse_spec
    from relforge.precision import normalize_precision

    if precision is None:
        return {}
    p = normalize_precision(precision)
    scheme = parse_spec(spec)[0]
    if scheme != "hf":
        if p == "auto":
            return {}
        raise UsageError(
            f"--precision {p} applies to local hf: models only; a {scheme}: LLM runs in its own precision "
            "(set it in the server, e.g. vLLM --dtype, or pick a different GGUF file)"
        )
    return {"precision": p}
