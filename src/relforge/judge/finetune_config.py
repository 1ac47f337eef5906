"""Settings of judge fine-tuning (``relforge judge finetune``): every default lives here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FinetuneConfig(BaseModel):
    """LoRA fine-tuning of an LLM judge on human graded labels.

    The defaults are the recipe of the shipped ``smollm2-liveqa`` adapter (CPU friendly: LoRA on the
    top 8 layers only, so the frozen bottom is computed once and cached; all pairs, class weights;
    ~35 min for SmolLM2-135M on 2 CPU cores, held-out pair tau_b -0.096 -> 0.256).
    """

    model_config = ConfigDict(extra="forbid")

    # ---- prompt (the judge's template: one source of truth) ----
    template: str = Field("relevance-0to3", description="judge template id or YAML path")
    max_doc_tokens: int | None = Field(
        96, ge=1, description="document truncation in model tokens (the judge's)"
    )
    query_field: str = Field("text", description="query text: 'text' or a query metadata key")
    max_seq_len: int = Field(1024, ge=16, description="longer examples are skipped and counted")

    # ---- data ----
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of QUERIES held out")
    val_queries: list[str] | None = Field(
        None, description="explicit validation query ids (overrides val_fraction)"
    )
    seed: int = 0
    balance: Literal["none", "downsample", "upsample", "weights"] = "weights"
    max_per_class: int | None = Field(
        None, ge=1, description="cap on training examples per grade (sampled by seed)"
    )
    max_val_pairs: int | None = Field(None, ge=1, description="cap on validation pairs (None = all)")
    test_queries: list[str] | None = Field(
        None,
        description="queries held out of training AND of the epoch choice, scored once with the chosen "
        "epoch (k-fold reporting: the reported fold)",
    )

    # ---- objective ----
    loss: Literal["lm", "choices"] = Field(
        "choices",
        description="lm: token cross-entropy on the completion (grade + end of turn); "
        "choices: cross-entropy over the grade labels' first tokens (what probs scoring reads)",
    )

    # ---- LoRA ----
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field("all-linear", description="PEFT target modules")
    lora_layers: int | None = Field(
        8, ge=1, description="LoRA on the top N decoder layers only (None = all); the frozen bottom is cached"
    )
    cache_frozen: bool = Field(True, description="compute the frozen bottom layers once per example")

    # ---- optimisation ----
    epochs: int = Field(
        5,
        ge=0,
        description="training epochs (the best by validation tau_b is kept; 0 = zero-shot evaluation only)",
    )
    lr: float = Field(2e-3, gt=0.0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    weight_decay: float = 0.0
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    max_grad_norm: float = 1.0
    eval_batch_size: int = Field(8, ge=1)

    # ---- hardware ----
    bf16: bool | None = Field(None, description="None = on when a CUDA GPU supports it")
    gradient_checkpointing: bool | None = Field(None, description="None = on with a GPU")
    qlora: bool = Field(False, description="4-bit base (bitsandbytes + CUDA GPU required)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default)")

    # ---- output ----
    judge_check: bool = Field(
        True, description="re-score validation through `relforge judge` with the saved adapter"
    )
    merge: bool = Field(False, description="also write a merged full model to OUT/merged")
    adapter_dtype: Literal["float32", "float16"] = Field("float16", description="dtype of saved LoRA weights")


class CVConfig(BaseModel):
    """K-fold cross-validation of a judge recipe (``relforge judge finetune --folds K``)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(5, ge=1, description="folds by query (1 = today's single split, no CV)")
    seed: int = Field(0, description="fold assignment seed (sha256 of seed:qid)")
    threshold_metric: Literal["qwk", "macro_f1"] = Field(
        "qwk", description="what the grade cut points (fitted on training folds) maximise"
    )
    cosine_model: str = Field("minilm", description="embedding baseline scored on the same folds")
    final_adapter: bool = Field(True, description="after the folds, train the adapter on all data into OUT")


class FinetuneCommandConfig(FinetuneConfig):
    """What ``relforge judge finetune`` runs: the recipe (:class:`FinetuneConfig`, the pipeline's
    ``judge_finetune:`` section) and its k-fold CV (``cv``; ``cv.seed`` follows ``seed`` unless set)."""

    cv: CVConfig = Field(default_factory=CVConfig)

    @model_validator(mode="after")
    def _folds_share_the_seed(self) -> FinetuneCommandConfig:
        if "seed" not in self.cv.model_fields_set:
            self.cv = self.cv.model_copy(update={"seed": self.seed})
        return self

    def recipe(self) -> FinetuneConfig:
        """The :class:`FinetuneConfig` part (what :func:`relforge.judge.finetune.finetune_judge` takes)."""
        return FinetuneConfig(**self.model_dump(include=set(FinetuneConfig.model_fields)))
