"""Cut huge texts by characters before any tokenizer sees them (issue 15: a 50 MB document was
tokenised whole, 75 s and 6.6 GB for one pair, before being cut to a few hundred tokens).

The character budget is generous (:data:`CHARS_PER_TOKEN` characters per token of budget, about twice
what English text needs), so the first ``max_tokens`` tokens of the cut text are those of the whole text
and ordinary documents are not changed at all.
"""

from __future__ import annotations

#: characters kept per token of budget before tokenising (English averages ~4 characters a token)
CHARS_PER_TOKEN = 8


def char_budget(max_tokens: int) -> int:
    return max(1, int(max_tokens)) * CHARS_PER_TOKEN


def cut_chars(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``(text[:char_budget(max_tokens)], was_cut)``; ``max_tokens`` None or <= 0 keeps the text."""
    if not max_tokens or max_tokens <= 0:
        return text, False
    limit = char_budget(max_tokens)
    if len(text) <= limit:
        return text, False
    return text[:limit], True
