"""The groups stage's ``summary.json`` files as pydantic models: each is written and read through its class.

- :class:`GroupSetSummary`: ``<groups folder>/summary.json``, the summary of one group set (what
  :func:`relforge.dataset.build_groups` counts);
- :class:`DatasetSummary`: a pipeline run's ``dataset/summary.json``, the bucket counts across the
  variants (the report's dataset table).

:class:`relforge.data.summary.SummaryFile` is their base (and that of every stage summary model): one
writer, one reader per class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from relforge.data.summary import SummaryFile
from relforge.dataset.config import GroupConfig


class GroupSetSummary(SummaryFile):
    """One group set's ``summary.json`` (written beside its ``dataset/`` and ``groups.jsonl``).

    Attributes:
        queries_in: queries with source positives; ``queries_kept``: those with at least one group.
        groups: rows (one per kept positive); ``group_size``: documents per group.
        judged: whether judgments were used (False: the unlabelled baseline).
        dropped_queries / dropped_qids: per reason (``bad_positive``, ``no_positive``,
            ``too_few_negatives``) the number of dropped queries and the first 100 of their ids.
        candidates: candidates per bucket (plus ``unjudged_dropped``) over the kept queries.
        per_query: per bucket, percentiles of the candidates per kept query.
        negatives_drawn: negatives drawn per bucket; ``positives``: groups per kind of positive.
        judgments: counts of the judgments given (failed, duplicate, naming unknown ids).
        policies: per bucket policy, what its rule caught and what it did.
        config: the rules the set was built with.
        negatives_by_source: the groups' negatives per source of their mined candidate.
    """

    queries_in: int
    queries_kept: int
    groups: int
    group_size: int
    judged: bool
    dropped_queries: dict[str, int]
    dropped_qids: dict[str, list[str]]
    candidates: dict[str, int]
    per_query: dict[str, dict[str, float]]
    negatives_drawn: dict[str, int]
    positives: dict[str, int]
    judgments: dict[str, int]
    policies: dict[str, dict[str, int | str]]
    config: GroupConfig
    #: the groups' negatives per source (only with mined negatives given): their mined candidate's
    #: (``bm25``, ``random``, ...; ``unknown``: an old file), or ``groups_random`` (the random bucket)
    negatives_by_source: dict[str, int] | None = None

    def write(self, path: str | os.PathLike, **kw: Any) -> Path:
        """As :meth:`SummaryFile.write`, in this file's format so far (ASCII, no trailing newline)."""
        return super().write(path, **{"ascii_only": True, "newline": False, **kw})


class VariantCounts(BaseModel):
    """One variant's flat counts in ``dataset/summary.json``."""

    model_config = ConfigDict(extra="forbid")

    groups: int
    queries_kept: int
    negatives_drawn: dict[str, int]
    dropped_queries: dict[str, int]


#: the per-variant keys of ``dataset/summary.json`` (``<key>_<variant>``), in file order
_VARIANT_KEYS = tuple(VariantCounts.model_fields)
#: the bucket policies (``policy_<variant>_<rule>`` keys)
_RULES = ("bad_positive", "false_negatives")


class DatasetSummary(SummaryFile):
    """A pipeline run's ``dataset/summary.json``: the judged buckets, then flat counts per variant.

    The file is flat (``groups_<variant>``, ``queries_kept_<variant>``, ``negatives_drawn_<variant>``,
    ``dropped_queries_<variant>``, ``policy_<variant>_<rule>`` for judged variants), the layout the report
    reads; this class parses it into the fields below and writes it back the same way.

    Attributes:
        buckets: candidates per bucket of the judged set (else of the first variant's).
        variants: per variant (build order), its counts.
        queries_in / group_size: as in :class:`GroupSetSummary` (same for every variant).
        positives_judged: the judged set's positives per kind (when the judged variant was built).
        policies: per judged variant, per bucket policy, what it caught and did.
    """

    buckets: dict[str, int]
    variants: dict[str, VariantCounts]
    queries_in: int
    group_size: int
    positives_judged: dict[str, int] | None = None
    policies: dict[str, dict[str, dict[str, int | str]]] = Field(default_factory=dict)

    @classmethod
    def from_sets(cls, sets: Mapping[str, GroupSetSummary]) -> DatasetSummary:
        """The summary across variants of each variant's :class:`GroupSetSummary` (build order)."""
        return cls.model_validate(bucket_summary({v: s.as_json() for v, s in sets.items()}))

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "variants" in data:
            return data
        names = [k.removeprefix("groups_") for k in data if k.startswith("groups_")]
        out: dict[str, Any] = {
            "buckets": data.get("buckets"),
            "variants": {v: {k: data.get(f"{k}_{v}") for k in _VARIANT_KEYS} for v in names},
            "queries_in": data.get("queries_in"),
            "group_size": data.get("group_size"),
            "policies": {
                v: {r: data[f"policy_{v}_{r}"] for r in _RULES if f"policy_{v}_{r}" in data} for v in names
            },
        }
        out["policies"] = {v: p for v, p in out["policies"].items() if p}
        if "positives_judged" in data:
            out["positives_judged"] = data["positives_judged"]
        known = {"buckets", "queries_in", "group_size", "positives_judged"}
        known |= {f"{k}_{v}" for k in _VARIANT_KEYS for v in names}
        known |= {f"policy_{v}_{r}" for v in names for r in _RULES}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"dataset summary: unknown keys {unknown}")
        return out

    @model_serializer(mode="plain")
    def _to_flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"buckets": dict(self.buckets)}
        for v, c in self.variants.items():
            out.update({f"{k}_{v}": val for k, val in c.model_dump().items()})
        out["queries_in"] = self.queries_in
        out["group_size"] = self.group_size
        if self.positives_judged is not None:
            out["positives_judged"] = dict(self.positives_judged)
        for v, rules in self.policies.items():
            out.update({f"policy_{v}_{r}": dict(d) for r, d in rules.items()})
        return out


def bucket_summary(summaries: dict[str, dict]) -> dict[str, Any]:
    """``dataset/summary.json``'s content (see :class:`DatasetSummary`) as plain data.

    ``summaries``: per variant, the summary :func:`relforge.dataset.build_groups` returns (a key it lacks
    raises KeyError: nothing is guessed)."""
    main = summaries.get("judged") or next(iter(summaries.values()))
    out: dict[str, Any] = {"buckets": main["candidates"]}
    for variant, s in summaries.items():
        out[f"groups_{variant}"] = s["groups"]
        out[f"queries_kept_{variant}"] = s["queries_kept"]
        out[f"negatives_drawn_{variant}"] = s["negatives_drawn"]
        out[f"dropped_queries_{variant}"] = s["dropped_queries"]
    out["queries_in"] = main["queries_in"]
    out["group_size"] = main["group_size"]
    if "judged" in summaries:
        out["positives_judged"] = summaries["judged"]["positives"]
    for variant, s in summaries.items():
        for rule, d in s["policies"].items():
            if s["judged"]:
                out[f"policy_{variant}_{rule}"] = d
    return out
