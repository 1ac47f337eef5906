"""Robust parsing of a grade from a judge's free-text reply (``generate`` mode).

Replies from small models are messy: ``"Grade: 2"``, ``"**2**"``, ``"2 - partly answers"``,
``"The answer is 3."``, a paragraph of reasoning that ends with the grade, or a copy of the
document. :func:`parse_grade` tries an ordered list of patterns (:data:`PATTERNS`), most specific
first. Within a pattern the *last* match wins (reasoning first, grade last). A match whose value is
not on the scale (``"Grade: 4"`` on a 0-3 scale, ``"2.5"``, ``"10/10"``) is not a grade: the pattern
is ignored and the next one is tried. When nothing matches, the result is ``None`` — the caller
counts it as unlabelled; it is never mapped to a grade.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: the value slot of every pattern: any number (so out-of-scale numbers are seen, then rejected)
#: or, for word labels (``yes``/``no``), the label itself; filled in per scale by :func:`_compile`.
_VALUE = "{value}"

#: (name, regex) in priority order. ``{value}`` is replaced by the scale's value alternation.
PATTERNS: list[tuple[str, str]] = [
    # "Grade: 2", "Final grade = **3**", "relevance score is 1", "The answer is 3.", "Rating - 0"
    (
        "keyword",
        r"(?:grade|score|rating|relevance|label|answer|judge?ment|verdict)\b[^\S\n]*"
        r"(?:is|of|would be|will be|should be|=|:|-|—)?[^\S\n]*[*_\"'`(\[]*[^\S\n]*"
        r"(?<![\w.])(?P<v>{value})(?!\w|\.\d)",
    ),
    # "2/3", "2 out of 3"
    ("fraction", r"(?<![\w.])(?P<v>{value})[^\S\n]*(?:/|out of)[^\S\n]*\d+"),
    # "**2**", "__2__", "*2*"
    ("emphasis", r"(?:\*{1,2}|_{1,2})[^\S\n]*(?P<v>{value})[^\S\n]*(?:\*{1,2}|_{1,2})"),
    # the whole reply is the grade: "2", "2.", "'3'", "(1)", "[0]"
    ("bare", r"\A\W*(?P<v>{value})\W*\Z"),
    # the reply starts with the grade, then a separator: "2 - partly", "3: perfectly relevant", "1 (related)"
    ("leading", r"\A\W*(?P<v>{value})[^\S\n]*(?:-|—|–|:|\(|,|\.(?!\d)|\n)"),
    # reasoning, then the grade as the very last token: "... so I would say 2."
    ("trailing", r"(?<![\w.])(?P<v>{value})\W*\Z"),
]


def _compile(labels: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    words = [re.escape(lab) for lab in labels if not re.fullmatch(r"\d+", lab)]
    value = r"\d+(?:\.\d+)?" + "".join(f"|{w}" for w in words)
    return [(name, re.compile(rx.replace(_VALUE, f"(?:{value})"), re.IGNORECASE)) for name, rx in PATTERNS]


_COMPILED: dict[tuple[str, ...], list[tuple[str, re.Pattern[str]]]] = {}


def parse_grade_label(text: str | None, labels: Sequence[str]) -> tuple[str | None, str | None]:
    """Find the grade label in a reply.

    Args:
        text: the model's reply.
        labels: the scale's label strings.

    Returns:
        ``(label, pattern_name)``, or ``(None, None)`` when the reply holds no in-scale grade.
    """
    if not text or not text.strip():
        return None, None
    key = tuple(labels)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(labels)
    canon = {lab.lower(): lab for lab in labels}
    stripped = text.strip()
    for name, rx in _COMPILED[key]:
        for m in reversed(list(rx.finditer(stripped))):  # the last in-scale match of a pattern wins
            val = m.group("v").lower()
            if val in canon:
                return canon[val], name
            # out of scale ("4", "2.5", "10"): not a grade; try earlier matches, then the next pattern
    return None, None


def parse_grade(text: str | None, labels: Sequence[str], values: Sequence[int] | None = None) -> int | None:
    """Parse a judge reply into a grade value, or ``None`` if no in-scale grade is found.

    Args:
        text: the model's reply.
        labels: the scale's label strings (``JudgeTemplate.labels``), e.g. ``["0", "1", "2", "3"]``.
        values: the numeric grade of each label (``JudgeTemplate.values``); defaults to ``0..n-1``.

    Returns:
        The grade value, or ``None`` when the reply holds no grade on the scale.
    """
    label, _ = parse_grade_label(text, labels)
    if label is None:
        return None
    vals = list(values) if values is not None else list(range(len(labels)))
    return vals[list(labels).index(label)]
