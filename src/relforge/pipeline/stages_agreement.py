"""Stage agreement: the judge vs held-out human grades, next to MiniLM cosine."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from relforge.config import PipelineConfig
from relforge.pipeline import layout
from relforge.pipeline.common import read_labelled, resolve_data_source, write_json
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages_judge import (
    adapter_abs,
    adapter_meta,
    judge,
    judge_adapter,
    judge_labeller,
    judge_llm,
    judge_preset,
    preset_cv,
    preset_judge,
    shipped_adapter_dir,
    validation_qids,
)


def _agreement_qids(ctx: StageContext, human, adapter: str | None) -> tuple[list[str], str]:
    """The labelled queries compared on and how they were chosen (``judge.agreement.queries``)."""
    cfg: PipelineConfig = ctx.cfg
    qids = sorted(human)
    if cfg.judge.agreement.queries != "adapter":
        return qids, "all"
    src = adapter if cfg.judge.preset is None else str(shipped_adapter_dir())
    val = validation_qids(adapter_meta(src if src and Path(src).exists() else None))
    if not val:
        ctx.log("the adapter records no validation query ids; using every labelled query")
        return qids, "all"
    chosen_by = (
        "adapter validation split"
        if cfg.judge.preset is None
        else "the shipped adapter's validation split (the preset was fitted on them too)"
    )
    return [q for q in val if q in human], chosen_by


def _agreement_pairs(ctx: StageContext, human, corpus, queries, adapter: str | None):
    """The human-graded pairs the judge is compared on: ``(pairs, sub-qrels, meta)``.

    ``queries: adapter`` = the adapter's validation queries; with ``judge.preset`` (no adapter) those of the
    shipped adapter, so the numbers stand beside the adapter's."""
    cfg: PipelineConfig = ctx.cfg
    ac = cfg.judge.agreement
    qids, chosen_by = _agreement_qids(ctx, human, adapter)
    pairs = [(q, d) for q in qids for d in sorted(human[q]) if d in corpus and q in queries]
    if ac.max_pairs is not None and len(pairs) > ac.max_pairs:
        pairs = sorted(random.Random(cfg.seed).sample(pairs, ac.max_pairs))
    sub = {q: {d: human[q][d] for qq, d in pairs if qq == q} for q in qids}
    sub = {q: v for q, v in sub.items() if v}
    meta = {
        "human": ac.human,
        "queries": sorted(sub),
        "queries_from": chosen_by,
        "pairs": len(pairs),
        "llm": cfg.llm_for("judge") if cfg.judge.preset is None else None,
        "labeller": judge_labeller(cfg),
    }
    return pairs, sub, meta


def _preset_agreement(ctx: StageContext, preset, queries, corpus, pairs, sub, meta) -> dict[str, Any]:
    """agreement.json's ``judge`` entry for a preset: its numbers on pairs it was fitted on (flagged), and
    the held-out k-fold numbers recorded in the preset (``cv``)."""
    from relforge.judge.agreement import agreement
    from relforge.judge.judge import Judgment

    rows, info = preset_judge(ctx, preset, queries, corpus, pairs)
    human_data = str(resolve_data_source(ctx.cfg.judge.agreement.human, "judge.agreement.human")).lower()
    trained_on = str(preset.head.meta.get("data") or "")
    fitted_on = "liveqa" in human_data and "liveqa" in trained_on.lower()
    return flat_agreement(
        agreement(sub, [Judgment.from_dict(r) for r in rows]),
        {
            **meta,
            "adapter": None,
            "preset": preset.name,
            "model": info["model"],
            "pairs_per_s": info["pairs_per_s"],
            "held_out": False if fitted_on else None,
            "note": (
                "pairs the preset was fitted on (not held out); held-out k-fold numbers: docs/judge-preset.md"
                if fitted_on
                else f"the preset was fitted on: {trained_on or 'not recorded'}; check these pairs were not among them"
            ),
            "cv": preset_cv(preset),
        },
    )


def _llm_agreement(ctx: StageContext, adapter: str | None, queries, corpus, pairs, sub, meta) -> dict:
    """agreement.json's ``judge`` entry (and ``judge_zero_shot``, with ``agreement.zero_shot``) for the LLM."""
    from relforge.judge.agreement import agreement

    out: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    js = judge(ctx, judge_llm(ctx, adapter), queries, corpus, pairs, stats, adapter)
    if ctx.cfg.judge.agreement.zero_shot and adapter is not None:
        zs = judge(ctx, judge_llm(ctx, None), queries, corpus, pairs, {}, adapter)
        out["judge_zero_shot"] = flat_agreement(agreement(sub, zs), {**meta, "adapter": None})
    out["judge"] = flat_agreement(
        agreement(sub, js), {**meta, "adapter": adapter, "pairs_per_s": stats.get("pairs_per_s")}
    )
    return out


def _plot_confusions(ctx: StageContext, out: dict[str, Any]) -> None:
    from relforge.judge.agreement import plot_confusion

    for key in ("judge", "judge_zero_shot"):
        conf = out.get(key, {}).get("confusion")
        if conf:
            try:
                plot_confusion(conf, out[key]["labels"], ctx.path(layout.confusion_png(key)))
            except Exception as e:  # a plot must not lose the numbers
                ctx.log(f"confusion plot failed: {e}")


def stage_agreement(ctx: StageContext) -> dict[str, Any]:
    """The judge vs held-out human grades (LiveQA-Med validation queries), next to MiniLM cosine."""
    cfg: PipelineConfig = ctx.cfg
    corpus, queries, human = read_labelled(
        resolve_data_source(cfg.judge.agreement.human, "judge.agreement.human")
    )
    adapter = adapter_abs(ctx, judge_adapter(cfg))
    pairs, sub, meta = _agreement_pairs(ctx, human, corpus, queries, adapter)
    preset = judge_preset(cfg)
    if preset is not None:
        out = {"judge": _preset_agreement(ctx, preset, queries, corpus, pairs, sub, meta)}
    else:
        out = _llm_agreement(ctx, adapter, queries, corpus, pairs, sub, meta)
    out["minilm_cosine"] = {**cosine_agreement(sub, queries, corpus, pairs), **meta}
    out["minilm_cosine"].pop("labeller", None)
    _plot_confusions(ctx, out)
    write_json(ctx.path(layout.AGREEMENT), out)
    _copy_adapter_curves(ctx, adapter)
    return _agreement_result(ctx, out, len(pairs), len(sub))


def _agreement_result(ctx: StageContext, out: dict[str, Any], n_pairs: int, n_queries: int) -> dict[str, Any]:
    res = {
        "pairs": n_pairs,
        "queries": n_queries,
        "judge_tau_b": out["judge"]["tau_b"],
        "minilm_tau_b": out["minilm_cosine"]["tau_b"],
    }
    if "judge_zero_shot" in out:
        res["zero_shot_tau_b"] = out["judge_zero_shot"]["tau_b"]
    if out["judge"].get("note"):  # only a preset's entry has a note
        res["note"] = out["judge"]["note"]
    jt, mt = res["judge_tau_b"], res["minilm_tau_b"]
    if jt is not None and mt is not None and jt < mt:
        res["warning"] = "judge agrees with humans less than MiniLM cosine"
        ctx.log(
            f"WARNING: on held-out human labels the judge's tau_b ({jt:.3f}) is below MiniLM cosine's "
            f"({mt:.3f}): its re-bucketing may hurt; compare the 'judged' and 'plain' rerankers in the report"
        )
    return res


def flat_agreement(rep: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``agreement()`` output in the report's keys (``tau_b``, ``kappa``, ``weighted_kappa``...), full detail kept.

    ``rep`` always has ``all``, ``values`` and ``counts``; ``balanced`` and ``rerank`` only when a pair was
    scored, and ``all`` holds just ``n`` when none was."""
    al = rep["all"]
    return {
        "n": al.get("n"),
        "tau_b": al.get("kendall_tau_b"),
        "per_query_tau_b": al.get("per_query_tau_b"),
        "kappa": al.get("cohen_kappa"),
        "weighted_kappa": al.get("quadratic_kappa"),
        "alpha": al.get("krippendorff_alpha"),
        "accuracy": al.get("accuracy"),
        "macro_f1": al.get("macro_f1"),
        "labels": [str(v) for v in rep["values"]],
        "confusion": al.get("confusion"),
        "per_class": al.get("per_class"),
        "rerank": rep.get("rerank"),
        "balanced": {k: v for k, v in (rep.get("balanced") or {}).items() if k != "confusion"},
        "counts": rep["counts"],
        **extra,
    }


def _copy_adapter_curves(ctx: StageContext, adapter: str | None) -> None:
    """Show the shipped/used adapter's own training curves in the report when it was not trained here."""
    import shutil

    if adapter is None or ctx.cfg.judge_finetune.enabled:
        return
    src = Path(adapter) / "metrics.jsonl"
    if src.exists():
        dst = ctx.path(layout.JUDGE_FINETUNE_METRICS)
        shutil.copyfile(src, dst)
        for png in Path(adapter).glob("*.png"):
            shutil.copyfile(png, ctx.path(layout.judge_finetune_file(png.name)))
        write_json(ctx.path(layout.JUDGE_FINETUNE_SOURCE), {"adapter": adapter, "trained_here": False})


def _encode(enc, texts: list[str]):
    return enc.encode(texts, normalize_embeddings=True, show_progress_bar=False)


def _per_query_taus(qids: list[str], pairs, hum: list, cos: list[float]) -> list[float]:
    """Kendall tau_b within each query's pool (pools with a single human or cosine value are left out)."""
    from scipy.stats import kendalltau

    per_q = []
    for q in qids:
        idx = [i for i, (qq, _) in enumerate(pairs) if qq == q]
        h, c = [hum[i] for i in idx], [cos[i] for i in idx]
        if len(set(h)) > 1 and len(set(c)) > 1:
            per_q.append(kendalltau(h, c, variant="b").statistic)
    return per_q


def cosine_agreement(human, queries, corpus, pairs, model: str = "minilm") -> dict[str, Any]:
    """Kendall tau_b (pair level and per query) and nDCG@10 of ranking each pool by MiniLM cosine."""
    import numpy as np
    from scipy.stats import kendalltau

    from relforge.judge.agreement import evaluate_run
    from relforge.retrieve.common import doc_text
    from relforge.retrieve.dense import load_encoder

    enc = load_encoder(model)
    qids = sorted({q for q, _ in pairs})
    dids = sorted({d for _, d in pairs})
    qe = dict(zip(qids, _encode(enc, [queries[q].text for q in qids]), strict=True))
    de = dict(zip(dids, _encode(enc, [doc_text(corpus[d]) for d in dids]), strict=True))
    cos = [float(np.dot(qe[q], de[d])) for q, d in pairs]
    hum = [human[q][d] for q, d in pairs]
    tau = kendalltau(hum, cos, variant="b").statistic if len(set(hum)) > 1 else float("nan")
    per_q = _per_query_taus(qids, pairs, hum, cos)
    run: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(pairs, cos, strict=True):
        run.setdefault(q, {})[d] = s
    rnd = lambda x: None if x is None or np.isnan(x) else round(float(x), 4)  # noqa: E731
    return {
        "model": model,
        "n": len(pairs),
        "tau_b": rnd(tau),
        "per_query_tau_b": rnd(np.mean(per_q)) if per_q else None,
        "per_query_n": len(per_q),
        "rerank": evaluate_run(human, run, ["nDCG@10"]),
    }
