"""Stages import, generate and retrieve: thin adapters over :func:`relforge.data.run.run`,
:func:`relforge.generate.run.run` and :func:`relforge.retrieve.run.run` (the run folder's file names come
from :mod:`relforge.pipeline.layout`)."""

from __future__ import annotations

from typing import Any

from relforge.config import GenerateConfig, PipelineConfig, RetrieveStageConfig, stage_part
from relforge.data.config import ImportConfig
from relforge.data.io import resolve_data_source
from relforge.pipeline import layout
from relforge.pipeline.runner import StageContext


def import_config(cfg: PipelineConfig) -> ImportConfig:
    """The import stage's settings: the ``data`` section."""
    return stage_part(cfg.data, ImportConfig)


def generate_config(cfg: PipelineConfig) -> Any:
    """The generate stage's :class:`~relforge.generate.config.GenerateConfig`: the ``generate`` section."""
    return stage_part(cfg.generate, GenerateConfig)


def retrieve_settings(cfg: PipelineConfig, **where: str) -> Any:
    """The retrieve stage's :class:`~relforge.retrieve.config.RetrieveStageConfig`: the ``retrieve``
    section, with ``where`` (the run folder's index and embedding cache folders)."""
    return stage_part(cfg.retrieve, RetrieveStageConfig, **where)


def stage_import(ctx: StageContext) -> dict[str, Any]:
    """Copy/convert the data source to ``data/`` and pick the held-out human evaluation questions."""
    from relforge.data.run import COUNTS, ImportInputs, ImportOutputs, run

    cfg: PipelineConfig = ctx.cfg
    out = ImportOutputs(
        corpus=ctx.path(layout.CORPUS),
        test_queries=ctx.path(layout.TEST_QUERIES),
        test_qrels=ctx.path(layout.TEST_QRELS),
        train_queries=ctx.path(layout.TRAIN_QUERIES),
        train_qrels=ctx.path(layout.TRAIN_QRELS),
        dev_queries=ctx.path(layout.DEV_QUERIES),
        dev_qrels=ctx.path(layout.DEV_QRELS),
        summary=ctx.path(layout.DATA_SUMMARY),
        medquad_dir=ctx.path(layout.MEDQUAD_DIR),
    )
    inputs = ImportInputs(source=resolve_data_source(cfg.data.source))
    summary = run(import_config(cfg), inputs, out, log=ctx.log)
    return summary.model_dump(include=set(COUNTS))


def stage_generate(ctx: StageContext) -> dict[str, Any]:
    """Synthetic queries for (a sample of) the corpus, or ``data.train_split``'s human questions."""
    from relforge.generate.run import GenerateInputs, GenerateOutputs, HumanQuestions, run

    cfg: PipelineConfig = ctx.cfg
    human = None
    if cfg.data.train_split:
        human = HumanQuestions(
            queries=ctx.path(layout.TRAIN_QUERIES),
            qrels=ctx.path(layout.TRAIN_QRELS),
            split=cfg.data.train_split,
        )
    inputs = GenerateInputs(corpus=ctx.path(layout.CORPUS), human=human)
    out = GenerateOutputs(
        queries=ctx.path(layout.GEN_QUERIES),
        qrels=ctx.path(layout.GEN_QRELS),
        summary=ctx.path(layout.GEN_SUMMARY),
        rejected=ctx.path(layout.GEN_REJECTED),
    )

    def open_llm() -> Any:
        from relforge.engine.pipeline import stage_llm

        spec = cfg.llm_for("generate")
        return stage_llm(ctx, spec) or ctx.llm(
            spec, batch_size=cfg.llm.batch_size, **cfg.llm_options("generate")
        )

    summary = run(generate_config(cfg), inputs, out, llm=open_llm, require_queries=True)
    return summary.counts()


def stage_retrieve(ctx: StageContext) -> dict[str, Any]:
    """First-stage runs for synthetic and held-out questions; hard-negative candidates for the judge."""
    from relforge.retrieve.run import RetrieveInputs, RetrieveOutputs, run

    cfg: PipelineConfig = ctx.cfg
    methods = cfg.retrieve.methods
    dev = bool(cfg.data.dev_split)
    inputs = RetrieveInputs(
        corpus=ctx.path(layout.CORPUS),
        queries=ctx.path(layout.GEN_QUERIES),
        positives=ctx.path(layout.GEN_QRELS),
        test_queries=ctx.path(layout.TEST_QUERIES),
        dev_queries=ctx.path(layout.DEV_QUERIES) if dev else None,
    )
    out = RetrieveOutputs(
        candidates=ctx.path(layout.CANDIDATES),
        test_runs={m: ctx.path(layout.first_stage_test(m)) for m in methods},
        dev_runs={m: ctx.path(layout.first_stage_dev(m)) for m in methods} if dev else {},
        negatives=ctx.path(layout.NEGATIVES),
        summary=ctx.path(layout.RETRIEVE_SUMMARY),
    )
    where = {"index_dir": str(ctx.path(layout.BM25_INDEX)), "cache_dir": str(ctx.path(layout.EMBEDDINGS))}
    settings = retrieve_settings(cfg, **where)
    return run(settings, inputs, out, engine=cfg.engine).counts()
