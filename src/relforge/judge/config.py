"""Configuration of the judge stage: every default of ``relforge judge`` lives here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODES = ("probs", "generate")
ON_MISSING = ("error", "skip")


class JudgeConfig(BaseModel):
    """Settings of one judging run (the CLI and the pipeline build this)."""

    model_config = ConfigDict(extra="forbid")

    #: built-in template id or path to a YAML template
    template: str = "relevance-0to3"
    #: ``probs``: one prefill per pair, distribution over the grade labels; ``generate``: decode and parse
    mode: Literal["probs", "generate"] = "probs"
    #: token budget of the document text (None: the template's ``max_doc_tokens``)
    max_doc_tokens: int | None = Field(None, ge=1)
    #: pairs handed to the backend per call (the backend may split further)
    batch_size: int = Field(16, ge=1)
    #: when the pairs come from a TREC run: judge the top-k of each query (None: all)
    top_k: int | None = Field(None, ge=1)
    #: cut points on the expected grade replacing argmax (len = number of grades - 1)
    thresholds: list[float] | None = None
    #: pairs naming an unknown query/document: ``error`` (default) or ``skip`` (counted in the summary)
    on_missing: Literal["error", "skip"] = "error"
    #: generate mode: new tokens per reply (reasoning templates get ``reasoning_max_new_tokens``)
    max_new_tokens: int = Field(8, ge=1)
    reasoning_max_new_tokens: int = Field(256, ge=1)
    #: generate mode: the retry of an unparseable reply samples with this temperature and a new seed
    retry_temperature: float = Field(0.7, ge=0)
    #: ask for a short reasoning before the grade (generate mode only)
    reasoning: bool = False
    seed: int = 0
    #: calibration metric used by ``--calibrate-on``: ``qwk`` (quadratic-weighted kappa) or ``macro_f1``
    calibrate_metric: Literal["qwk", "macro_f1"] = "qwk"

    @field_validator("thresholds")
    @classmethod
    def _sorted(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(b < a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"thresholds must be non-decreasing, got {v}")
        return v

    def load_template(self):
        """The judge template these settings name, with reasoning switched on when ``reasoning`` is set."""
        from relforge.judge.prompt import JudgeTemplate

        return JudgeTemplate.load(self.template, reasoning=True if self.reasoning else None)

    def reply_tokens(self, template) -> int:
        """Generate-mode reply length: ``reasoning_max_new_tokens`` for a reasoning template."""
        return self.reasoning_max_new_tokens if template.reasoning else self.max_new_tokens


class JudgmentsAgreementConfig(BaseModel):
    """How judgments are compared with human grades: ``relforge judge agreement``'s settings (a judgments
    file against human qrels), and the comparison of every agreement run (:class:`AgreementConfig`)."""

    model_config = ConfigDict(extra="forbid")

    #: ir_measures measure of reranking each query's judged pool by expected grade, and of system ranking
    measure: str = "nDCG@10"
    #: seed of the class-balanced subsample of the agreement numbers
    seed: int = 0


class AgreementConfig(JudgmentsAgreementConfig):
    """Settings of one agreement run: the judge vs human grades, next to MiniLM cosine (the pipeline's
    ``judge.agreement`` section extends it with where the human grades come from). The ``max_pairs``
    subsample is drawn with the run's seed (the pipeline's top-level ``seed``)."""

    #: which labelled queries: ``adapter`` = the validation ids recorded in the adapter's relforge.json; ``all``
    queries: Literal["adapter", "all"] = "adapter"
    #: also judge the same pairs with the LLM without adapter
    zero_shot: bool = False
    #: cap on judged pairs (None: all), deterministic subsample per query
    max_pairs: int | None = Field(None, ge=1)
