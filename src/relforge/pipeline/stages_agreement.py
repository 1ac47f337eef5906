"""Stage agreement as an adapter of :func:`relforge.judge.agreement_run.run`: the judge vs held-out human
grades, next to MiniLM cosine, in the run folder's ``judge/agreement.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.config import AgreementConfig, PipelineConfig, stage_part
from relforge.data.io import resolve_data_source
from relforge.judge.agreement_run import cosine_agreement, flat_agreement
from relforge.pipeline import layout
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_judge import (
    adapter_abs,
    judge_adapter,
    judge_config,
    judge_labeller,
    judge_llm,
    judge_preset,
    shipped_adapter_dir,
)

__all__ = ["cosine_agreement", "flat_agreement", "stage_agreement"]


def _outputs(ctx: StageContext) -> Any:
    """agreement.json, its confusion plots and (unless the adapter was trained in this run) where the
    adapter's own training curves are copied, as the layout names them."""
    from relforge.judge.agreement_run import AdapterCurves, AgreementOutputs

    curves = None
    if not ctx.cfg.judge_finetune.enabled:
        curves = AdapterCurves(
            metrics=ctx.out_dir / layout.JUDGE_FINETUNE_METRICS,
            source=ctx.out_dir / layout.JUDGE_FINETUNE_SOURCE,
            plots=ctx.out_dir / layout.JUDGE_FINETUNE,
        )
    return AgreementOutputs(
        agreement=ctx.path(layout.AGREEMENT),
        confusion={k: ctx.out_dir / layout.confusion_png(k) for k in ("judge", "judge_zero_shot")},
        curves=curves,
    )


def stage_agreement(ctx: StageContext) -> dict[str, Any]:
    """The judge vs held-out human grades (LiveQA-Med validation queries), next to MiniLM cosine."""
    from relforge.judge.agreement_run import AgreementInputs, run

    cfg: PipelineConfig = ctx.cfg
    ac = cfg.judge.agreement
    preset = judge_preset(cfg)
    adapter = adapter_abs(ctx, judge_adapter(cfg))
    split_from = adapter if preset is None else str(shipped_adapter_dir())
    inputs = AgreementInputs(
        human=resolve_data_source(ac.human, "judge.agreement.human"),
        human_name=ac.human,
        adapter=Path(adapter) if adapter else None,
        split_from=Path(split_from) if split_from else None,
    )
    summary = run(
        stage_part(ac, AgreementConfig),
        inputs,
        _outputs(ctx),
        judge=judge_config(cfg),
        seed=cfg.seed,
        llm_spec=cfg.llm_for("judge"),
        open_llm=lambda a: judge_llm(ctx, a),
        preset=preset,
        labeller=judge_labeller(cfg),
        log=ctx.log,
    )
    return summary.counts()
