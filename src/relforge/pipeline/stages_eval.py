"""Stages rerank, evaluate, evaluate_extra and report: every system on the held-out human questions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.config import EvalConfig, PipelineConfig, RerankConfig, stage_part
from relforge.data.io import resolve_data_source
from relforge.evaluate.run import comparison_pairs  # noqa: F401  (re-exported: relforge.pipeline.stages)
from relforge.pipeline import layout
from relforge.pipeline.common import VARIANTS, backbone_model
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_judge import judge_labeller
from relforge.pipeline.stages_train import variants_kept_backbone

# --------------------------------------------------------------------------- rerank


def rerank_config(cfg: PipelineConfig) -> RerankConfig:
    """``relforge rerank``'s settings from the pipeline's ``rerank`` section."""
    return stage_part(cfg.rerank, RerankConfig)


def rerank_with(
    ctx: StageContext, model: str, kind: str = "cross", backend: str = "auto", data: tuple | None = None
) -> dict:
    """Rerank the held-out questions' first stage (or ``data = (corpus, queries, run, top_k)``)."""
    from relforge.data import read_corpus, read_queries, read_run
    from relforge.train.rerank_run import rerank_with as rerank_data

    cfg: PipelineConfig = ctx.cfg
    if data is None:
        corpus = read_corpus(ctx.path(layout.CORPUS))
        queries = read_queries(ctx.path(layout.TEST_QUERIES))
        run = read_run(ctx.path(layout.first_stage_test(cfg.rerank.first_stage)))
        top_k = cfg.rerank.top_k
    else:
        corpus, queries, run, top_k = data
    return rerank_data(rerank_config(cfg), model, kind, corpus, queries, run, top_k=top_k, backend=backend)


def rerankers(ctx: StageContext, same: list[str]) -> list:
    """The reranking systems: the untrained backbone (``rerank.backbone``, as a bi-encoder), then each
    trained variant (one that kept the backbone, ``same``, reuses its run)."""
    from relforge.train.rerank_run import Reranker

    cfg: PipelineConfig = ctx.cfg
    out = [Reranker(name="backbone", model=backbone_model(cfg), kind="bi", backend="auto")]
    out = out if cfg.rerank.backbone else []
    for v in cfg.train.variants:
        model = str(ctx.path(layout.train_model(v)))
        same_as = "backbone" if cfg.rerank.backbone and v in same else None
        out.append(Reranker(name=v, model=model, kind=cfg.train.kind, same_as=same_as))
    return out


def stage_rerank(ctx: StageContext) -> dict[str, Any]:
    """Rerank the held-out questions' first-stage top-k with the backbone and each trained model.

    Counts: queries per system and pairs/s (wall time of the whole call, model loading included).
    """
    from relforge.train.rerank_run import RerankInputs, run_systems

    cfg: PipelineConfig = ctx.cfg
    same = variants_kept_backbone(ctx)
    systems = rerankers(ctx, same)
    inputs = RerankInputs(
        corpus=ctx.path(layout.CORPUS),
        queries=ctx.path(layout.TEST_QUERIES),
        run=ctx.path(layout.first_stage_test(cfg.rerank.first_stage)),
    )
    outs = {s.name: ctx.path(layout.rerank_run(s.name)) for s in systems}
    summary = run_systems(rerank_config(cfg), inputs, outs, systems)
    return summary.model_copy(update={"same_as_backbone": same}).model_dump()


# --------------------------------------------------------------------------- evaluate


def run_names(cfg: PipelineConfig) -> dict[str, str]:
    """System id -> run file (relative), in table order."""
    out = {m: layout.first_stage_test(m) for m in cfg.retrieve.methods}
    if cfg.rerank.backbone:
        out["backbone"] = layout.BACKBONE_RUN
    for v in VARIANTS:
        if v in cfg.train.variants:
            out[v] = layout.rerank_run(v)
    return out


def describe_systems(cfg: PipelineConfig) -> dict[str, str]:
    """One line per evaluated system (manifest ``systems``): :func:`relforge.report.systems.describe_systems`
    of the run's systems, the judge named when it is enabled."""
    from relforge.report.systems import describe_systems as describe

    return describe(cfg, run_names(cfg), judge_labeller(cfg) if cfg.judge.enabled else None)


def eval_config(cfg: PipelineConfig, baseline: str | None) -> EvalConfig:
    """``relforge evaluate``'s settings from the ``evaluate`` section, tested against ``baseline``."""
    return stage_part(cfg.evaluate, EvalConfig, baseline=baseline)


def eval_kwargs(cfg: PipelineConfig, baseline: str | None) -> dict[str, Any]:
    """``evaluate()``'s keyword arguments from the ``evaluate`` section, tested against ``baseline``."""
    return eval_config(cfg, baseline).model_dump()


def stage_evaluate(ctx: StageContext) -> dict[str, Any]:
    """Metrics of every system on the held-out human questions, significance vs BM25."""
    from relforge.evaluate.run import EvalInputs, EvalOutputs, run

    cfg: PipelineConfig = ctx.cfg
    runs = {name: ctx.path(rel) for name, rel in run_names(cfg).items()}
    baseline = cfg.evaluate.baseline or ("bm25" if "bm25" in runs else next(iter(runs)))
    inputs = EvalInputs(qrels=ctx.path(layout.TEST_QRELS), runs=runs, pairs=comparison_pairs(runs))
    out = EvalOutputs(metrics_json=ctx.path(layout.METRICS_JSON), metrics_csv=ctx.path(layout.METRICS_CSV))
    summary = run(eval_config(cfg, baseline), inputs, out)
    ctx.set_manifest("systems", describe_systems(cfg))  # the report's system descriptions
    return summary.counts()


# --------------------------------------------------------------------------- extra test collections


def stage_evaluate_extra(ctx: StageContext) -> dict[str, Any]:
    """Every system again on each ``evaluate.extra`` collection (e.g. out of domain), its own table."""
    from relforge.evaluate.extra import ExtraIndex, run_extra

    cfg: PipelineConfig = ctx.cfg
    index: dict[str, Any] = {}
    res: dict[str, Any] = {}
    systems = rerankers(ctx, variants_kept_backbone(ctx))
    for ec in cfg.evaluate.extra:
        folder = layout.extra_dir(ec.name)
        index[ec.name], res[ec.name] = run_extra(
            ec,
            eval_config(cfg, cfg.evaluate.baseline),
            ctx.out_dir / folder,
            source=resolve_data_source(ec.source),
            rel_folder=folder,
            retrieve=cfg.retrieve,
            methods=cfg.retrieve.methods,
            rerank=rerank_config(cfg),
            first_stage=cfg.rerank.first_stage,
            systems=systems,
            seed=cfg.seed,
            log=ctx.log,
        )
    ExtraIndex(index).write(ctx.path(layout.EXTRA_SUMMARY))
    return res


# --------------------------------------------------------------------------- report


def stage_report(ctx: StageContext) -> dict[str, Any]:
    from relforge.report import render_report

    ctx.runner.save()  # the report reads the manifest's timings
    path = render_report(ctx.out_dir)
    return {
        "report": str(Path(path).relative_to(ctx.out_dir))
        if Path(path).is_relative_to(ctx.out_dir)
        else str(path)
    }
