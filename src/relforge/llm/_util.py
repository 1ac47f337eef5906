"""Small helpers shared by the backends (input checks, log-prob arithmetic)."""

from __future__ import annotations

import math

from relforge.errors import UsageError
from relforge.llm.base import Chat


def check_chat(chat: Chat) -> None:
    """Raise UsageError unless ``chat`` is a non-empty list of ``{"role": str, "content": str}``."""
    if (
        not isinstance(chat, list)
        or not chat
        or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in chat
        )
    ):
        raise UsageError(
            f"a chat must be a non-empty list of {{'role': str, 'content': str}} messages, got {str(chat)[:120]!r}"
        )


def check_choices(choices: list[str]) -> list[str]:
    """Return ``choices`` as a list; UsageError unless they are distinct non-empty strings."""
    choices = list(choices)
    if not choices or len(set(choices)) != len(choices) or not all(isinstance(c, str) and c for c in choices):
        raise UsageError(f"choices must be distinct non-empty strings, got {choices!r}")
    return choices


def logsumexp(xs: list[float]) -> float:
    """log(sum(exp(x))) computed stably; -inf for an empty list."""
    if not xs:
        return -math.inf
    m = max(xs)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(x - m) for x in xs))


def probs_from_top_logprobs(top: list[tuple[str, float]], choices: list[str]) -> dict[str, float]:
    """Choice probabilities from a server's ``top_logprobs`` of the first answer token.

    A token matches a choice when equal after stripping whitespace (``" yes"`` matches ``"yes"``; case
    matters); several matching tokens add up. Choices absent from the top list get probability 0.

    Returns:
        ``{choice: prob}`` normalised over the choices, or ``{}`` when no choice is in the list (the item
        cannot be scored; callers count it, never guess).
    """
    by_choice: dict[str, list[float]] = {c: [] for c in choices}
    for tok, lp in top:
        key = tok.strip()
        if key in by_choice and lp is not None:
            by_choice[key].append(float(lp))
    totals = {c: logsumexp(v) for c, v in by_choice.items()}
    z = logsumexp(list(totals.values()))
    if z == -math.inf:
        return {}
    return {c: math.exp(t - z) for c, t in totals.items()}
