"""Quality filters for generated queries. Each is a small pure function; ``first_failure`` applies
them in a fixed order and names the first one that fails, so every dropped query is counted once.
"""

from __future__ import annotations

import re
import unicodedata

from relforge.generate.config import FilterConfig

#: filter names in the order they are applied (also the rows of the summary table)
FILTERS = (
    "llm_error",
    "empty",
    "too_short",
    "too_long",
    "copies_document",
    "copies_example",
    "wrong_style",
    "duplicate",
    "round_trip",
)

_WORD = re.compile(r"\w+", re.UNICODE)
_QUESTION_WORDS = frozenset(
    "what whats how why when where which who whom whose is are am was were can could do does did should "
    "would will shall may might must has have had isn't aren't can't don't doesn't".split()
)
_LABEL = re.compile(
    r"^\s*(?:(?:search\s+)?(?:query|question|keywords?|answer|q)\s*\d*\s*[:\-]\s*)+", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)])\s+")


def clean_output(raw: str) -> str:
    """The query inside a raw completion: first non-empty line, labels/bullets/quotes stripped."""
    for line in raw.replace("\r", "\n").split("\n"):
        line = _BULLET.sub("", _LABEL.sub("", line)).strip()
        line = line.strip("\"'`“”‘’ ").strip()
        if line:
            return re.sub(r"\s+", " ", line)
    return ""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """Lowercase, accents folded, punctuation removed, whitespace collapsed: the duplicate key."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(words(text))


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def copy_overlap(query: str, document: str, n: int = 4) -> float:
    """Share of the query's word n-grams that also occur in the document.

    A query shorter than ``n`` words has no n-grams and scores 0: a 3-word phrase is not a copy.
    """
    q = words(query)
    if len(q) < n:
        return 0.0
    q_grams = ngrams(q, n)
    d_grams = ngrams(words(document), n)
    return len(q_grams & d_grams) / len(q_grams)


def looks_like_question(text: str) -> bool:
    """Ends with ``?`` or starts with a question word / auxiliary verb (what, how, can, does, ...)."""
    t = text.strip()
    if t.endswith("?"):
        return True
    w = t.lower().split()
    return bool(w) and w[0].strip(",.:;") in _QUESTION_WORDS


def looks_like_keywords(text: str) -> bool:
    """Keyword style: no question mark and no sentence break."""
    return "?" not in text and not re.search(r"[.!]\s+\w", text)


STYLE_CHECKS = {"question": looks_like_question, "keyword": looks_like_keywords}


def first_failure(
    query: str, document: str, style: str, config: FilterConfig, example_keys: set[str]
) -> str | None:
    """The name of the first per-query filter that rejects ``query``, or None if it passes.

    Duplicates and round-trip need the whole batch and are applied by the caller.
    """
    if not query.strip():
        return "empty"
    n = len(words(query))
    if n < config.min_words:
        return "too_short"
    if n > config.max_words:
        return "too_long"
    if copy_overlap(query, document, config.ngram) >= config.max_copy_overlap:
        return "copies_document"
    if normalize(query) in example_keys:
        return "copies_example"
    if config.check_style and not STYLE_CHECKS[style](query):
        return "wrong_style"
    return None
