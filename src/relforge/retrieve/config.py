"""Settings of the retrieval stage (``relforge retrieve``) and of hard-negative mining.

Every CLI default lives here; the pipeline composes these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relforge.precision import PrecisionSetting
from relforge.types import DOC_FIELDS, DocFields

METHODS = ("bm25", "dense", "hybrid")


class RetrieveConfig(BaseModel):
    """How candidates are retrieved for each query."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["bm25", "dense", "hybrid"] = "bm25"
    top_k: int = Field(100, ge=1, description="documents kept per query")
    model: str = Field(
        "minilm", description="sentence-transformers model for dense: a named default, hub id or path"
    )
    index_dir: str | None = Field(None, description="folder to save / reuse the BM25 index")
    cache_dir: str | None = Field(None, description="folder for cached dense corpus embeddings")
    stemmer: Literal["auto", "none"] = Field(
        "auto", description="'auto' stems with PyStemmer when installed, 'none' never stems"
    )
    batch_size: int = Field(64, ge=1, description="dense encoding batch size")
    max_seq_length: int | None = Field(
        None, ge=8, description="dense: truncate to this many tokens (None = model's)"
    )
    rrf_k: int = Field(60, ge=1, description="reciprocal-rank-fusion constant (hybrid)")
    use_faiss: bool = Field(False, description="search dense embeddings with faiss (if installed)")
    precision: PrecisionSetting = Field(
        "fp32",
        description="dense encoder: fp32 (exact, default) | bf16 weights | int8 (ONNX Runtime) | auto "
        "(bf16 on a CPU with AVX-512 BF16/AMX, else fp32)",
    )
    doc_fields: DocFields = Field(
        default_factory=lambda: list(DOC_FIELDS),
        description="document fields BM25 and the dense encoder see, one per line: title, text, or metadata keys (url, ...)",
    )


class MiningConfig(BaseModel):
    """Which retrieved documents become hard-negative candidates.

    The stages are: candidates (rank window, positives excluded) -> filter (margin against the
    positive's score) -> sample (``num_negatives``, a ``random_share`` of them drawn uniformly from the
    corpus instead; pure hard negatives can hurt, see sentence-transformers issue 3085).
    """

    model_config = ConfigDict(extra="forbid")

    rank_min: int = Field(2, ge=1, description="first rank (1-based, in the run) that may become a negative")
    rank_max: int = Field(30, ge=1, description="last rank (inclusive) that may become a negative")
    num_negatives: int = Field(8, ge=1, description="negatives per query (hard + random)")
    random_share: float = Field(0.0, ge=0.0, le=1.0, description="share of num_negatives drawn at random")
    sampling: Literal["top", "random"] = Field(
        "top", description="take the best-ranked candidates or a random subset"
    )
    margin: float | None = Field(None, description="keep a negative only if score < positive score - margin")
    relative_margin: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="keep a negative only if score < positive score * (1 - relative_margin)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check_window(self) -> MiningConfig:
        if self.rank_max < self.rank_min:
            raise ValueError(
                f"rank_max ({self.rank_max}) must be >= rank_min ({self.rank_min}); raise rank_max or lower rank_min"
            )
        return self


class RetrieveStageConfig(RetrieveConfig):
    """The retrieve stage (the pipeline's ``retrieve:`` section): ``method`` retrieves the candidates of the
    training queries, ``methods`` the held-out (and dev) questions' first-stage runs, ``mining`` picks the
    hard negatives among the candidates."""

    #: first-stage runs computed for the evaluation questions (all are compared in the report)
    methods: list[Literal["bm25", "dense", "hybrid"]] = Field(
        default_factory=lambda: ["bm25", "dense", "hybrid"]
    )
    #: hard-negative mining of the synthetic queries' candidates
    mining: MiningConfig = Field(default_factory=MiningConfig)
