"""Settings of the group builder (every CLI default lives here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relforge.types import DOC_FIELDS, DocFields

#: buckets a negative can be drawn from, in the vocabulary of the summary
#: hard = judged 1, soft = judged 0, unjudged = candidate without a usable judgment
#: (every candidate when no judgments are given), random = corpus document outside the run
BUCKETS = ("hard", "soft", "unjudged", "random")

#: what a bucket policy may do with the documents its rule catches (see :class:`GroupConfig`)
BadPositivePolicy = Literal["drop", "keep-as-soft", "demote"]
FalseNegativePolicy = Literal["drop", "promote", "demote", "keep-as-soft"]


class GroupConfig(BaseModel):
    """How judged candidates become LCE groups (1 positive + ``group_size - 1`` negatives).

    Attributes:
        group_size: documents per group, positive included (8 = 1 positive + 7 negatives).
        mix: buckets to draw negatives from, in order; ``"hard:3"`` caps a bucket at 3 negatives.
        sampling: inside a bucket, take candidates by run rank (``rank``) or a seeded random sample.
        depth: only the run's top ``depth`` candidates of a query are bucketed.
        min_positive_grade: a query's own positive graded below this is a *bad positive*.
        bad_positive: policy for a bad positive: ``drop`` the query (default); ``keep-as-soft`` keep it
            as the positive, its label and teacher score being the judge's low grade; ``demote`` it to
            a hard negative and make the query's best false negative (if any) its positive, else drop.
        false_negative_grade: a candidate graded at least this is a false hard negative.
        false_negatives: policy for false negatives: ``drop`` them (default); ``promote`` them to extra
            positives (one more group each); ``demote`` them to hard negatives (label and teacher capped
            at ``false_negative_grade - 1``); ``keep-as-soft`` use them as hard negatives whose label and
            teacher score stay the judge's (soft losses then learn they are nearly relevant).
        teacher_unjudged: teacher score (``teacher`` column) of unjudged and random negatives.
        unjudged: unjudged candidates (when judgments are given) are used as ``negative`` or ``drop``ped.
        unjudged_positive_grade: label of a positive the judge did not grade (for listwise losses).
        incomplete: a group short of negatives is ``drop``ped (counted) — LCE needs a fixed size.
        seed: seed of every random choice (per query, so the result does not depend on query order).
        doc_fields: the document layout written into the groups' texts (:func:`relforge.types.doc_text`):
            what the trained model sees; rerank with the same ``rerank.doc_fields``.
    """

    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(8, ge=2)
    mix: list[str] = Field(default_factory=lambda: ["hard", "soft", "unjudged", "random"])
    sampling: Literal["rank", "random"] = "rank"
    depth: int = Field(100, ge=1)
    min_positive_grade: int = 2
    false_negative_grade: int = 2
    bad_positive: BadPositivePolicy = "drop"
    false_negatives: FalseNegativePolicy = "drop"
    teacher_unjudged: float = 0.0
    unjudged: Literal["negative", "drop"] = "negative"
    unjudged_positive_grade: int = 3
    incomplete: Literal["drop"] = "drop"
    seed: int = 0
    doc_fields: DocFields = Field(default_factory=lambda: list(DOC_FIELDS))

    @field_validator("mix")
    @classmethod
    def _check_mix(cls, mix: list[str]) -> list[str]:
        parse_mix(mix)
        return mix


#: the variants a group build can produce: ``plain`` (no judge: every candidate a plain negative),
#: ``judged`` (the judge's buckets under the configured policies), ``soft`` (the judged candidates under
#: :attr:`DatasetConfig.soft_policies`)
VARIANTS = ("plain", "judged", "soft")


class DatasetConfig(GroupConfig):
    """:class:`GroupConfig` plus the ``soft`` variant's bucket policies (the pipeline's ``groups:`` section).

    ``soft_policies``: the bucket policies of the ``soft`` variant (the judged candidates again, but no
    query or candidate thrown away: the teacher scores carry the judge's doubt).
    """

    soft_policies: dict[str, str] = Field(
        default_factory=lambda: {"bad_positive": "keep-as-soft", "false_negatives": "keep-as-soft"}
    )

    @field_validator("soft_policies")
    @classmethod
    def _known_policies(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(set(v) - {"bad_positive", "false_negatives"})
        if bad:
            raise ValueError(f"soft_policies keys must be bad_positive / false_negatives, got {bad}")
        return v


def variant_config(cfg: GroupConfig, name: str) -> GroupConfig:
    """The :class:`GroupConfig` of variant ``name`` (:data:`VARIANTS`): ``cfg``'s rules, and for ``soft``
    its ``soft_policies`` (only a :class:`DatasetConfig` has them)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown groups variant {name!r}; allowed: {', '.join(VARIANTS)}")
    base = cfg.model_dump(include=set(GroupConfig.model_fields))
    if name == "soft":
        if not isinstance(cfg, DatasetConfig):
            raise ValueError("the soft variant needs soft_policies (a DatasetConfig)")
        base.update(cfg.soft_policies)
    return GroupConfig(**base)


def parse_mix(mix: list[str]) -> list[tuple[str, int | None]]:
    """``["hard:3", "soft"]`` -> ``[("hard", 3), ("soft", None)]``; raises ValueError naming the entry."""
    out: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    for entry in mix:
        name, _, cap = str(entry).partition(":")
        name = name.strip().lower()
        if name not in BUCKETS:
            raise ValueError(
                f"mix entry {entry!r}: unknown bucket {name!r}; allowed: {', '.join(BUCKETS)} (setting: mix)"
            )
        if name in seen:
            raise ValueError(f"mix entry {entry!r}: bucket {name!r} is listed twice (setting: mix)")
        seen.add(name)
        limit = None
        if cap:
            if not cap.strip().isdigit():
                raise ValueError(
                    f"mix entry {entry!r}: the cap after ':' must be a whole number (setting: mix)"
                )
            limit = int(cap)
        out.append((name, limit))
    if not out:
        raise ValueError("mix is empty: list at least one of " + ", ".join(BUCKETS) + " (setting: mix)")
    return out
