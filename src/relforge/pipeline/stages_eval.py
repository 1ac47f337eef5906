"""Stages rerank, evaluate, evaluate_extra and report: every system on the held-out human questions."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from relforge.config import EvalConfig, PipelineConfig, stage_part
from relforge.pipeline import layout
from relforge.pipeline.common import VARIANTS, backbone_model, resolve_data_source, write_json
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_judge import judge_labeller
from relforge.pipeline.stages_train import variants_kept_backbone

# --------------------------------------------------------------------------- rerank


def rerank_with(
    ctx: StageContext, model: str, kind: str = "cross", backend: str = "auto", data: tuple | None = None
) -> dict:
    """Rerank the held-out questions' first stage (or ``data = (corpus, queries, run, top_k)``)."""
    from relforge.data import read_corpus, read_queries, read_run
    from relforge.train.rerank import rerank

    cfg: PipelineConfig = ctx.cfg
    rr = cfg.rerank
    if data is None:
        corpus = read_corpus(ctx.path(layout.CORPUS))
        queries = read_queries(ctx.path(layout.TEST_QUERIES))
        run = read_run(ctx.path(layout.first_stage_test(rr.first_stage)))
        top_k = rr.top_k
    else:
        corpus, queries, run, top_k = data
    return rerank(
        model,
        corpus,
        queries,
        run,
        top_k=top_k,
        kind=kind,
        backend=backend,
        batch_size=rr.batch_size,
        max_length=rr.max_length,
        precision=rr.precision,
    )


def _rerank_plans(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """Per reranking system: the backend and precision it ran with (stage counts ``precision``)."""
    from relforge.train.rerank import rerank_plan

    used = {"backbone": rerank_plan("bi", "auto", cfg.rerank.precision)} if cfg.rerank.backbone else {}
    used.update(
        {v: rerank_plan(cfg.train.kind, cfg.rerank.backend, cfg.rerank.precision) for v in cfg.train.variants}
    )
    return {name: {"backend": b, **plan.metadata()} for name, (b, plan) in used.items()}


def stage_rerank(ctx: StageContext) -> dict[str, Any]:
    """Rerank the held-out questions' first-stage top-k with the backbone and each trained model.

    Counts: queries per system and pairs/s (wall time of the whole call, model loading included).
    """
    from relforge.data import write_run

    cfg: PipelineConfig = ctx.cfg
    res: dict[str, int] = {}
    speed: dict[str, float] = {}

    def one(name: str, model: str, kind: str, backend: str = "auto") -> dict:
        t0 = time.perf_counter()
        run = rerank_with(ctx, model, kind=kind, backend=backend)
        pairs = sum(len(docs) for docs in run.values())
        speed[name] = round(pairs / max(time.perf_counter() - t0, 1e-9), 1)
        write_run(ctx.path(layout.rerank_run(name)), run, tag=name)
        res[name] = len(run)
        return run

    backbone_run = one("backbone", backbone_model(cfg), "bi") if cfg.rerank.backbone else None
    same = variants_kept_backbone(ctx)
    for v in cfg.train.variants:
        if backbone_run is not None and v in same:
            write_run(ctx.path(layout.rerank_run(v)), backbone_run, tag=v)
            res[v] = len(backbone_run)
        else:
            one(v, str(ctx.path(layout.train_model(v))), cfg.train.kind, cfg.rerank.backend)
    return {
        "queries": res,
        "pairs_per_s": speed,
        "same_as_backbone": same,
        "backend": cfg.rerank.backend,
        "precision": _rerank_plans(cfg),
    }


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
    """One line per evaluated system (manifest ``systems``, the report's system descriptions)."""
    tr, rr = cfg.train, cfg.rerank
    model = "bi-encoder" if tr.kind == "bi" else "cross-encoder"
    trained = f"{model} from {tr.base}, loss {tr.loss}, reranking {rr.first_stage} top-{rr.top_k}"
    desc = {
        "bm25": f"BM25 ({cfg.retrieve.stemmer} stemming), top-{cfg.retrieve.top_k}",
        "dense": f"dense retrieval, {cfg.retrieve.model} cosine, top-{cfg.retrieve.top_k}",
        "hybrid": f"reciprocal-rank fusion of BM25 and dense (k={cfg.retrieve.rrf_k})",
        "backbone": f"untrained {tr.base} (cosine of its embeddings), reranking {rr.first_stage} top-{rr.top_k}",
        "plain": f"{trained}; groups of mined negatives, no judge labels",
        "judged": f"{trained}; groups re-bucketed by the judge's grades",
        "soft": f"{model} from {tr.base}, loss {tr.soft_loss} on the judge's expected grades "
        f"(soft labels), reranking {rr.first_stage} top-{rr.top_k}",
    }
    if cfg.judge.enabled:
        who = judge_labeller(cfg)
        for v in ("judged", "soft"):
            desc[v] += f" (judge: {who})"
    return {name: desc.get(name, name) for name in run_names(cfg)}


def eval_kwargs(cfg: PipelineConfig, baseline: str | None) -> dict[str, Any]:
    """``evaluate()``'s settings from ``evaluate`` (``EvalConfig``), tested against ``baseline``."""
    ec = stage_part(cfg.evaluate, EvalConfig)
    kw = {
        k: getattr(ec, k) for k in ("measures", "rel", "alpha", "permutation_rounds", "seed", "empty_queries")
    }
    kw["baseline"] = baseline
    return kw


def comparison_pairs(runs) -> list[tuple[str, str]]:
    """The questions the comparison answers: what did the judge's labels buy over plain mined
    negatives (judged/soft vs plain), and did training beat the untrained backbone?"""
    pairs = [(v, "plain") for v in ("judged", "soft") if {v, "plain"} <= set(runs)]
    pairs += [(v, "backbone") for v in VARIANTS if {v, "backbone"} <= set(runs)]
    return pairs


def stage_evaluate(ctx: StageContext) -> dict[str, Any]:
    """Metrics of every system on the held-out human questions, significance vs BM25."""
    from relforge.data import read_qrels, read_run
    from relforge.evaluate import evaluate

    cfg: PipelineConfig = ctx.cfg
    runs = {name: read_run(ctx.path(rel)) for name, rel in run_names(cfg).items()}
    baseline = cfg.evaluate.baseline or ("bm25" if "bm25" in runs else next(iter(runs)))
    pairs = comparison_pairs(runs)
    result = evaluate(
        read_qrels(ctx.path(layout.TEST_QRELS)), runs, **eval_kwargs(cfg, baseline), pairs=pairs
    )
    result.to_json(ctx.path(layout.METRICS_JSON))
    result.to_csv(ctx.path(layout.METRICS_CSV))
    ctx.set_manifest("systems", describe_systems(cfg))  # the report's system descriptions
    first = result.measures[0]
    return {f"{name}:{first}": round(result.aggregates[name][first], 4) for name in result.runs}


# --------------------------------------------------------------------------- extra test collections


def _extra_questions(ctx: StageContext, ec) -> tuple[dict, dict, dict]:
    """Corpus, queries and qrels of one extra collection: the questions with a relevant document (at
    most ``max_queries``), in ``pool`` mode the corpus cut to their judged documents."""
    from relforge.data import read_beir

    corpus, queries, qrels = read_beir(resolve_data_source(ec.source), ec.split)
    qids = sorted(q for q, docs in qrels.items() if q in queries and any(g > 0 for g in docs.values()))
    if ec.max_queries is not None and len(qids) > ec.max_queries:
        qids = sorted(random.Random(ctx.cfg.seed).sample(qids, ec.max_queries))
    qrels = {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in qids}
    queries = {q: queries[q] for q in qids}
    if ec.mode == "pool":
        corpus = {d: corpus[d] for d in sorted({d for docs in qrels.values() for d in docs})}
    return corpus, queries, qrels


def _rank_pools(runs: dict[str, dict], qrels: dict) -> None:
    """Every system ranks exactly the judged pool (in place); unscored documents go last."""
    for run in runs.values():
        for q in qrels:
            got = {d: v for d, v in run.get(q, {}).items() if d in qrels[q]}
            floor = min(got.values(), default=0.0) - 1.0
            rest = sorted(set(qrels[q]) - set(got))
            run[q] = {**got, **{d: floor - i * 1e-3 for i, d in enumerate(rest)}}


def _extra_data(ctx: StageContext, ec) -> tuple[dict, dict, dict, dict[str, dict]]:
    """Corpus, queries, qrels and first-stage runs of one extra collection (pool or full mode)."""
    from relforge.retrieve.bm25 import bm25_search
    from relforge.retrieve.dense import dense_search
    from relforge.retrieve.fusion import rrf

    rc = ctx.cfg.retrieve
    corpus, queries, qrels = _extra_questions(ctx, ec)
    depth = len(corpus) if ec.mode == "pool" else rc.top_k
    cache = ctx.path(f"{layout.extra_dir(ec.name)}/cache")
    runs = {"bm25": bm25_search(corpus, queries, depth, str(cache / "bm25-index"))}
    runs["dense"] = dense_search(
        corpus,
        queries,
        depth,
        rc.model,
        str(cache / "embeddings"),
        batch_size=rc.batch_size,
        max_seq_length=rc.max_seq_length,
    )
    runs["hybrid"] = rrf({"bm25": runs["bm25"], "dense": runs["dense"]}, k=rc.rrf_k, top_k=depth)
    if ec.mode == "pool":
        _rank_pools(runs, qrels)
    return corpus, queries, qrels, runs


def _extra_runs(ctx: StageContext, first: dict, data: tuple, same: list[str]) -> dict[str, dict]:
    """Every system's run on an extra collection: the first stages, the backbone and each variant."""
    cfg: PipelineConfig = ctx.cfg
    runs = {m: first[m] for m in cfg.retrieve.methods}
    if cfg.rerank.backbone:
        runs["backbone"] = rerank_with(ctx, backbone_model(cfg), "bi", data=data)
    for v in cfg.train.variants:
        if "backbone" in runs and v in same:
            runs[v] = runs["backbone"]  # the same model: the same run (see kept_backbone)
        else:
            model = str(ctx.path(layout.train_model(v)))
            runs[v] = rerank_with(ctx, model, cfg.train.kind, cfg.rerank.backend, data)
    return runs


def _evaluate_extra_one(ctx: StageContext, ec, same: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """One ``evaluate.extra`` collection: runs and metrics written; (its summary entry, first measure)."""
    from relforge.data import write_run
    from relforge.evaluate import evaluate

    cfg: PipelineConfig = ctx.cfg
    corpus, queries, qrels, first = _extra_data(ctx, ec)
    stage = ec.first_stage or cfg.rerank.first_stage
    top_k = ec.top_k or (max(len(v) for v in qrels.values()) if ec.mode == "pool" else cfg.rerank.top_k)
    runs = _extra_runs(ctx, first, (corpus, queries, first[stage], top_k), same)
    folder = layout.extra_dir(ec.name)
    for name, run in runs.items():
        write_run(ctx.path(f"{folder}/{name}.trec"), run, tag=name)
    baseline = cfg.evaluate.baseline if cfg.evaluate.baseline in runs else next(iter(runs))
    result = evaluate(qrels, runs, **eval_kwargs(cfg, baseline), pairs=comparison_pairs(runs))
    result.to_json(ctx.path(f"{folder}/metrics.json"))
    result.to_csv(ctx.path(f"{folder}/metrics.csv"))
    entry = {
        "metrics": f"{folder}/metrics.json",
        "source": ec.source,
        "split": ec.split,
        "mode": ec.mode,
        "first_stage": stage,
        "top_k": top_k,
        "queries": len(queries),
        "documents": len(corpus),
        "description": ec.description,
    }
    m = result.measures[0]
    scores = {name: round(result.aggregates[name][m], 4) for name in result.runs}
    ctx.log(f"extra {ec.name} ({len(queries)} queries, {ec.mode}): {m} {scores}")
    return entry, scores


def stage_evaluate_extra(ctx: StageContext) -> dict[str, Any]:
    """Every system again on each ``evaluate.extra`` collection (e.g. out of domain), its own table."""
    index: dict[str, Any] = {}
    res: dict[str, Any] = {}
    same = variants_kept_backbone(ctx)
    for ec in ctx.cfg.evaluate.extra:
        index[ec.name], res[ec.name] = _evaluate_extra_one(ctx, ec, same)
    write_json(ctx.path(layout.EXTRA_SUMMARY), index)
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
