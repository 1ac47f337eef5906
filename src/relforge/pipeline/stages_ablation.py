"""Stage ablation: rerankers trained on nested subsets of the groups, scored vs training size.

Its record, ``ablation.json``, is :class:`relforge.evaluate.ablation.AblationResult` (the report reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relforge.config import PipelineConfig
from relforge.evaluate.ablation import AblationResult, nested_subsets, p_value
from relforge.pipeline import layout
from relforge.pipeline.common import SYSTEMS
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_eval import eval_kwargs, rerank_with
from relforge.pipeline.stages_train import dev_set, train_variant


@dataclass
class _Shared:
    """What every ablation point is scored with: the held-out qrels and first stage, the main results."""

    qrels: dict
    main: Any  # EvalResult of stage evaluate
    first: str
    first_run: dict
    dev: Any


def _trained_point(ctx: StageContext, sh: _Shared, groups, idx: list[int], variant: str, row: dict):
    """Train on the groups ``idx`` and rerank; the row gets the training time; (aggregates, p)."""
    import shutil

    from relforge.data import read_run, write_run
    from relforge.evaluate import evaluate

    cfg: PipelineConfig = ctx.cfg
    n = len(idx)
    rel = layout.ablation_model(variant, n)
    info = train_variant(ctx, groups.select(idx), rel, variant, sh.dev, eval_steps=10**9)
    same = cfg.rerank.backbone and info.is_backbone(cfg.rerank.backend)
    if same and ctx.path(layout.BACKBONE_RUN).exists():
        run = read_run(ctx.path(layout.BACKBONE_RUN))  # the start kept: the backbone's run
        row["same_as_backbone"] = True
    else:
        run = rerank_with(ctx, str(ctx.path(rel)), kind=cfg.train.kind, backend=cfg.rerank.backend)
    write_run(ctx.path(f"{rel}.trec"), run, tag=f"{variant}-{n}")
    ev = evaluate(sh.qrels, {sh.first: sh.first_run, "reranker": run}, **eval_kwargs(cfg, sh.first))
    agg, p = ev.aggregates["reranker"], p_value(ev.significance.get("reranker", {}).get("nDCG@10"))
    row["train_seconds"] = info.train_time_s
    shutil.rmtree(ctx.path(rel), ignore_errors=True)  # ~90 MB each; the run file stays
    return agg, p


def _variant_rows(ctx: StageContext, sh: _Shared, variant: str) -> list[dict[str, Any]]:
    """The points of one variant, one per distinct subset size."""
    from relforge.dataset import load_groups

    cfg: PipelineConfig = ctx.cfg
    ab = cfg.ablation
    groups = load_groups(ctx.path(layout.dataset(variant)))
    rows = []
    seen: set[int] = set()
    for size, idx in nested_subsets(len(groups), ab.sizes, ab.seed).items():
        n = len(idx)
        if n in seen:  # several sizes beyond the number of groups collapse to "all"
            continue
        seen.add(n)
        row: dict[str, Any] = {"size": n, "variant": variant, "requested_size": size}
        if n == len(groups) and variant in cfg.train.variants and variant in sh.main.aggregates:
            agg = sh.main.aggregates[variant]
            p = p_value(sh.main.significance.get(variant, {}).get("nDCG@10"))
            row["source"] = f"{layout.train_model(variant)} (full set)"
        else:
            agg, p = _trained_point(ctx, sh, groups, idx, variant, row)
        row.update({k: round(float(v), 4) for k, v in agg.items()})
        row[f"p_vs_{sh.first}"] = p
        rows.append(row)
        ctx.log(f"{variant} n={n}: nDCG@10 {row.get('nDCG@10')}")
    return rows


def _reference(cfg: PipelineConfig, main, first: str) -> dict[str, float]:
    """The untrained systems' (and the full plain reranker's) nDCG@10, the ablation plot's lines."""
    return {
        SYSTEMS.get(name, name): round(float(main.aggregates[name]["nDCG@10"]), 4)
        for name in main.runs
        if "nDCG@10" in main.aggregates[name]
        and name in ("bm25", first, "backbone", "plain")
        and not (name == "plain" and "plain" in cfg.ablation.variants)
    }


def stage_ablation(ctx: StageContext) -> dict[str, Any]:
    """Train on nested subsets of the groups; nDCG@10 (and the other measures) vs training size.

    A size at or above the number of groups is the full set: for a variant the ``train`` stage already
    trained (same data, same settings, same seed) its numbers are taken from ``eval/metrics.json``
    instead of training the same model twice.
    """
    from relforge.data import read_qrels, read_run
    from relforge.evaluate import EvalResult

    cfg: PipelineConfig = ctx.cfg
    ab = cfg.ablation
    first = cfg.rerank.first_stage
    sh = _Shared(
        qrels=read_qrels(ctx.path(layout.TEST_QRELS)),
        main=EvalResult.from_json(ctx.path(layout.METRICS_JSON)),
        first=first,
        first_run=read_run(ctx.path(layout.first_stage_test(first))),
        # with a dev split, each size competes only with its start (dev scored at step 0 and the last
        # step): choosing among intermediate checkpoints as well made the demo's ablation 5x slower
        dev=dev_set(ctx),
    )
    rows = [row for variant in ab.variants for row in _variant_rows(ctx, sh, variant)]
    AblationResult(
        rows=rows,
        reference=_reference(cfg, sh.main, first),
        x="training groups",
        variants=ab.variants,
        seed=ab.seed,
    ).write(ctx.path(layout.ABLATION_JSON))
    return {"points": len(rows)}
