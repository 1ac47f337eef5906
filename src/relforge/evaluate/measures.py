"""Measure names -> ir_measures measure objects, parsed once (CLI, config and Python share the strings)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from relforge.errors import UsageError

_EXAMPLES = '"nDCG@10", "MRR@10", "RR(rel=2)@10", "P(rel=2)@10", "MAP@100", "R@100", "Judged@10"'


@dataclass(frozen=True)
class MeasureSpec:
    """One measure to compute.

    Attributes:
        name: the label shown in tables and used as the key in results (what the user typed, or the
            canonical ir_measures name when ``rel`` was applied to it).
        measure: the ir_measures measure object.
        provider: name of the ir_measures provider that computes it (``pytrec_eval`` when it can).
    """

    name: str
    measure: Any
    provider: str

    @property
    def canonical(self) -> str:
        return repr(self.measure)


def split_measures(text: str) -> list[str]:
    """Split ``"nDCG@10,RR(rel=2)@10"`` on commas outside parentheses/braces (measure params contain commas)."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def _provider_for(measure) -> str | None:
    import ir_measures

    for provider in ir_measures.DefaultPipeline.providers:
        if provider.NAME == "runtime":
            continue
        if provider.supports(measure) and provider.is_available():
            return provider.NAME
    return None


def parse_measures(names: Iterable[str] | str, rel: int | None = None) -> list[MeasureSpec]:
    """Parse ir_measures names once; collect every error before raising.

    Args:
        names: measure names (or one comma-separated string), e.g. ``["nDCG@10", "RR(rel=2)@10"]``.
        rel: minimum grade counted as relevant, applied to measures that accept ``rel`` and do not set it
            (P, R, RR, AP, Success, ...). nDCG has no ``rel``: it always uses the graded qrels.

    Returns:
        One :class:`MeasureSpec` per name, in the given order.

    Raises:
        UsageError: unknown or malformed names, measures no installed provider computes, duplicates.
    """
    import ir_measures

    if isinstance(names, str):
        names = split_measures(names)
    names = list(names)
    if not names:
        raise UsageError(f"no measures given; pass e.g. --measures {_EXAMPLES.split(', ')[0]}")
    errors: list[str] = []
    specs: list[MeasureSpec] = []
    seen: dict[str, str] = {}
    for name in names:
        try:
            measure = ir_measures.parse_measure(name)
        except Exception as e:  # ir_measures raises ValueError/NameError/SyntaxError variants
            errors.append(f"{name!r}: {e}")
            continue
        label = name
        if rel is not None and "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:
            measure = measure(rel=rel)
            label = repr(measure)
        provider = _provider_for(measure)
        if provider is None:
            errors.append(f"{name!r}: no installed ir_measures provider computes {measure!r}")
            continue
        key = repr(measure)
        if key in seen:
            errors.append(f"{name!r} is the same measure as {seen[key]!r} ({key})")
            continue
        seen[key] = name
        specs.append(MeasureSpec(label, measure, provider))
    if errors:
        raise UsageError(
            "bad measure name(s): " + "; ".join(errors) + f". Use ir_measures names such as {_EXAMPLES} "
            "(setting: --measures / evaluate.measures)"
        )
    return specs
