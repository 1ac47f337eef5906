"""Settings of reranker training (every CLI default lives here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from relforge.precision import PrecisionSetting
from relforge.types import DOC_FIELDS, DocFields


class TrainConfig(BaseModel):
    """How a reranker is trained on groups from :func:`relforge.dataset.build_groups`.

    Attributes:
        base: backbone: a named default (``minilm``), a local folder or a hub id.
        kind: ``cross`` (CrossEncoder, num_labels=1) or ``bi`` (SentenceTransformer).
        loss: a key of :data:`relforge.train.trainer.LOSSES` (``lce`` trains both kinds).
        max_length: token limit of a (query, document) pair (cross) or of one text (bi).
        lr: peak learning rate (AdamW, linear decay).
        warmup_ratio: fraction of steps spent warming up.
        epochs: passes over the groups.
        batch_groups: groups (queries) per optimizer step; a step scores ``batch_groups * group_size`` pairs.
        max_steps: stop after this many steps (-1 = run the epochs; 0 and other negatives are refused).
        seed: seed of the head init, shuffling and dropout.
        temperature: cross-encoder LCE temperature (1.0 = exact LCE).
        teacher_temperature: soft losses (``kl``): the teacher's softmax is taken over the judge's
            expected grades divided by this (lower = sharper teacher).
        scale: bi-encoder LCE: cosine similarities are multiplied by this (inverse temperature).
        negatives: use the first ``negatives`` negatives of each group (None = all).
        precision: ``auto`` = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU (unchanged: CPU
            bf16 is opt-in); ``bf16`` on CPU = mixed precision (fp32 master weights, bf16 autocast); ``fp16``
            GPU only. ``int8`` is an inference setting and is refused here.
        eval_steps: evaluate on the dev set every this many steps (None = 4 times per run).
        dev_top_k: depth of the dev run reranked during evaluation.
        keep_start: with a dev set, the untrained start (step 0) competes with the checkpoints: if none
            beats its dev nDCG@10, the start is written as the model (``selected: start`` in the summary).
        interpolate: with a dev set and ``keep_start``, WiSE-FT (Wortsman et al., 2022): for each alpha in
            (0, 1), the weights ``(1 - alpha) * start + alpha * best checkpoint`` compete too, and the best
            dev nDCG@10 of start, checkpoint and interpolations is written (``selected: interpolated``,
            ``interpolation_alpha`` and ``interpolation_curve`` in the summary). Empty: off.
        selection: how the dev questions choose among start, interpolations and checkpoint: ``best`` (the
            highest dev nDCG@10) or ``closest`` (the one nearest the start whose dev nDCG@10 is not
            significantly below the best's: paired randomisation test p >= ``selection_p``; the tests are
            in the summary's ``selection_tests``).
        selection_p: the p-value under which ``closest`` calls a candidate worse than the best.
        logging_steps: loss curve resolution.
    """

    model_config = ConfigDict(extra="forbid")

    base: str = "minilm"
    kind: Literal["cross", "bi"] = "cross"
    loss: str = "lce"
    max_length: int = Field(256, ge=8)
    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    batch_groups: int = Field(8, ge=1)
    max_steps: int = -1
    seed: int = 0
    temperature: float = Field(1.0, gt=0)
    teacher_temperature: float = Field(1.0, gt=0)
    scale: float = Field(20.0, gt=0)
    negatives: int | None = Field(None, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_steps: int | None = Field(None, ge=1)
    dev_top_k: int = Field(50, ge=1)
    keep_start: bool = True
    interpolate: list[float] = Field(default_factory=list)
    selection: Literal["best", "closest"] = "best"
    selection_p: float = Field(0.05, gt=0, lt=1)
    logging_steps: int = Field(5, ge=1)

    @field_validator("interpolate")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        bad = [a for a in v if not 0 < a < 1]
        if bad:
            raise ValueError(f"interpolate: every alpha must be strictly between 0 and 1, got {bad}")
        return sorted(set(v))

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == -1 or v >= 1:
            return v
        raise ValueError("max_steps must be -1 (run the epochs) or a number of steps >= 1")


class RerankConfig(BaseModel):
    """How a first-stage run is reranked (``relforge rerank``; the pipeline's ``rerank:`` section extends it).

    Attributes:
        top_k: documents per query reranked (the pipeline's section defaults to 20, its CPU budget).
        batch_size: pairs per forward pass.
        max_length: max tokens of query + document (None: the model's own).
        backend: ``auto`` (onnx for cross, torch for bi) / ``onnx`` (ONNX Runtime, exact), ``onnx-int8``
            (int8 weights: ~2x faster, approximate) or ``torch``; bi-encoders too (relforge.train.onnx_bi).
        precision: ``fp32`` (exact; the backend as given), ``bf16`` (torch), ``int8`` (ONNX int8), ``auto``
            (bf16 if the CPU has it); see :func:`relforge.train.rerank.rerank_plan`.
        doc_fields: the document layout the model sees (:func:`relforge.types.doc_text`): the one its
            training groups were built with (``groups.doc_fields``).
    """

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    max_length: int | None = Field(None, ge=8)
    backend: Literal["auto", "onnx", "onnx-int8", "torch"] = "auto"
    precision: PrecisionSetting = "fp32"
    doc_fields: DocFields = Field(default_factory=lambda: list(DOC_FIELDS))
