"""Settings of the evaluation stage: the one place where its defaults live (CLI, Python API, pipeline)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: measures evaluated when none are given (ir_measures names; "MRR@10" is an alias of "RR@10")
DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "MRR@10", "MAP@100", "R@100", "P@10")
DEFAULT_ALPHA = 0.05
DEFAULT_PERMUTATION_ROUNDS = 10_000
DEFAULT_SEED = 0


class EvalConfig(BaseModel):
    """Evaluation settings (``relforge evaluate`` flags and the pipeline's ``evaluate:`` section).

    Attributes:
        measures: ir_measures names, e.g. ``"nDCG@10"``, ``"RR(rel=2)@10"``, ``"P(rel=2)@10"``, ``"Judged@10"``.
        rel: minimum grade that counts as relevant for binary measures (P, R, RR, AP, ...) that do not
            set ``rel`` themselves. ``None`` keeps ir_measures' default (grade >= 1). nDCG stays graded.
        baseline: name of the run the others are tested against (default: the first run).
        alpha: significance level for the marks in tables and the report.
        permutation_rounds: random sign flips of the paired randomisation test (exact enumeration is
            used instead when 2**n_queries <= permutation_rounds).
        seed: seed of the randomisation test (results are deterministic for a given seed).
        empty_queries: what to do with queries whose judgments are all grade <= 0: ``"skip"`` drops them
            from every measure and lists them in the result (default); ``"zero"`` keeps them (they score 0
            everywhere, like trec_eval).
    """

    model_config = ConfigDict(extra="forbid")

    measures: list[str] = Field(default_factory=lambda: list(DEFAULT_MEASURES))
    rel: int | None = Field(default=None, ge=1)
    baseline: str | None = None
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0, lt=1)
    permutation_rounds: int = Field(default=DEFAULT_PERMUTATION_ROUNDS, ge=100)
    seed: int = DEFAULT_SEED
    empty_queries: Literal["skip", "zero"] = "skip"
