"""The judge stage: :func:`run` is its one entry point (``relforge judge``, LLM or ``--preset``, and the
pipeline's judge stage), with the helpers the agreement stage shares (the LLM judge with a config, the
preset grading) and ``relforge judge agreement``'s :func:`run_agreement` (judgments vs human qrels)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from relforge.judge.config import JudgeConfig
from relforge.judge.summary import JudgeRecord, PresetRecord


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
    llm_spec: str,
    out: Path,
    adapter: Path | None,
    cache: Any,
    batch_size: int,
    progress: bool,
    llm_options: dict[str, Any] | None,
    engine: Any,
    extra_llms: list[str] | None,
) -> Any:
    """The judge's LLM when the caller hands none over: local, or the Ray engine's over all endpoints."""
    from relforge.errors import UsageError

    if engine is not None and engine.is_ray:
        from relforge.engine.ray_judge import open_engine_llm

        return open_engine_llm(
            engine, [llm_spec, *(extra_llms or [])], out, adapter=adapter, cache=cache, progress=progress
        )
    if extra_llms:
        raise UsageError("several --llm endpoints need --engine ray")
    return open_llm(llm_spec, adapter=adapter, cache=cache, batch_size=batch_size, options=llm_options)


def judge_with_config(
    llm: Any,
    cfg: JudgeConfig,
    template: Any,
    queries: dict,
    docs: dict,
    pairs: list,
    *,
    stats: dict[str, Any],
    progress: bool = True,
    max_new_tokens: int | None = None,
) -> list:
    """:func:`judge_pairs` with the config's settings (the judge stage's and the agreement stage's): all
    pairs in one call for a Ray LLM (one Ray Data job), else ``cfg.batch_size`` per call."""
    from relforge.engine.pipeline import judge_batch_size
    from relforge.judge.judge import judge_pairs

    return judge_pairs(
        llm,
        template,
        queries,
        docs,
        pairs,
        mode=cfg.mode,
        progress=progress,
        thresholds=cfg.thresholds,
        batch_size=judge_batch_size(llm, len(pairs), cfg.batch_size),
        max_doc_tokens=cfg.max_doc_tokens,
        on_missing=cfg.on_missing,
        max_new_tokens=max_new_tokens or cfg.reply_tokens(template),
        retry_temperature=cfg.retry_temperature,
        seed=cfg.seed,
        stats=stats,
    )


def judge_llm_pairs(
    llm: Any,
    cfg: JudgeConfig,
    queries: dict,
    docs: dict,
    pairs: list,
    stats: dict,
    adapter: Path | str | None,
) -> list:
    """The pairs judged by ``llm`` with ``cfg``'s template (its reasoning setting included); documents are
    cut like ``adapter``'s training data unless ``cfg.max_doc_tokens`` is set (agreement's scorers)."""
    _, cfg = resolve_adapter(adapter, cfg)
    return judge_with_config(llm, cfg, cfg.load_template(), queries, docs, pairs, stats=stats)


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


class JudgeInputs(BaseModel):
    """The files a judging run reads: documents, queries and the pairs to grade, either a ``pairs`` file
    (qrels, TREC run or pairs TSV: ``relforge judge --pairs``) or ``positives`` (each query's source
    documents, qrels) plus ``negatives`` (the mined candidates: a pipeline run's ``{qid: [docid, ...]}`` JSON
    or ``relforge retrieve mine``'s JSONL, :func:`relforge.retrieve.mining.read_negatives`)."""

    corpus: Path
    queries: Path
    pairs: Path | None = None
    positives: Path | None = None
    negatives: Path | None = None
    #: LoRA adapter folder, or ``auto``/``shipped`` (the adapter shipped with relforge); None: zero-shot
    adapter: Path | None = None
    #: human qrels to fit the thresholds on (``--calibrate-on``; probs mode)
    calibrate_on: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> JudgeInputs:
        if (self.pairs is None) == (self.positives is None):
            raise ValueError("give either pairs or positives (+ negatives)")
        return self

    def pairs_to_judge(self, top_k: int | None) -> list[tuple[str, str]]:
        """The ``pairs`` file's pairs (a run cut to ``top_k`` per query), or every query's positives then
        its negatives, queries sorted."""
        from relforge.data import read_qrels
        from relforge.judge.judge import read_pairs
        from relforge.retrieve.mining import read_negatives

        if self.pairs is not None:
            return read_pairs(self.pairs, top_k=top_k)
        negs = read_negatives(self.negatives) if self.negatives else {}
        return candidate_pairs(read_qrels(self.positives), negs)

    def pair_sources(self) -> dict[tuple[str, str], str] | None:
        """Where each candidate pair came from: ``positive`` (the query's own document), else its mined
        record's ``source`` (the retrieval method, ``random``; ``unknown`` from an old file); None for a
        ``pairs`` file (which does not say)."""
        if self.pairs is not None:
            return None
        from relforge.data import read_qrels
        from relforge.retrieve.candidates import POSITIVE, read_candidates

        out = (
            {(r.query_id, r.doc_id): r.source for r in read_candidates(self.negatives)}
            if self.negatives
            else {}
        )
        for qid, docs in read_qrels(self.positives).items():
            out.update({(qid, d): POSITIVE for d in docs})
        return out


def count_sources(
    pairs: Iterable[tuple[str, str]], sources: dict[tuple[str, str], str] | None
) -> dict[str, int] | None:
    """The pairs counted by source (:meth:`JudgeInputs.pair_sources`), sources sorted; None without sources."""
    if sources is None:
        return None
    from collections import Counter

    return dict(sorted(Counter(sources.get(p, "unknown") for p in pairs).items()))


def candidate_pairs(positives: dict, negatives: dict) -> list[tuple[str, str]]:
    """Every query's source documents, then its mined negatives, queries sorted."""
    pairs = []
    for qid in sorted(positives):
        pairs += [(qid, d) for d in sorted(positives[qid])]
        pairs += [(qid, d) for d in negatives.get(qid, [])]  # no key: the query has no positive
    return pairs


class JudgeOutputs(BaseModel):
    """Where a judging run writes: the judgments (JSONL), optional TREC qrels, the summary record."""

    judgments: Path
    qrels: Path | None = None
    #: None: ``<judgments>.summary.json`` beside the judgments
    summary: Path | None = None
    #: record the files, template, backend and config in the summary (``relforge judge``); off, the
    #: record names only the adapter and LLM (the pipeline, whose layout and manifest hold the rest)
    record_files: bool = True

    @property
    def summary_path(self) -> Path:
        return self.summary or _summary_path(self.judgments)


class JudgeSummary(BaseModel):
    """What a judging run reports (the pipeline's judge stage counts); ``record`` is the summary file."""

    pairs: int
    unlabelled: int
    #: the preset that graded (None: the LLM judge)
    preset: str | None = None
    #: who graded, in the judgments' ``model`` field (a preset's ``preset:NAME(llm+embedder)``)
    model: str | None = Field(None, exclude=True)
    #: the summary file's content (judging stats + run info), as written
    record: JudgeRecord | PresetRecord | None = Field(None, exclude=True)

    def counts(self) -> dict[str, Any]:
        """The pipeline stage's result: ``pairs``, ``unlabelled`` (+ ``preset``)."""
        return self.model_dump(exclude_unset=True)


def run(
    cfg: JudgeConfig,
    inputs: JudgeInputs,
    out: Path | JudgeOutputs,
    *,
    llm: Any = None,
    llm_spec: str | None = None,
    preset: Any = None,
    cache: Any = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
    llm_options: dict[str, Any] | None = None,
    engine: Any = None,
    extra_llms: list[str] | None = None,
    labeller: str | None = None,
    log: Callable[[str], None] | None = None,
) -> JudgeSummary:
    """Grade ``inputs``' pairs and write the judgments, optional TREC qrels and the summary record: the one
    entry point of ``relforge judge`` and the pipeline's judge stage.

    The LLM judge by default: ``llm`` (an opened LLM, e.g. the pipeline's, shared and cached) or one opened
    from ``llm_spec`` (+ ``cache``, ``llm_options``; ``engine`` with ``kind="ray"`` sends the calls through
    Ray Data to ``llm_spec`` and the ``extra_llms`` endpoints, :mod:`relforge.engine.ray_judge`). With
    ``preset`` (a :class:`~relforge.judge.preset.JudgePreset`, a name or a JSON path) the preset grades
    instead (``cfg``'s ``top_k``, ``on_missing`` and ``batch_size`` apply); ``labeller`` is then recorded
    in a pipeline record, and ``log`` gets the line of its timing."""
    outs = out if isinstance(out, JudgeOutputs) else JudgeOutputs(judgments=Path(out))
    if preset is not None:
        return _run_with_preset(cfg, inputs, outs, preset, progress=progress, labeller=labeller, log=log)
    from relforge.data import read_corpus, read_queries
    from relforge.errors import UsageError
    from relforge.judge.judge import write_judgment_qrels, write_judgments

    if inputs.calibrate_on is not None and cfg.mode != "probs":
        raise UsageError("--calibrate-on fits thresholds on the expected grade: it needs --mode probs")
    if llm is None and llm_spec is None:
        raise UsageError("the LLM judge needs an LLM (--llm) or a preset (--preset)")
    template = cfg.load_template()
    adapter, cfg = resolve_adapter(inputs.adapter, cfg)
    docs, qs = read_corpus(inputs.corpus), read_queries(inputs.queries)
    todo = inputs.pairs_to_judge(cfg.top_k)
    own = llm is None
    if own:
        args = (outs.judgments, adapter, cache, cfg.batch_size, progress, llm_options, engine, extra_llms)
        llm = _open_run_llm(llm_spec, *args)
    stats: dict[str, Any] = {}
    try:
        js = judge_with_config(
            llm, cfg, template, qs, docs, todo, stats=stats, progress=progress, max_new_tokens=max_new_tokens
        )
    finally:
        if own and engine is not None and engine.is_ray:
            llm.close()
    if inputs.calibrate_on is not None:
        _calibrate_stats(js, inputs.calibrate_on, template, cfg, stats)
    write_judgments(outs.judgments, js)
    if outs.qrels is not None:
        write_judgment_qrels(outs.qrels, js)
    by_source = count_sources(((j.qid, j.docid) for j in js), inputs.pair_sources())
    if by_source is not None:
        stats["sources"] = by_source
    if outs.record_files:
        stats.update(
            _run_info(llm_spec, llm, adapter, template, inputs.pairs, outs.judgments, outs.qrels, cfg)
        )
    else:
        stats.update(adapter=str(adapter) if adapter else None, llm=llm_spec)
    record = JudgeRecord.model_validate(stats)
    record.write(outs.summary_path)
    unlabelled = sum(1 for j in js if j.grade is None)
    return JudgeSummary(pairs=len(js), unlabelled=unlabelled, model=record.model, record=record)


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
    from relforge.judge.preset import COS_FEATURES, LLM_FEATURES

    names = preset.head.features
    used = (
        (preset.llm, any(f in LLM_FEATURES for f in names)),
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

    from relforge.judge.preset import COS_FEATURES, LLM_FEATURES, compute_features, load_embedder, query_text

    names = preset.head.features
    uses_llm, uses_emb = any(f in LLM_FEATURES for f in names), any(f in COS_FEATURES for f in names)
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
            probe=preset.probe,
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


def grade_with_preset(
    preset: Any,
    queries: dict,
    docs: dict,
    pairs: list,
    *,
    on_missing: str = "error",
    batch_size: int = 16,
    progress: bool = True,
    source: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Distinct ``pairs`` checked against the ids (``on_missing``), then graded by the preset
    (:func:`judge_with_preset`): ``(rows, info)``, ``info`` counting ``skipped_unknown``; ``log`` gets the
    line of its timing."""
    from relforge.judge.judge import check_pairs

    todo = list(dict.fromkeys(pairs))
    known, unknown = check_pairs(todo, queries, docs, on_missing=on_missing, source=source)
    rows, info = judge_with_preset(preset, queries, docs, known, batch_size=batch_size, progress=progress)
    if log is not None:
        log(
            f"preset {preset.name} ({info['model']}) graded {info['pairs']} pairs in {info['seconds']:.1f} s"
            f" = {info['pairs_per_s']} pairs/s"
            + (f"; {len(unknown)} pairs with unknown ids skipped" if unknown else "")
        )
    return rows, {**info, "skipped_unknown": len(unknown)}


def _run_with_preset(
    cfg: JudgeConfig,
    inputs: JudgeInputs,
    outs: JudgeOutputs,
    preset: Any,
    *,
    progress: bool,
    labeller: str | None,
    log: Callable[[str], None] | None,
) -> JudgeSummary:
    """:func:`run` with a preset: its features for every distinct pair, graded by its calibration head."""
    from collections import Counter

    from relforge.data import read_corpus, read_queries
    from relforge.judge.preset import JudgePreset

    if not isinstance(preset, JudgePreset):
        preset = JudgePreset.load(preset)
    docs, qs = read_corpus(inputs.corpus), read_queries(inputs.queries)
    source = str(inputs.pairs) if inputs.pairs is not None else None
    rows, info = grade_with_preset(
        preset,
        qs,
        docs,
        inputs.pairs_to_judge(cfg.top_k),
        on_missing=cfg.on_missing,
        batch_size=cfg.batch_size,
        progress=progress,
        source=source,
        log=log,
    )
    write_preset_judgments(outs.judgments, rows, outs.qrels)
    if outs.record_files:
        grades = Counter(r["grade"] for r in rows)
        record = {
            **{k: v for k, v in info.items() if k != "model"},
            "grades": {str(v): grades.get(v, 0) for v in preset.head.values},
            "pairs_file": source,
            "out": str(outs.judgments),
            "qrels_out": str(outs.qrels) if outs.qrels else None,
        }
    else:
        record = {**info, **({"labeller": labeller} if labeller is not None else {})}
    by_source = count_sources(((r["qid"], r["docid"]) for r in rows), inputs.pair_sources())
    if by_source is not None:
        record["sources"] = by_source
    rec = PresetRecord.model_validate(record)
    rec.write(outs.summary_path)
    return JudgeSummary(pairs=len(rows), unlabelled=0, preset=preset.name, model=info["model"], record=rec)
