"""The train stage's one entry point, :func:`run`: used by ``relforge train`` and by the pipeline's stage
``train`` (once per variant) alike.

:func:`train_model` is the training call itself (cross- or bi-encoder by ``cfg.kind``) on groups already in
memory; the pipeline's dataset-size ablation uses it on subsets of the groups.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relforge.dataset.summary import SummaryFile
from relforge.train.config import TrainConfig


class TrainInputs(BaseModel):
    """The files a reranker is trained from.

    Attributes:
        groups: groups from ``relforge dataset build`` (their folder, or a ``groups.jsonl``).
        dev_corpus / dev_queries / dev_qrels / dev_run: dev data (all four or none) that chooses the
            checkpoint: the dev run's top ``cfg.dev_top_k`` is reranked and scored (nDCG@10).
    """

    model_config = ConfigDict(extra="forbid")

    groups: Path
    dev_corpus: Path | None = None
    dev_queries: Path | None = None
    dev_qrels: Path | None = None
    dev_run: Path | None = None


class TrainOutputs(BaseModel):
    """The model folder, and optionally a copy of the training summary beside it (a pipeline run's
    ``train/<variant>-summary.json``)."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    summary: Path | None = None


#: a number as the trainer wrote it (an int stays an int, a float a float)
Number = int | float


class TrainSummary(SummaryFile):
    """What a training run reports (``training_summary.json`` in the model folder, without ``model_dir``).

    Keys absent from a run stay absent (``start_dev_ndcg@10`` and ``selected`` exist only with a dev set).

    Attributes:
        kind / loss / base: what was trained; groups, group_size: the groups it saw.
        steps, train_time_s, world_size, pairs_per_s: how long and how fast.
        precision: the training precision (``relforge.precision`` metadata).
        loss_curve / dev_curve: per logged step, the loss / the dev nDCG@10 (step 0: the start).
        best_dev_ndcg@10, best_checkpoint_step: the kept checkpoint (None without a dev set).
        config: the settings; versions: torch / transformers / sentence-transformers.
        texts_cut_by_chars: texts cut before tokenising (relforge.textcut).
        start_dev_ndcg@10, selected: the untrained start's dev score and whether it (``start``), a
            checkpoint (``trained``) or their weight interpolation (``interpolated``, WiSE-FT) was kept.
        interpolation_alpha, interpolation_curve: with ``config.interpolate``, the kept alpha (only when
            ``interpolated``) and the dev nDCG@10 of each alpha tried.
        selection_tests: with ``config.selection: closest``, each candidate's alpha (start 0, checkpoint 1),
            dev nDCG@10 and paired-test p-value against the best.
        model_dir: the model folder.
    """

    kind: str | None = None
    loss: str | None = None
    base: str | None = None
    groups: int | None = None
    group_size: int | None = None
    steps: int | None = None
    train_time_s: Number | None = None
    world_size: int | None = None
    pairs_per_s: Number | None = None
    precision: dict[str, Any] | None = None
    loss_curve: list[dict[str, Number]] | None = None
    dev_curve: list[dict[str, Number]] | None = None
    best_dev_ndcg: Number | None = Field(None, alias="best_dev_ndcg@10")
    best_checkpoint_step: int | None = None
    config: TrainConfig | None = None
    versions: dict[str, str] | None = None
    texts_cut_by_chars: int | None = None
    start_dev_ndcg: Number | None = Field(None, alias="start_dev_ndcg@10")
    selected: Literal["start", "trained", "interpolated"] | None = None
    interpolation_alpha: Number | None = None
    interpolation_curve: list[dict[str, Number]] | None = None
    selection_tests: list[dict[str, Number]] | None = None
    model_dir: str | None = None

    @property
    def kept_start(self) -> bool:
        """Whether dev selection kept the untrained start (``selected: start``: no checkpoint beat it)."""
        return self.selected == "start"

    def is_backbone(self, backend: str) -> bool:
        """Whether this model, reranked with ``backend``, is the untrained backbone system (its ``base``
        reranked as a bi-encoder with backend ``auto``): a bi-encoder that kept its start, reranked with
        ``auto`` too. Same weights, same settings: its run is the backbone's, reused rather than encoded
        again (``selected`` exists only when a dev set chose the checkpoint)."""
        return self.kind == "bi" and self.kept_start and backend == "auto"

    def scalars(self) -> dict[str, Any]:
        """The scalar keys (the stage's counts in a pipeline manifest)."""
        return {k: v for k, v in self.as_json().items() if isinstance(v, (int, float, str, bool))}

    def write_in_model(self, model_dir: str | os.PathLike) -> Path:
        """``model_dir/training_summary.json`` (without ``model_dir``; ASCII, no trailing newline, as it
        has been written so far)."""
        return self.write(
            Path(model_dir) / "training_summary.json", ascii_only=True, newline=False, exclude={"model_dir"}
        )


def load_dev(corpus=None, queries=None, qrels=None, run=None, *, top_k: int, doc_fields=None):
    """The :class:`~relforge.train.trainer.DevSet` of the dev files (all four or none; None without them)
    whose run's top ``top_k`` is reranked, its documents laid out by ``doc_fields`` (None: the default)."""
    files = (corpus, queries, qrels, run)
    given = [p for p in files if p is not None]
    if not given:
        return None
    if len(given) != 4:
        from relforge.errors import UsageError

        raise UsageError("dev evaluation needs all of --dev-corpus, --dev-queries, --dev-qrels, --dev-run")
    from relforge.data import read_corpus, read_qrels, read_queries, read_run
    from relforge.train.trainer import DevSet

    dev = DevSet(read_corpus(corpus), read_queries(queries), read_qrels(qrels), read_run(run), top_k)
    if doc_fields is not None:
        dev.doc_fields = tuple(doc_fields)
    return dev


def groups_doc_fields(groups: str | os.PathLike) -> tuple[str, ...]:
    """The document layout a group set's texts were written with (its ``summary.json``'s
    ``config.doc_fields``): what dev evaluation during training must show the model too. The default
    layout for a ``groups.jsonl`` without a summary beside it."""
    from relforge.dataset.summary import GroupSetSummary
    from relforge.types import DOC_FIELDS

    p = Path(groups)
    summary = (p if p.is_dir() else p.parent) / "summary.json"
    if not summary.is_file():
        return DOC_FIELDS
    return tuple(GroupSetSummary.read(summary).config.doc_fields)


def variant_config(section: TrainConfig, variant: str, *, soft_loss: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` a pipeline variant trains with: ``section``'s settings (a pipeline's
    ``train:`` section: its own keys dropped), the ``soft`` variant with ``soft_loss``, then ``overrides``.
    A section's ``dev_top_k`` left None (outside a PipelineConfig, which sets it to ``rerank.top_k``) is
    TrainConfig's default."""
    if variant == "soft":
        overrides["loss"] = soft_loss
    data = section.model_dump(include=set(TrainConfig.model_fields))
    if data.get("dev_top_k") is None:
        data.pop("dev_top_k", None)
    data.update(overrides)
    return TrainConfig(**data)


def train_model(cfg: TrainConfig, groups, out_dir: str | os.PathLike, dev=None) -> TrainSummary:
    """Train one reranker (:func:`~relforge.train.trainer.train_bi_encoder` for ``kind: bi``, else
    :func:`~relforge.train.trainer.train_cross_encoder`) on ``groups`` (a dataset, or its folder/file)."""
    from relforge.train import trainer

    fn = trainer.train_bi_encoder if cfg.kind == "bi" else trainer.train_cross_encoder
    return TrainSummary.model_validate(fn(groups, out_dir, cfg, dev=dev) or {})


def run(
    cfg: TrainConfig, inputs: TrainInputs, out: str | os.PathLike | TrainOutputs, *, dev=None
) -> TrainSummary:
    """Train a reranker on ``inputs.groups`` and write it.

    Args:
        cfg: the settings (fully resolved).
        inputs: the groups and the optional dev files (:class:`TrainInputs`).
        out: the model folder (claimed as relforge's output first), or :class:`TrainOutputs` (a pipeline
            run's layout: the folder as it is, and the summary's copy beside it).
        dev: an already loaded :class:`~relforge.train.trainer.DevSet` (shared by several trainings),
            used instead of ``inputs``' dev files.

    Returns:
        The training summary (also in the model folder's ``training_summary.json``).
    """
    from relforge.train.trainer import check_loss

    check_loss(cfg.loss, cfg.kind)
    if dev is None:
        i = inputs
        dev = load_dev(i.dev_corpus, i.dev_queries, i.dev_qrels, i.dev_run, top_k=cfg.dev_top_k)
    if dev is not None:  # dev documents are shown as the groups show theirs
        import dataclasses

        dev = dataclasses.replace(dev, doc_fields=groups_doc_fields(inputs.groups))
    if isinstance(out, TrainOutputs):
        outputs = out
    else:
        from relforge.outputs import claim_dir

        outputs = TrainOutputs(model=claim_dir(out))
    summary = train_model(cfg, inputs.groups, outputs.model, dev)
    if outputs.summary is not None:
        summary.write(outputs.summary)
    return summary
