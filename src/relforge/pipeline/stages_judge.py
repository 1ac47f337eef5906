"""Stages judge_finetune and judge as adapters of the judge package, and who the judge is for the others.

The judge stage's body is :func:`relforge.judge.run.run` (as ``relforge judge``'s); this module only maps
the pipeline configuration and the run folder's layout onto it (and the ``judge.adapter`` / ``judge.preset``
keys onto an adapter folder or a preset, which the agreement and report stages use too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.config import FinetuneConfig, JudgeConfig, PipelineConfig, stage_part
from relforge.judge.labeller import (
    SHIPPED_ADAPTER,
    adapter_meta,
    check_adapter,
    describe_labeller,
    preset_cv,
    shipped_adapter_dir,
    validation_qids,
)
from relforge.pipeline import layout
from relforge.pipeline.common import write_json
from relforge.pipeline.runner import StageContext

__all__ = [
    "SHIPPED_ADAPTER",
    "adapter_abs",
    "adapter_meta",
    "judge",
    "judge_adapter",
    "judge_labeller",
    "judge_llm",
    "judge_preset",
    "preset_cv",
    "preset_judge",
    "shipped_adapter_dir",
    "stage_judge",
    "stage_judge_finetune",
    "validation_qids",
]

# --------------------------------------------------------------------------- adapter / preset


def _is_packaged_smollm2(spec: str) -> bool:
    return spec.lower() in ("smollm2", "hf:smollm2")


def judge_adapter(cfg: PipelineConfig) -> str | None:
    """The adapter folder the judge loads (absolute path or a path relative to the run folder), or None."""
    a = cfg.judge.adapter
    if a is None or a == "none" or cfg.judge.preset is not None:
        return None
    if a == "finetune":
        return layout.JUDGE_FINETUNE
    if a in ("shipped", "auto"):
        if a == "auto" and not _is_packaged_smollm2(cfg.llm_for("judge")):
            return None
        return str(shipped_adapter_dir())
    return str(Path(a).expanduser().resolve())


def adapter_abs(ctx: StageContext, adapter: str | None) -> str | None:
    """:func:`judge_adapter` as an absolute path that exists (None stays None)."""
    if adapter is None:
        return None
    p = Path(adapter)
    return str(check_adapter(p if p.is_absolute() else ctx.out_dir / p))


def judge_preset(cfg: PipelineConfig):
    """The :class:`~relforge.judge.preset.JudgePreset` that ``judge.preset`` names (None: the LLM judge)."""
    if cfg.judge.preset is None:
        return None
    from relforge.judge.preset import JudgePreset

    return JudgePreset.load(cfg.judge.preset)


def judge_labeller(cfg: PipelineConfig) -> str:
    """Who grades the pairs, in one line (manifest ``systems``, report, agreement.json)."""
    j = cfg.judge
    return describe_labeller(cfg.llm_for("judge"), j.template, j.mode, judge_adapter(cfg), judge_preset(cfg))


def judge_config(cfg: PipelineConfig) -> Any:
    """The judge section as the judge package's :class:`~relforge.judge.config.JudgeConfig`."""
    return stage_part(cfg.judge, JudgeConfig)


# --------------------------------------------------------------------------- grading (the agreement stage's too)


def judge_llm(ctx: StageContext, adapter: str | None):
    """The judge's LLM: the engine's (Ray) or the run's, opened once with its SQLite cache."""
    from relforge.engine.pipeline import stage_llm

    cfg: PipelineConfig = ctx.cfg
    return stage_llm(ctx, cfg.llm_for("judge"), adapter) or ctx.llm(
        cfg.llm_for("judge"), adapter=adapter, batch_size=cfg.llm.batch_size, **cfg.llm_options("judge")
    )


def judge(ctx: StageContext, llm, queries, corpus, pairs, stats: dict, adapter: str | None = None) -> list:
    """The pairs judged with the pipeline's judge settings (:func:`relforge.judge.run.judge_llm_pairs`)."""
    from relforge.judge.run import judge_llm_pairs

    return judge_llm_pairs(llm, judge_config(ctx.cfg), queries, corpus, pairs, stats, adapter)


def preset_judge(ctx: StageContext, preset, queries, corpus, pairs) -> tuple[list, dict[str, Any]]:
    """The pairs graded by the preset (:func:`relforge.judge.run.grade_with_preset`): (rows, info)."""
    from relforge.judge.run import grade_with_preset

    jc = ctx.cfg.judge
    return grade_with_preset(
        preset, queries, corpus, pairs, on_missing=jc.on_missing, batch_size=jc.batch_size, log=ctx.log
    )


# --------------------------------------------------------------------------- stages


def stage_judge_finetune(ctx: StageContext) -> dict[str, Any]:
    """LoRA fine-tuning of the judge on human labels (``judge_finetune.enabled``)."""
    from relforge.data.io import read_labelled, resolve_data_source
    from relforge.judge.finetune import finetune_judge

    cfg: PipelineConfig = ctx.cfg
    ft = cfg.judge_finetune
    corpus, queries, qrels = read_labelled(resolve_data_source(ft.data, "judge_finetune.data"))
    base = ft.base or cfg.llm_for("judge")
    out = str(ctx.path(layout.JUDGE_FINETUNE))
    res = finetune_judge(base, corpus, queries, qrels, out, stage_part(ft, FinetuneConfig))
    write_json(ctx.path(layout.JUDGE_FINETUNE_SUMMARY), res)
    return {k: v for k, v in res.items() if isinstance(v, (int, float, str))}


def stage_judge(ctx: StageContext) -> dict[str, Any]:
    """Grade every synthetic query's source document and its mined candidates (LLM judge or ``judge.preset``):
    :func:`relforge.judge.run.run` on the run folder's files."""
    from relforge.judge.run import JudgeInputs, JudgeOutputs, run

    cfg: PipelineConfig = ctx.cfg
    inputs = JudgeInputs(
        corpus=ctx.path(layout.CORPUS),
        queries=ctx.path(layout.GEN_QUERIES),
        positives=ctx.path(layout.GEN_QRELS),
        negatives=ctx.path(layout.NEGATIVES),
    )
    outs = JudgeOutputs(
        judgments=ctx.path(layout.JUDGMENTS),
        qrels=ctx.path(layout.JUDGE_QRELS),
        summary=ctx.path(layout.JUDGE_SUMMARY),
        record_files=False,
    )
    preset = judge_preset(cfg)
    if preset is not None:
        summary = run(
            judge_config(cfg), inputs, outs, preset=preset, labeller=judge_labeller(cfg), log=ctx.log
        )
    else:
        adapter = adapter_abs(ctx, judge_adapter(cfg))
        inputs.adapter = Path(adapter) if adapter else None
        llm = judge_llm(ctx, adapter)
        summary = run(judge_config(cfg), inputs, outs, llm=llm, llm_spec=cfg.llm_for("judge"))
    return summary.counts()
