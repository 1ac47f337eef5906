"""Stages groups and train: LCE groups per variant, one reranker per variant."""

from __future__ import annotations

from typing import Any

from relforge.config import GroupConfig, PipelineConfig, TrainConfig, stage_part
from relforge.errors import UsageError
from relforge.pipeline import layout
from relforge.pipeline.common import group_variants, read_json, write_json
from relforge.pipeline.runner import StageContext

# --------------------------------------------------------------------------- groups


def _candidate_run(ctx: StageContext) -> tuple[dict, dict]:
    """The candidates run restricted to each query's positives + mined negatives (what the judge saw)."""
    from relforge.data import read_qrels, read_run

    run = read_run(ctx.path(layout.CANDIDATES))
    positives = read_qrels(ctx.path(layout.GEN_QRELS))
    negs = read_json(ctx.path(layout.NEGATIVES))
    out: dict[str, dict[str, float]] = {}
    for qid in positives:
        keep = list(positives[qid]) + list(negs.get(qid, []))  # no key: the query has no positive
        scores = run.get(qid, {})
        floor = min(scores.values(), default=0.0) - 1.0
        # random negatives may be outside the run: rank them after the retrieved ones, in mined order
        out[qid] = {d: scores.get(d, floor - i * 1e-3) for i, d in enumerate(keep)}
    return out, positives


def _variant_groups(ctx: StageContext, variant: str, gc, queries, positives, run, corpus):
    """The groups of one variant: plain (no judge), judged (the judge's buckets) or soft (soft policies)."""
    from relforge.dataset import build_groups
    from relforge.dataset.groups import policy_lines
    from relforge.judge.judge import read_judgments

    cfg: PipelineConfig = ctx.cfg
    js = read_judgments(ctx.path(layout.JUDGMENTS)) if variant != "plain" else None
    vc = gc.model_copy(update=cfg.groups.soft_policies) if variant == "soft" else gc
    ds, summary = build_groups(queries, positives, run, corpus, js, type(gc)(**vc.model_dump()))
    if js is not None:
        for line in policy_lines(summary, f"groups {variant}"):
            ctx.log(line)
    if len(ds) == 0:
        raise UsageError(
            f"{variant} groups: no group could be built (summary: {summary['dropped_queries']}); "
            f"lower groups.group_size or groups.min_positive_grade, or generate more queries"
        )
    return ds, summary


def stage_groups(ctx: StageContext) -> dict[str, Any]:
    """LCE groups twice: plain mined negatives (no judge) and the judge's re-bucketed candidates."""
    from relforge.data import read_corpus, read_queries
    from relforge.dataset import write_groups

    cfg: PipelineConfig = ctx.cfg
    corpus = read_corpus(ctx.path(layout.CORPUS))
    queries = read_queries(ctx.path(layout.GEN_QUERIES))
    run, positives = _candidate_run(ctx)
    gc = stage_part(cfg.groups, GroupConfig)
    res: dict[str, Any] = {}
    summaries: dict[str, dict] = {}
    for variant in group_variants(cfg):
        ds, summary = _variant_groups(ctx, variant, gc, queries, positives, run, corpus)
        write_groups(ds, summary, ctx.path(layout.dataset(variant)))
        res[f"{variant}_groups"] = len(ds)
        summaries[variant] = summary
    write_json(ctx.path(layout.DATASET_SUMMARY), bucket_summary(summaries))
    return res


def bucket_summary(summaries: dict[str, dict]) -> dict[str, Any]:
    """``dataset/summary.json`` for the report: the judged buckets first, then flat counts per variant.

    ``summaries``: per variant, the summary :func:`relforge.dataset.build_groups` returns."""
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


# --------------------------------------------------------------------------- train


def train_variant(
    ctx: StageContext, groups, out_rel: str, variant: str = "plain", dev=None, **overrides: Any
) -> dict[str, Any]:
    """Train one variant (``dev``: the :func:`dev_set` that chooses its checkpoint, or None)."""
    from relforge.train import train_bi_encoder, train_cross_encoder

    cfg: PipelineConfig = ctx.cfg
    if variant == "soft":
        overrides["loss"] = cfg.train.soft_loss
    tc = stage_part(cfg.train, TrainConfig, **overrides)
    fn = train_bi_encoder if tc.kind == "bi" else train_cross_encoder
    return fn(groups, str(ctx.path(out_rel)), tc, dev=dev) or {}


def dev_set(ctx: StageContext):
    """The human dev questions (``data.dev_split``) with the reranked first stage's top-k, or None."""
    from relforge.data import read_corpus, read_qrels, read_queries, read_run
    from relforge.train import DevSet

    cfg: PipelineConfig = ctx.cfg
    if not cfg.data.dev_split:
        return None
    return DevSet(
        corpus=read_corpus(ctx.path(layout.CORPUS)),
        queries=read_queries(ctx.path(layout.DEV_QUERIES)),
        qrels=read_qrels(ctx.path(layout.DEV_QRELS)),
        run=read_run(ctx.path(layout.first_stage_dev(cfg.rerank.first_stage))),
        top_k=cfg.rerank.top_k,
    )


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """One reranker (cross-encoder, or bi-encoder with ``train.kind: bi``) per variant, same settings."""
    from relforge.dataset import load_groups

    cfg: PipelineConfig = ctx.cfg
    res: dict[str, Any] = {}
    dev = dev_set(ctx)
    for variant in cfg.train.variants:
        groups = load_groups(ctx.path(layout.dataset(variant)))
        info = train_variant(ctx, groups, layout.train_model(variant), variant, dev)
        write_json(ctx.path(layout.train_summary(variant)), info)
        res[variant] = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
    ctx.set_manifest("reranker_model", reranker_rel(cfg))
    return res


def reranker_rel(cfg: PipelineConfig) -> str | None:
    """The final reranker's folder relative to the run folder (judged if trained, else plain)."""
    for v in ("judged", "soft", "plain"):
        if v in cfg.train.variants:
            return layout.train_model(v)
    return None


def kept_backbone(cfg: PipelineConfig, info: dict[str, Any]) -> bool:
    """Whether a trained bi-encoder kept its untrained start (dev selection): it is then the backbone
    itself (same weights, same rerank settings), so its runs are the backbone's runs, reused rather than
    encoded again. Recorded as ``same_as_backbone`` in the stage counts.

    ``info``: the trainer's summary; ``selected`` is there only when a dev set chose the checkpoint."""
    return (
        cfg.rerank.backbone
        and cfg.train.kind == "bi"
        and cfg.rerank.backend == "auto"
        and info.get("selected") == "start"
    )


def variants_kept_backbone(ctx: StageContext) -> list[str]:
    """The trained variants (stage train) that are the backbone itself (:func:`kept_backbone`)."""
    out = []
    for v in ctx.cfg.train.variants:
        path = ctx.path(layout.train_summary(v))
        if path.exists() and kept_backbone(ctx.cfg, read_json(path)):
            out.append(v)
    return out
