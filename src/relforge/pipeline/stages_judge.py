"""Stages judge_finetune and judge, and who the judge is (adapter, preset) for the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.config import FinetuneConfig, PipelineConfig, stage_part
from relforge.errors import MissingInputError
from relforge.pipeline import layout
from relforge.pipeline.common import read_json, read_labelled, resolve_data_source, write_json
from relforge.pipeline.runner import StageContext

SHIPPED_ADAPTER = "smollm2-liveqa"


# --------------------------------------------------------------------------- adapter / preset


def shipped_adapter_dir() -> Path:
    """The adapter the pipeline's ``judge.adapter: auto`` means (one helper: relforge.judge.finetune's)."""
    from relforge.judge.finetune import shipped_adapter_dir as shipped

    return shipped(SHIPPED_ADAPTER)


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
    p = p if p.is_absolute() else ctx.out_dir / p
    if not p.exists():
        hint = (
            (
                "the shipped adapter is missing from the installed package; reinstall relforge or set "
                "judge.adapter to null (zero-shot) or a folder"
            )
            if SHIPPED_ADAPTER in str(p)
            else "set judge.adapter to an existing folder, 'shipped', 'finetune' or null"
        )
        raise MissingInputError(f"judge adapter {p} does not exist; {hint}")
    return str(p)


def adapter_meta(adapter: str | None) -> dict[str, Any]:
    """The adapter's ``relforge.json`` ({} without an adapter, or for one trained elsewhere)."""
    if adapter is None:
        return {}
    f = Path(adapter) / "relforge.json"
    return read_json(f) if f.exists() else {}


def validation_qids(meta: dict[str, Any]) -> list[str] | None:
    """The adapter's held-out validation query ids: ``val_queries`` of the ``relforge.json`` that
    ``relforge judge finetune`` writes (None for an adapter trained elsewhere)."""
    val = meta.get("val_queries")
    return [str(q) for q in val] if isinstance(val, list) else None


def judge_preset(cfg: PipelineConfig):
    """The :class:`~relforge.judge.preset.JudgePreset` that ``judge.preset`` names (None: the LLM judge)."""
    if cfg.judge.preset is None:
        return None
    from relforge.judge.preset import JudgePreset

    return JudgePreset.load(cfg.judge.preset)


def judge_labeller(cfg: PipelineConfig) -> str:
    """Who grades the pairs, in one line (manifest ``systems``, report, agreement.json)."""
    preset = judge_preset(cfg)
    if preset is not None:
        return f"preset {preset.name}: {preset.description or preset.head.features}"
    adapter = judge_adapter(cfg)
    if adapter is None:
        return f"LLM judge {cfg.llm_for('judge')}, zero-shot ({cfg.judge.template}, {cfg.judge.mode})"
    name = "shipped" if Path(adapter) == shipped_adapter_dir() else adapter
    return f"LLM judge {cfg.llm_for('judge')} + LoRA adapter {name} ({cfg.judge.template}, {cfg.judge.mode})"


def preset_cv(preset) -> dict[str, Any] | None:
    """The held-out k-fold numbers that chose the preset (its ``measured`` table): the preset's labeller
    and raw MiniLM cosine on the same folds, each metric ``[mean, sd]`` over folds; None if not recorded.

    The preset's row is ``<head.meta labeller>|<head.kind>``, the key ``benchmarks/judge_preset.py``
    writes for the labeller it fits."""
    m = preset.measured or {}
    table = m.get("table") or {}
    key = f"{preset.head.meta.get('labeller')}|{preset.head.kind}"
    if not isinstance(table.get(key), dict):
        return None
    raw = table.get("raw cos") or {}  # a raw feature ranks but does not grade: only its taus mean anything
    raw = {k: v for k, v in raw.items() if k in ("kendall_tau_b", "per_query_tau_b")}
    return {
        "folds": m.get("folds"),
        "seed": m.get("seed"),
        "labeller": key,
        "rows": {
            f"preset {preset.name} ({key})": table[key],
            "MiniLM cosine (raw, ranking only)": raw or None,
        },
        "source": "docs/judge-preset.md",
    }


# --------------------------------------------------------------------------- grading


def judge_llm(ctx: StageContext, adapter: str | None):
    from relforge.engine.pipeline import stage_llm

    cfg: PipelineConfig = ctx.cfg
    return stage_llm(ctx, cfg.llm_for("judge"), adapter) or ctx.llm(
        cfg.llm_for("judge"), adapter=adapter, batch_size=cfg.llm.batch_size, **cfg.llm_options("judge")
    )


def judge(ctx: StageContext, llm, queries, corpus, pairs, stats: dict, adapter: str | None = None) -> list:
    """judge_pairs with the config; documents are cut like the adapter's training data unless set."""
    from relforge.engine.pipeline import judge_batch_size
    from relforge.judge.judge import judge_pairs
    from relforge.judge.run import resolve_adapter

    _, jc = resolve_adapter(adapter, ctx.cfg.judge)  # the adapter's training truncation unless set
    template = jc.load_template()  # judge.reasoning reaches the prompt, as in `relforge judge`
    return judge_pairs(
        llm,
        template,
        queries,
        corpus,
        pairs,
        mode=jc.mode,
        thresholds=jc.thresholds,
        batch_size=judge_batch_size(llm, len(pairs), jc.batch_size),
        max_doc_tokens=jc.max_doc_tokens,
        on_missing=jc.on_missing,
        max_new_tokens=jc.reply_tokens(template),
        retry_temperature=jc.retry_temperature,
        seed=jc.seed,
        stats=stats,
    )


def preset_judge(ctx: StageContext, preset, queries, corpus, pairs) -> tuple[list, dict[str, Any]]:
    """The pairs graded by the preset (the entry point of ``relforge judge --preset``): (rows, info)."""
    from relforge.judge.judge import check_pairs
    from relforge.judge.run import judge_with_preset

    todo = list(dict.fromkeys(pairs))
    known, unknown = check_pairs(todo, queries, corpus, on_missing=ctx.cfg.judge.on_missing)
    rows, info = judge_with_preset(preset, queries, corpus, known, batch_size=ctx.cfg.judge.batch_size)
    ctx.log(
        f"preset {preset.name} ({info['model']}) graded {info['pairs']} pairs in {info['seconds']:.1f} s"
        f" = {info['pairs_per_s']} pairs/s"
        + (f"; {len(unknown)} pairs with unknown ids skipped" if unknown else "")
    )
    return rows, {**info, "skipped_unknown": len(unknown)}


# --------------------------------------------------------------------------- stages


def stage_judge_finetune(ctx: StageContext) -> dict[str, Any]:
    """LoRA fine-tuning of the judge on human labels (``judge_finetune.enabled``)."""
    from relforge.judge.finetune import finetune_judge

    cfg: PipelineConfig = ctx.cfg
    ft = cfg.judge_finetune
    corpus, queries, qrels = read_labelled(resolve_data_source(ft.data, "judge_finetune.data"))
    base = ft.base or cfg.llm_for("judge")
    out = str(ctx.path(layout.JUDGE_FINETUNE))
    res = finetune_judge(base, corpus, queries, qrels, out, stage_part(ft, FinetuneConfig))
    write_json(ctx.path(layout.JUDGE_FINETUNE_SUMMARY), res)
    return {k: v for k, v in res.items() if isinstance(v, (int, float, str))}


def _judge_pairs_todo(ctx: StageContext, positives) -> list[tuple[str, str]]:
    """Every synthetic query's source documents, then its mined negatives, queries sorted."""
    negs = read_json(ctx.path(layout.NEGATIVES))
    pairs = []
    for qid in sorted(positives):
        pairs += [(qid, d) for d in sorted(positives[qid])]
        pairs += [(qid, d) for d in negs.get(qid, [])]  # no key: the query has no positive
    return pairs


def stage_judge(ctx: StageContext) -> dict[str, Any]:
    """Grade every synthetic query's source document and its mined candidates (LLM judge or ``judge.preset``)."""
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.judge.judge import write_judgment_qrels, write_judgments

    cfg: PipelineConfig = ctx.cfg
    corpus = read_corpus(ctx.path(layout.CORPUS))
    queries = read_queries(ctx.path(layout.GEN_QUERIES))
    pairs = _judge_pairs_todo(ctx, read_qrels(ctx.path(layout.GEN_QRELS)))
    preset = judge_preset(cfg)
    if preset is not None:
        from relforge.judge.run import write_preset_judgments

        rows, info = preset_judge(ctx, preset, queries, corpus, pairs)
        write_preset_judgments(ctx.path(layout.JUDGMENTS), rows, ctx.path(layout.JUDGE_QRELS))
        write_json(ctx.path(layout.JUDGE_SUMMARY), {**info, "labeller": judge_labeller(cfg)})
        return {"pairs": len(rows), "unlabelled": 0, "preset": preset.name}
    adapter = adapter_abs(ctx, judge_adapter(cfg))
    llm = judge_llm(ctx, adapter)
    stats: dict[str, Any] = {}
    js = judge(ctx, llm, queries, corpus, pairs, stats, adapter)
    write_judgments(ctx.path(layout.JUDGMENTS), js)
    write_judgment_qrels(ctx.path(layout.JUDGE_QRELS), js)
    stats.update(adapter=adapter, llm=cfg.llm_for("judge"))
    write_json(ctx.path(layout.JUDGE_SUMMARY), stats)
    return {"pairs": len(js), "unlabelled": sum(1 for j in js if j.grade is None)}
