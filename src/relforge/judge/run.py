"""Stage functions behind the ``relforge judge`` commands (files in, files out, a printed summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relforge.judge.config import JudgeConfig


def _summary_path(out: Path) -> Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".summary.json")


def calibrate_judgments(
    judgments: list, human_path: Path, values: list[int], metric: str = "qwk"
) -> list[float]:
    """Fit thresholds on the judged pairs that ``human_path`` grades, and re-grade every judgment with them."""
    from relforge.data import read_qrels
    from relforge.errors import DataError
    from relforge.judge.calibrate import apply_thresholds, fit_thresholds

    human = read_qrels(human_path)
    dev = [
        (j.expected, human[j.qid][j.docid])
        for j in judgments
        if j.expected is not None and j.docid in human.get(j.qid, {})
    ]
    if len(dev) < 2:
        raise DataError(
            f"only {len(dev)} judged pairs are graded in the calibration qrels; need at least 2",
            path=human_path,
        )
    th = fit_thresholds([e for e, _ in dev], [g for _, g in dev], values=values, metric=metric)
    for j, g in zip(judgments, apply_thresholds([j.expected for j in judgments], th, values), strict=True):
        j.grade = g
    return th


def open_llm(
    spec: str,
    *,
    adapter: Path | str | None = None,
    cache: Any = None,
    batch_size: int = 8,
    options: dict[str, Any] | None = None,
) -> Any:
    """``load_llm`` with the judge's defaults: the default cache unless ``cache`` is a path or False;
    for local transformers models, shared-prompt-prefix KV reuse on and the backend's own progress bar off."""
    from relforge.llm import load_llm, parse_spec

    kw: dict[str, Any] = {}
    if cache is not None:
        kw["cache"] = cache
    if parse_spec(spec)[0] == "hf":
        kw.update(prefix_sharing=True, progress=False)
    kw.update(options or {})
    return load_llm(spec, adapter=str(adapter) if adapter else None, batch_size=batch_size, **kw)


def resolve_adapter(adapter: Path | str | None, cfg: JudgeConfig) -> tuple[Path | None, JudgeConfig]:
    """``auto``/``shipped`` -> the adapter shipped in the package; an adapter's ``relforge.json`` supplies
    ``max_doc_tokens`` when the config leaves it unset, so a tuned judge sees documents cut as in training."""
    import json

    if adapter is None:
        return None, cfg
    if str(adapter) in ("auto", "shipped"):
        from relforge.judge.finetune import shipped_adapter_dir

        adapter = shipped_adapter_dir()
    adapter = Path(adapter)
    meta_file = adapter / "relforge.json"
    if cfg.max_doc_tokens is None and meta_file.exists():
        budget = json.loads(meta_file.read_text(encoding="utf-8")).get("max_doc_tokens")
        if budget:
            cfg = cfg.model_copy(update={"max_doc_tokens": int(budget)})
    return adapter, cfg


def _open_run_llm(
    cfg: JudgeConfig,
    llm_spec: str,
    out: Path,
    n_pairs: int,
    adapter: Path | None,
    cache: Any,
    progress: bool,
    llm_options: dict[str, Any] | None,
    engine: Any,
    extra_llms: list[str] | None,
) -> tuple[Any, int]:
    """The judge's LLM (local, or the Ray engine's over all endpoints) and the batch size to judge with."""
    from relforge.errors import UsageError

    if engine is not None and engine.is_ray:
        from relforge.engine.ray_judge import open_engine_llm

        llm = open_engine_llm(
            engine, [llm_spec, *(extra_llms or [])], out, adapter=adapter, cache=cache, progress=progress
        )
        return llm, max(1, n_pairs)  # one Ray Data job for the whole run
    if extra_llms:
        raise UsageError("several --llm endpoints need --engine ray")
    llm = open_llm(llm_spec, adapter=adapter, cache=cache, batch_size=cfg.batch_size, options=llm_options)
    return llm, cfg.batch_size


def _judge_todo(
    llm: Any,
    cfg: JudgeConfig,
    template: Any,
    qs: dict,
    docs: dict,
    todo: list,
    batch_size: int,
    max_new_tokens: int | None,
    progress: bool,
    engine: Any,
    stats: dict[str, Any],
) -> list:
    """:func:`judge_pairs` with the config's settings; a Ray engine's LLM is closed afterwards."""
    from relforge.judge.judge import judge_pairs

    try:
        return judge_pairs(
            llm,
            template,
            qs,
            docs,
            todo,
            mode=cfg.mode,
            progress=progress,
            thresholds=cfg.thresholds,
            batch_size=batch_size,
            max_doc_tokens=cfg.max_doc_tokens,
            on_missing=cfg.on_missing,
            max_new_tokens=max_new_tokens or cfg.reply_tokens(template),
            retry_temperature=cfg.retry_temperature,
            seed=cfg.seed,
            stats=stats,
        )
    finally:
        if engine is not None and engine.is_ray:
            llm.close()


def _calibrate_stats(
    js: list, calibrate_on: Path, template: Any, cfg: JudgeConfig, stats: dict[str, Any]
) -> None:
    """Re-grade ``js`` with thresholds fitted on ``calibrate_on``; record them and the summary in ``stats``."""
    from relforge.judge.judge import summarize

    th = calibrate_judgments(js, calibrate_on, template.values, cfg.calibrate_metric)
    stats.update(summarize(js, template))
    stats["thresholds"] = th
    stats["calibrated_on"] = str(calibrate_on)


def _run_info(
    llm_spec: str,
    llm: Any,
    adapter: Path | None,
    template: Any,
    pairs: Path,
    out: Path,
    qrels_out: Path | None,
    cfg: JudgeConfig,
) -> dict[str, Any]:
    """The run's settings for the summary: LLM, backend, adapter, template, files and config."""
    return {
        "llm": llm_spec,
        "llm_backend": llm.describe() if hasattr(llm, "describe") else None,
        "adapter": str(adapter) if adapter else None,
        "template": template.id,
        "pairs_file": str(pairs),
        "out": str(out),
        "qrels_out": str(qrels_out) if qrels_out else None,
        "config": cfg.model_dump(),
    }


def _print_run_summary(stats: dict[str, Any], mode: str, out: Path, qrels_out: Path | None) -> None:
    """The three summary lines of ``relforge judge`` (stderr)."""
    from rich.console import Console

    console = Console(stderr=True)
    console.print(
        f"judged {stats['pairs']} pairs of {stats['queries']} queries with {stats['model']} "
        f"({mode}) in {stats['seconds']:.1f} s = {stats['pairs_per_s']} pairs/s"
        f" ({stats.get('llm_stats', {}).get('hits', 0)} LLM calls answered from the cache)"
    )
    console.print(
        f"grades: {stats['grades']}  unparsed: {stats['unparsed']}  retried: {stats['retried']}  "
        f"skipped (unknown ids): {stats['skipped_unknown']}"
        + (f"  thresholds: {[round(t, 4) for t in stats['thresholds']]}" if stats.get("thresholds") else "")
    )
    console.print(
        f"wrote {out}" + (f" and {qrels_out}" if qrels_out else "") + f" (summary: {_summary_path(out)})"
    )


def run_judge(
    cfg: JudgeConfig,
    *,
    corpus: Path,
    queries: Path,
    pairs: Path,
    llm_spec: str,
    out: Path,
    adapter: Path | None = None,
    qrels_out: Path | None = None,
    cache: Any = None,
    calibrate_on: Path | None = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
    llm_options: dict[str, Any] | None = None,
    engine: Any = None,
    extra_llms: list[str] | None = None,
) -> dict[str, Any]:
    """Judge the pairs of ``pairs`` and write ``out`` (JSONL), ``<out>.summary.json`` and optional TREC qrels.

    ``engine`` (an :class:`relforge.engine.EngineConfig`; None = local) with ``kind="ray"`` sends the calls
    through Ray Data to ``llm_spec`` and the ``extra_llms`` endpoints (:mod:`relforge.engine.ray_judge`).

    Returns:
        The summary dict (also printed).
    """
    from relforge.data import read_corpus, read_queries
    from relforge.data.io import atomic_write
    from relforge.errors import UsageError
    from relforge.judge.judge import read_pairs, write_judgment_qrels, write_judgments

    if calibrate_on is not None and cfg.mode != "probs":
        raise UsageError("--calibrate-on fits thresholds on the expected grade: it needs --mode probs")
    template = cfg.load_template()
    adapter, cfg = resolve_adapter(adapter, cfg)
    docs = read_corpus(corpus)
    qs = read_queries(queries)
    todo = read_pairs(pairs, top_k=cfg.top_k)
    llm, batch_size = _open_run_llm(
        cfg, llm_spec, out, len(todo), adapter, cache, progress, llm_options, engine, extra_llms
    )
    stats: dict[str, Any] = {}
    js = _judge_todo(llm, cfg, template, qs, docs, todo, batch_size, max_new_tokens, progress, engine, stats)
    if calibrate_on is not None:
        _calibrate_stats(js, calibrate_on, template, cfg, stats)
    write_judgments(out, js)
    if qrels_out is not None:
        write_judgment_qrels(qrels_out, js)
    stats.update(_run_info(llm_spec, llm, adapter, template, pairs, out, qrels_out, cfg))
    with atomic_write(_summary_path(out)) as fh:
        json.dump(stats, fh, indent=2, default=str)
    _print_run_summary(stats, cfg.mode, out, qrels_out)
    return stats


def run_agreement(
    *,
    human: Path,
    llm: Path,
    out: Path | None = None,
    png: Path | None = None,
    runs: list[Path] | None = None,
    measure: str = "nDCG@10",
    seed: int = 0,
) -> dict[str, Any]:
    """Compute, print and optionally save the agreement report of ``llm`` judgments vs ``human`` qrels."""
    from rich.console import Console

    from relforge.data import read_qrels, read_run
    from relforge.data.io import atomic_write
    from relforge.errors import UsageError
    from relforge.judge.agreement import agreement, plot_confusion, render_agreement
    from relforge.judge.judge import read_judgments

    if runs and len(runs) < 2:
        raise UsageError(f"--runs needs at least 2 runs to compare system orderings, got {len(runs)}")
    names: dict[str, Any] = {}
    for r in runs or []:
        name = r.stem if r.stem not in names else str(r)
        names[name] = read_run(r)
    hq = read_qrels(human)
    js = read_judgments(llm)
    report = agreement(hq, js, runs=names or None, seed=seed, measure=measure)
    if report["counts"]["matched"] == 0:
        from relforge.errors import DataError

        raise DataError(
            f"no pair of {llm} is graded in {human}: check that both use the same query/document ids",
            path=llm,
        )
    render_agreement(report, Console())
    if out is not None:
        with atomic_write(out) as fh:
            json.dump(report, fh, indent=2)
    if png is not None:
        plot_confusion(report["all"]["confusion"], report["values"], png)
    return report


def _preset_judgments(preset: Any, pairs: list, feats: dict, *, model: str) -> list[dict[str, Any]]:
    """Output lines of a preset run: the judgment fields plus the features that produced them."""
    import numpy as np

    from relforge.judge.judge import Judgment

    head = preset.head
    probs, expected, grades = head.predict({f: feats[f] for f in head.features})
    labels = [str(v) for v in head.values]
    rows = []
    for i, (q, d) in enumerate(pairs):
        j = Judgment(
            qid=q,
            docid=d,
            grade=int(grades[i]),
            expected=float(expected[i]),
            probs={lab: float(p) for lab, p in zip(labels, probs[i], strict=True)},
            mode="preset",
            model=model,
            template_hash="",
        )
        rows.append(
            {
                **j.to_dict(),
                "preset": preset.name,
                "features": {f: float(np.asarray(feats[f])[i]) for f in head.features},
            }
        )
    return rows


def preset_model_name(preset: Any) -> str:
    """``preset:NAME(llm+embedder)``: the models the preset's head actually uses (the judgments' ``model``)."""
    from relforge.judge.preset import COS_FEATURES, QL_FEATURES

    names = preset.head.features
    used = (
        (preset.llm, any(f in QL_FEATURES for f in names)),
        (preset.embedder, any(f in COS_FEATURES for f in names)),
    )
    return f"preset:{preset.name}(" + "+".join(x for x, u in used if u) + ")"


def judge_with_preset(
    preset: Any,
    queries: dict,
    docs: dict,
    pairs: list,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Grade known, distinct ``(qid, docid)`` pairs with a :class:`~relforge.judge.preset.JudgePreset`: its
    features (LLM query likelihood and/or embedding cosine) for every pair, then its calibration head.

    The one preset entry point of ``relforge judge --preset`` and the pipeline's judge/agreement stages.

    Returns:
        ``(rows, info)``: judgment dicts (qid, docid, grade, expected, probs, mode, model, preset, features)
        and run info (preset, description, features, llm/embedder used, pairs, seconds, pairs_per_s).
    """
    import time

    from relforge.judge.preset import COS_FEATURES, QL_FEATURES, compute_features, load_embedder, query_text

    names = preset.head.features
    uses_llm, uses_emb = any(f in QL_FEATURES for f in names), any(f in COS_FEATURES for f in names)
    t0 = time.time()
    llm = _preset_llm(preset, batch_size) if uses_llm and pairs else None
    if llm is not None and hasattr(llm, "progress"):
        llm.progress = progress
    emb = load_embedder(preset.embedder) if uses_emb and pairs else None
    feats = (
        compute_features(
            names,
            [query_text(queries[q], preset.query_field) for q, _ in pairs],
            [docs[d] for _, d in pairs],
            llm=llm,
            embedder=emb,
            ql_max_doc_tokens=preset.ql_max_doc_tokens,
            ql_instruction=preset.ql_instruction,
        )
        if pairs
        else {}
    )
    secs = time.time() - t0
    rows = _preset_judgments(preset, pairs, feats, model=preset_model_name(preset)) if pairs else []
    info = {
        "preset": preset.name,
        "description": preset.description,
        "features": names,
        "llm": preset.llm if uses_llm else None,
        "embedder": preset.embedder if uses_emb else None,
        "llm_backend": llm.describe() if llm is not None and hasattr(llm, "describe") else None,
        "model": preset_model_name(preset),
        "pairs": len(rows),
        "queries": len({r["qid"] for r in rows}),
        "seconds": round(secs, 2),
        "pairs_per_s": round(len(rows) / secs, 3) if secs > 0 and rows else None,
    }
    return rows, info


def _preset_llm(preset: Any, batch_size: int) -> Any:
    """The preset's LLM, uncached, in the preset's precision when it is a local transformers model (a
    server keeps its own)."""
    from relforge.llm import parse_spec

    local = parse_spec(preset.llm)[0] == "hf"
    options = {"precision": preset.precision} if local else None
    return open_llm(preset.llm, cache=False, batch_size=batch_size, options=options)


def write_preset_judgments(path: Path, rows: list[dict[str, Any]], qrels_out: Path | None = None) -> None:
    """The rows of :func:`judge_with_preset` as JSONL (atomically), and optionally their grades as TREC qrels."""
    from relforge.data.io import atomic_write
    from relforge.judge.judge import Judgment, write_judgment_qrels

    with atomic_write(path) as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    if qrels_out is not None:
        write_judgment_qrels(qrels_out, [Judgment.from_dict(r) for r in rows])


def run_preset(
    preset_name: str | Path,
    *,
    corpus: Path,
    queries: Path,
    pairs: Path,
    out: Path,
    qrels_out: Path | None = None,
    top_k: int | None = None,
    on_missing: str = "error",
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """``relforge judge --preset NAME``: compute the preset's features for every distinct pair and grade them
    with its calibration head; writes ``out`` (JSONL: qid, docid, grade, expected, probs, features),
    ``<out>.summary.json`` and optional TREC qrels."""
    from collections import Counter

    from rich.console import Console

    from relforge.data import read_corpus, read_queries
    from relforge.data.io import atomic_write
    from relforge.judge.judge import check_pairs, read_pairs
    from relforge.judge.preset import JudgePreset

    preset = JudgePreset.load(preset_name)
    docs, qs = read_corpus(corpus), read_queries(queries)
    todo = list(dict.fromkeys(read_pairs(pairs, top_k=top_k)))
    known, unknown = check_pairs(todo, qs, docs, on_missing=on_missing, source=str(pairs))
    rows, info = judge_with_preset(preset, qs, docs, known, batch_size=batch_size, progress=progress)
    write_preset_judgments(out, rows, qrels_out)
    grades = Counter(r["grade"] for r in rows)
    stats = {
        **{k: v for k, v in info.items() if k != "model"},
        "skipped_unknown": len(unknown),
        "grades": {str(v): grades.get(v, 0) for v in preset.head.values},
        "pairs_file": str(pairs),
        "out": str(out),
        "qrels_out": str(qrels_out) if qrels_out else None,
    }
    with atomic_write(_summary_path(out)) as fh:
        json.dump(stats, fh, indent=2)
    console = Console(stderr=True)
    console.print(
        f"judged {stats['pairs']} pairs of {stats['queries']} queries with {info['model']} in "
        f"{info['seconds']:.1f} s = {stats['pairs_per_s']} pairs/s; grades: {stats['grades']}; "
        f"skipped (unknown ids): {len(unknown)}"
    )
    console.print(
        f"wrote {out}" + (f" and {qrels_out}" if qrels_out else "") + f" (summary: {_summary_path(out)})"
    )
    return stats
