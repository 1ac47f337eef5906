"""Stages groups and train as thin adapters: the run folder's files (:mod:`relforge.pipeline.layout`) and the
pipeline settings in, :func:`relforge.dataset.run.run` (LCE groups per variant) and
:func:`relforge.train.run.run` (one reranker per variant) do the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relforge.config import PipelineConfig
from relforge.dataset.summary import bucket_summary
from relforge.pipeline import layout
from relforge.pipeline.common import group_variants
from relforge.pipeline.runner import StageContext

if TYPE_CHECKING:
    from relforge.train.run import TrainSummary

__all__ = [
    "bucket_summary",
    "dev_set",
    "reranker_rel",
    "stage_groups",
    "stage_train",
    "train_variant",
    "variants_kept_backbone",
]

# --------------------------------------------------------------------------- groups


def stage_groups(ctx: StageContext) -> dict[str, Any]:
    """LCE groups per variant (:func:`relforge.dataset.run.run`): plain mined negatives (no judge), the
    judge's re-bucketed candidates, and the soft variant's."""
    from relforge.dataset.run import GroupsInputs, GroupsOutputs
    from relforge.dataset.run import run as build

    cfg: PipelineConfig = ctx.cfg
    variants = group_variants(cfg)
    inputs = GroupsInputs(
        queries=ctx.path(layout.GEN_QUERIES),
        positives=ctx.path(layout.GEN_QRELS),
        run=ctx.path(layout.CANDIDATES),
        corpus=ctx.path(layout.CORPUS),
        judgments=ctx.path(layout.JUDGMENTS) if set(variants) - {"plain"} else None,
        negatives=ctx.path(layout.NEGATIVES),
    )
    outputs = GroupsOutputs(
        folders={v: ctx.path(layout.dataset(v)) for v in variants}, summary=ctx.path(layout.DATASET_SUMMARY)
    )
    return build(cfg.groups, inputs, outputs, log=ctx.log, on_empty="error").counts()


# --------------------------------------------------------------------------- train


def train_variant(
    ctx: StageContext, groups, out_rel: str, variant: str = "plain", dev=None, **overrides: Any
) -> TrainSummary:
    """Train one variant (``dev``: the :func:`dev_set` that chooses its checkpoint, or None) on ``groups``
    (a dataset, or its folder) into ``out_rel``; the trainer's summary."""
    from relforge.train.run import train_model, variant_config

    cfg: PipelineConfig = ctx.cfg
    tc = variant_config(cfg.train, variant, soft_loss=cfg.train.soft_loss, **overrides)
    return train_model(tc, groups, ctx.path(out_rel), dev)


def dev_set(ctx: StageContext):
    """The human dev questions (``data.dev_split``) with the reranked first stage's top ``train.dev_top_k``
    (as ``relforge train --dev-top-k``), or None."""
    from relforge.train.run import load_dev

    cfg: PipelineConfig = ctx.cfg
    if not cfg.data.dev_split:
        return None
    return load_dev(
        ctx.path(layout.CORPUS),
        ctx.path(layout.DEV_QUERIES),
        ctx.path(layout.DEV_QRELS),
        ctx.path(layout.first_stage_dev(cfg.rerank.first_stage)),
        top_k=cfg.train.dev_top_k,
        doc_fields=cfg.groups.doc_fields,
    )


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """One reranker (cross-encoder, or bi-encoder with ``train.kind: bi``) per variant, same settings
    (:func:`relforge.train.run.run`)."""
    from relforge.train.run import TrainInputs, TrainOutputs, run, variant_config

    cfg: PipelineConfig = ctx.cfg
    res: dict[str, Any] = {}
    dev = dev_set(ctx)
    for v in cfg.train.variants:
        summary = run(
            variant_config(cfg.train, v, soft_loss=cfg.train.soft_loss),
            TrainInputs(groups=ctx.path(layout.dataset(v))),
            TrainOutputs(model=ctx.path(layout.train_model(v)), summary=ctx.path(layout.train_summary(v))),
            dev=dev,
        )
        res[v] = summary.scalars()
    ctx.set_manifest("reranker_model", reranker_rel(cfg))
    return res


def reranker_rel(cfg: PipelineConfig) -> str | None:
    """The final reranker's folder relative to the run folder (judged if trained, else plain)."""
    for v in ("judged", "soft", "plain"):
        if v in cfg.train.variants:
            return layout.train_model(v)
    return None


def variants_kept_backbone(ctx: StageContext) -> list[str]:
    """The trained variants (stage train) that are the backbone system itself
    (:meth:`relforge.train.run.TrainSummary.is_backbone`; recorded as ``same_as_backbone``)."""
    from relforge.train.run import TrainSummary

    cfg: PipelineConfig = ctx.cfg
    if not cfg.rerank.backbone:
        return []
    out = []
    for v in cfg.train.variants:
        path = ctx.path(layout.train_summary(v))
        if path.exists() and TrainSummary.read(path).is_backbone(cfg.rerank.backend):
            out.append(v)
    return out
