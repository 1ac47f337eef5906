"""The real pipeline stages, wired to the stage packages (imported lazily inside each stage body).

Every artifact path is named once in :mod:`relforge.pipeline.layout`, which also describes the run
folder's layout.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relforge.config import (
    EvalConfig,
    FinetuneConfig,
    GenerateConfig,
    GroupConfig,
    PipelineConfig,
    RetrieveConfig,
    TrainConfig,
    stage_part,
)
from relforge.errors import MissingInputError, UsageError
from relforge.pipeline import layout
from relforge.pipeline.runner import Stage, StageContext

# --------------------------------------------------------------------------- shared


#: display names of the evaluated systems (keys of eval/metrics.json runs), in table order
SYSTEMS = {
    "bm25": "BM25",
    "dense": "dense (MiniLM cosine)",
    "hybrid": "hybrid (RRF)",
    "backbone": "untrained backbone",
    "plain": "reranker, mined negatives (no judge)",
    "judged": "reranker, judge re-bucketed",
    "soft": "reranker, judge soft labels",
}
#: training variants in table order
VARIANTS = ("plain", "judged", "soft")


def _write_json(path: Path, obj: Any) -> None:
    from relforge.data import atomic_write

    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _dump(model: Any) -> Any:
    """A config section as JSON-able data (what goes into a stage's config hash)."""
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


def resolve_data_source(source: str, key: str = "data.source") -> Path:
    """``sample:<name>`` -> the packaged sample folder; anything else a path that must exist (the error
    names the config ``key`` holding it)."""
    if source.startswith("sample:"):
        from relforge.data.samples import sample_path

        return Path(sample_path(source.split(":", 1)[1]))
    p = Path(source).expanduser()
    if not p.exists():
        raise MissingInputError(
            f"{key}: {source!r} does not exist; set {key} to "
            + (
                "sample:medquad, a MedQuAD .tar.xz / folder, or a BEIR folder"
                if key == "data.source"
                else "sample:liveqa-med or a BEIR folder with human qrels"
            )
        )
    return p.resolve()


def _read_labelled(folder: Path):
    """A human-labelled BEIR folder (not written by relforge): qrels in ``qrels.tsv``, ``qrels/test.tsv``
    or ``qrels/dev.tsv``, the first that exists."""
    from relforge.data import read_corpus, read_qrels, read_queries

    for q in (folder / "qrels.tsv", folder / "qrels" / "test.tsv", folder / "qrels" / "dev.tsv"):
        if q.exists():
            return read_corpus(folder / "corpus.jsonl"), read_queries(folder / "queries.jsonl"), read_qrels(q)
    raise MissingInputError(f"{folder}: no qrels.tsv or qrels/test.tsv with human labels")


def _group_variants(cfg: PipelineConfig) -> list[str]:
    """The variants whose groups are built: those trained and those of the ablation, in table order."""
    return sorted(
        set(cfg.train.variants) | set(cfg.ablation.variants if cfg.ablation.sizes else []),
        key=VARIANTS.index,
    )


def _backbone(cfg: PipelineConfig) -> str:
    """The untrained start every variant trains from (``train.base``); reranked as the ``backbone``."""
    return cfg.train.base


Qrels = dict[str, dict[str, int]]


# --------------------------------------------------------------------------- import


def _open_source(ctx: StageContext, summary: dict[str, Any]) -> Path:
    """The BEIR folder of ``data.source`` (a MedQuAD archive or folder is converted to ``data/medquad``)."""
    cfg: PipelineConfig = ctx.cfg
    src = resolve_data_source(cfg.data.source)
    if src.is_dir() and (src / "corpus.jsonl").exists():
        return src
    from relforge.data.medquad import import_medquad

    beir = ctx.path(layout.MEDQUAD_DIR)
    ctx.log(f"importing MedQuAD from {src}")
    imp = import_medquad(src, beir, seed=cfg.data.seed)
    summary["medquad"] = {k: imp.get(k) for k in ("answered_pairs", "skipped_total", "splits")}
    return beir


def _split_qrels(beir: Path, splits: str, key: str) -> Qrels:
    """The qrels of the comma-separated ``splits`` (the error names the config key ``data.<key>``)."""
    from relforge.data import read_qrels

    qrels: Qrels = {}
    for split in [x.strip() for x in splits.split(",") if x.strip()]:
        qrels_file = beir / "qrels" / f"{split}.tsv"
        if not qrels_file.exists():
            raise MissingInputError(
                f"{qrels_file}: no such qrels split; set data.{key} to one or more "
                f"(comma-separated) of {sorted(p.stem for p in (beir / 'qrels').glob('*.tsv'))}"
            )
        for q, docs in read_qrels(qrels_file).items():
            qrels.setdefault(q, {}).update(docs)
    return qrels


def _eligible(qrels: Qrels, queries, corpus, exclude: set[str] = frozenset()) -> list[str]:
    """The questions (not in ``exclude``) with a relevant document in the corpus, sorted."""
    return sorted(
        q
        for q, docs in qrels.items()
        if q in queries and q not in exclude and any(g > 0 and d in corpus for d, g in docs.items())
    )


def _sample(qids: list[str], cap: int | None, rng: random.Random) -> list[str]:
    return sorted(rng.sample(qids, cap)) if cap is not None and len(qids) > cap else qids


def _in_corpus(qrels: Qrels, qids: list[str], corpus) -> Qrels:
    return {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in qids}


def _pick(
    beir: Path, queries, corpus, splits: str, name: str, cap: int | None, exclude: set[str], rng
) -> Qrels:
    """Questions of ``splits`` (not in ``exclude``) with a relevant document, at most ``cap``."""
    got = _split_qrels(beir, splits, f"{name}_split")
    qids = _eligible(got, queries, corpus, exclude=exclude)
    if not qids:
        raise UsageError(f"data.{name}_split {splits!r} has no question with a relevant document")
    return _in_corpus(got, _sample(qids, cap, rng), corpus)


def _kept_docs(corpus, max_docs: int | None, rng: random.Random, *qrels: Qrels) -> set[str]:
    """The documents kept: all, or (``data.max_docs``) every judged one plus a sample of the rest."""
    if max_docs is None or len(corpus) <= max_docs:
        return set(corpus)
    needed = {d for part in qrels for docs in part.values() for d in docs}
    rest = sorted(set(corpus) - needed)
    fill = max(0, max_docs - len(needed))
    return needed | set(rng.sample(rest, min(fill, len(rest))))


def _write_questions(ctx: StageContext, queries_rel: str, qrels_rel: str, queries, qrels: Qrels) -> None:
    """The questions of ``qrels`` (sorted by id) and their qrels."""
    from relforge.data import write_qrels, write_queries

    write_queries(ctx.path(queries_rel), [queries[q] for q in sorted(qrels)])
    write_qrels(ctx.path(qrels_rel), qrels)


@dataclass
class _Questions:
    """The human questions picked: held out for evaluation, and (optional) for training and dev."""

    test_eligible: list[str]
    test: Qrels
    train: Qrels
    dev: Qrels


def _pick_questions(beir: Path, queries, corpus, dc, rng: random.Random) -> _Questions:
    """Test, then train and dev questions (each excluding the ones picked before), from one ``rng``."""
    qrels = _split_qrels(beir, dc.test_split, "test_split")
    test_eligible = _eligible(qrels, queries, corpus)
    test = _in_corpus(qrels, _sample(test_eligible, dc.test_queries, rng), corpus)
    train: Qrels = {}
    if dc.train_split:
        train = _pick(beir, queries, corpus, dc.train_split, "train", dc.train_queries, set(test), rng)
        train = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in train.items()}
    dev: Qrels = {}
    if dc.dev_split:
        dev = _pick(beir, queries, corpus, dc.dev_split, "dev", dc.dev_queries, set(test) | set(train), rng)
    return _Questions(test_eligible, test, train, dev)


def stage_import(ctx: StageContext) -> dict[str, Any]:
    """Copy/convert the data source to ``data/`` and pick the held-out human evaluation questions."""
    from relforge.data import read_corpus, read_queries, write_corpus

    cfg: PipelineConfig = ctx.cfg
    dc = cfg.data
    summary: dict[str, Any] = {"source": dc.source}
    beir = _open_source(ctx, summary)
    corpus = read_corpus(beir / "corpus.jsonl")
    queries = read_queries(beir / "queries.jsonl")
    rng = random.Random(dc.seed)  # one stream, drawn in this order: test, train, dev questions, documents
    qs = _pick_questions(beir, queries, corpus, dc, rng)
    keep = _kept_docs(corpus, dc.max_docs, rng, qs.test, qs.train, qs.dev)
    docs = [corpus[d] for d in sorted(keep)]
    write_corpus(ctx.path(layout.CORPUS), docs)
    _write_questions(ctx, layout.TEST_QUERIES, layout.TEST_QRELS, queries, qs.test)
    if dc.train_split:
        _write_questions(ctx, layout.TRAIN_QUERIES, layout.TRAIN_QRELS, queries, qs.train)
        summary.update(train_split=dc.train_split, train_queries=len(qs.train))
    if dc.dev_split:
        _write_questions(ctx, layout.DEV_QUERIES, layout.DEV_QRELS, queries, qs.dev)
        summary.update(dev_split=dc.dev_split, dev_queries=len(qs.dev))
    summary.update(
        documents=len(docs),
        documents_in_source=len(corpus),
        test_queries=len(qs.test),
        test_queries_eligible=len(qs.test_eligible),
        test_split=dc.test_split,
        test_judgments=sum(len(v) for v in qs.test.values()),
    )
    _write_json(ctx.path(layout.DATA_SUMMARY), summary)
    return {"documents": len(docs), "test_queries": len(qs.test)}


# --------------------------------------------------------------------------- generate


def _human_training_queries(ctx: StageContext) -> dict[str, Any]:
    """``data.train_split``: the human questions stand in for generated ones (no LLM)."""
    from relforge.data import read_qrels, read_queries, write_qrels, write_queries

    queries = read_queries(ctx.path(layout.TRAIN_QUERIES))
    qrels = read_qrels(ctx.path(layout.TRAIN_QRELS))
    write_queries(ctx.path(layout.GEN_QUERIES), list(queries.values()))
    write_qrels(ctx.path(layout.GEN_QRELS), qrels)
    summary = {"source": f"human questions, split {ctx.cfg.data.train_split!r}", "kept": len(queries)}
    _write_json(ctx.path(layout.GEN_SUMMARY), summary)
    return {"queries": len(queries), "documents": len({d for v in qrels.values() for d in v})}


def stage_generate(ctx: StageContext) -> dict[str, Any]:
    """Synthetic queries for (a sample of) the corpus."""
    from relforge.data import read_corpus, write_jsonl, write_qrels, write_queries
    from relforge.generate import generate_queries, select_documents

    cfg: PipelineConfig = ctx.cfg
    if cfg.data.train_split:
        return _human_training_queries(ctx)
    corpus = read_corpus(ctx.path(layout.CORPUS))
    gc = stage_part(cfg.generate, GenerateConfig)
    sel_stats: dict[str, Any] = {}
    docs = select_documents(corpus, gc.select, stats=sel_stats)
    from relforge.engine.pipeline import stage_llm

    llm = stage_llm(ctx, cfg.llm_for("generate")) or ctx.llm(
        cfg.llm_for("generate"), batch_size=cfg.llm.batch_size, **cfg.llm_options("generate")
    )
    res = generate_queries(llm, docs, gc, corpus=corpus)
    write_jsonl(ctx.path(layout.GEN_REJECTED), res.rejected)
    if not res.queries:
        raise UsageError(
            f"query generation kept no query (summary: {res.summary}); loosen generate.filters or "
            f"use a stronger generate.llm"
        )
    write_queries(ctx.path(layout.GEN_QUERIES), res.queries)
    write_qrels(ctx.path(layout.GEN_QRELS), res.qrels)
    _write_json(ctx.path(layout.GEN_SUMMARY), res.summary)
    return {"queries": len(res.queries), "documents": len(res.qrels)}


# --------------------------------------------------------------------------- retrieve


def _write_first_stage_runs(ctx: StageContext, runs, synth, test, dev) -> dict:
    """candidates.trec (the synthetic queries' candidates) and test-/dev-<method>.trec; the candidates."""
    from relforge.data import write_run

    rc = ctx.cfg.retrieve
    cand = {q: runs[rc.method].get(q, {}) for q in synth}
    write_run(ctx.path(layout.CANDIDATES), cand, tag=rc.method)
    for m in rc.methods:
        write_run(ctx.path(layout.first_stage_test(m)), {q: runs[m].get(q, {}) for q in test}, tag=m)
        if dev:  # the dev questions' first stage: reranked when choosing checkpoints (stage train)
            write_run(ctx.path(layout.first_stage_dev(m)), {q: runs[m].get(q, {}) for q in dev}, tag=m)
    return cand


def stage_retrieve(ctx: StageContext) -> dict[str, Any]:
    """First-stage runs for synthetic and held-out questions; hard-negative candidates for the judge."""
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.retrieve.dense import encoder_plan
    from relforge.retrieve.mining import mine_negatives
    from relforge.retrieve.search import retrieve_methods

    cfg: PipelineConfig = ctx.cfg
    rc = cfg.retrieve
    corpus = read_corpus(ctx.path(layout.CORPUS))
    synth = read_queries(ctx.path(layout.GEN_QUERIES))
    test = read_queries(ctx.path(layout.TEST_QUERIES))
    dev = read_queries(ctx.path(layout.DEV_QUERIES)) if cfg.data.dev_split else {}
    where = {"index_dir": str(ctx.path(layout.BM25_INDEX)), "cache_dir": str(ctx.path(layout.EMBEDDINGS))}
    settings = stage_part(rc, RetrieveConfig, **where)
    methods = list(dict.fromkeys([*rc.methods, rc.method]))
    runs = retrieve_methods(corpus, {**synth, **test, **dev}, settings, methods, engine=cfg.engine)
    cand = _write_first_stage_runs(ctx, runs, synth, test, dev)
    positives = read_qrels(ctx.path(layout.GEN_QRELS))
    stats: dict[str, Any] = {}
    negs = mine_negatives(cand, positives, rc.mining, corpus_ids=list(corpus), stats=stats)
    _write_json(ctx.path(layout.NEGATIVES), negs)
    dense = {"dense": encoder_plan(rc.precision).metadata()} if {"dense", "hybrid"} & set(methods) else {}
    _write_json(
        ctx.path(layout.RETRIEVE_SUMMARY),
        {"mining": stats, "methods": rc.methods, "candidates": rc.method, "top_k": rc.top_k, **dense},
    )
    return {
        "synthetic_queries": len(synth),
        "test_queries": len(test),
        **({"dev_queries": len(dev)} if dev else {}),
        "queries_with_negatives": len(negs),
        "negatives": sum(len(v) for v in negs.values()),
    }


# --------------------------------------------------------------------------- judge


SHIPPED_ADAPTER = "smollm2-liveqa"


# --------------------------------------------------------------------------- adapter / preset


def shipped_adapter_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("relforge.judge") / "adapters" / SHIPPED_ADAPTER))


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


def _adapter_abs(ctx: StageContext, adapter: str | None) -> str | None:
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


def _adapter_meta(adapter: str | None) -> dict[str, Any]:
    """The adapter's ``relforge.json`` ({} without an adapter, or for one trained elsewhere)."""
    if adapter is None:
        return {}
    f = Path(adapter) / "relforge.json"
    return _read_json(f) if f.exists() else {}


def _validation_qids(meta: dict[str, Any]) -> list[str] | None:
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


def _judge_llm(ctx: StageContext, adapter: str | None):
    from relforge.engine.pipeline import stage_llm

    cfg: PipelineConfig = ctx.cfg
    return stage_llm(ctx, cfg.llm_for("judge"), adapter) or ctx.llm(
        cfg.llm_for("judge"), adapter=adapter, batch_size=cfg.llm.batch_size, **cfg.llm_options("judge")
    )


def _judge(ctx: StageContext, llm, queries, corpus, pairs, stats: dict, adapter: str | None = None) -> list:
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


def _preset_judge(ctx: StageContext, preset, queries, corpus, pairs) -> tuple[list, dict[str, Any]]:
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
    corpus, queries, qrels = _read_labelled(resolve_data_source(ft.data, "judge_finetune.data"))
    base = ft.base or cfg.llm_for("judge")
    out = str(ctx.path(layout.JUDGE_FINETUNE))
    res = finetune_judge(base, corpus, queries, qrels, out, stage_part(ft, FinetuneConfig))
    _write_json(ctx.path(layout.JUDGE_FINETUNE_SUMMARY), res)
    return {k: v for k, v in res.items() if isinstance(v, (int, float, str))}


def _judge_pairs_todo(ctx: StageContext, positives) -> list[tuple[str, str]]:
    """Every synthetic query's source documents, then its mined negatives, queries sorted."""
    negs = _read_json(ctx.path(layout.NEGATIVES))
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

        rows, info = _preset_judge(ctx, preset, queries, corpus, pairs)
        write_preset_judgments(ctx.path(layout.JUDGMENTS), rows, ctx.path(layout.JUDGE_QRELS))
        _write_json(ctx.path(layout.JUDGE_SUMMARY), {**info, "labeller": judge_labeller(cfg)})
        return {"pairs": len(rows), "unlabelled": 0, "preset": preset.name}
    adapter = _adapter_abs(ctx, judge_adapter(cfg))
    llm = _judge_llm(ctx, adapter)
    stats: dict[str, Any] = {}
    js = _judge(ctx, llm, queries, corpus, pairs, stats, adapter)
    write_judgments(ctx.path(layout.JUDGMENTS), js)
    write_judgment_qrels(ctx.path(layout.JUDGE_QRELS), js)
    stats.update(adapter=adapter, llm=cfg.llm_for("judge"))
    _write_json(ctx.path(layout.JUDGE_SUMMARY), stats)
    return {"pairs": len(js), "unlabelled": sum(1 for j in js if j.grade is None)}


# --------------------------------------------------------------------------- agreement


def _agreement_qids(ctx: StageContext, human, adapter: str | None) -> tuple[list[str], str]:
    """The labelled queries compared on and how they were chosen (``judge.agreement.queries``)."""
    cfg: PipelineConfig = ctx.cfg
    qids = sorted(human)
    if cfg.judge.agreement.queries != "adapter":
        return qids, "all"
    src = adapter if cfg.judge.preset is None else str(shipped_adapter_dir())
    val = _validation_qids(_adapter_meta(src if src and Path(src).exists() else None))
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

    rows, info = _preset_judge(ctx, preset, queries, corpus, pairs)
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
    js = _judge(ctx, _judge_llm(ctx, adapter), queries, corpus, pairs, stats, adapter)
    if ctx.cfg.judge.agreement.zero_shot and adapter is not None:
        zs = _judge(ctx, _judge_llm(ctx, None), queries, corpus, pairs, {}, adapter)
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
    corpus, queries, human = _read_labelled(
        resolve_data_source(cfg.judge.agreement.human, "judge.agreement.human")
    )
    adapter = _adapter_abs(ctx, judge_adapter(cfg))
    pairs, sub, meta = _agreement_pairs(ctx, human, corpus, queries, adapter)
    preset = judge_preset(cfg)
    if preset is not None:
        out = {"judge": _preset_agreement(ctx, preset, queries, corpus, pairs, sub, meta)}
    else:
        out = _llm_agreement(ctx, adapter, queries, corpus, pairs, sub, meta)
    out["minilm_cosine"] = {**cosine_agreement(sub, queries, corpus, pairs), **meta}
    out["minilm_cosine"].pop("labeller", None)
    _plot_confusions(ctx, out)
    _write_json(ctx.path(layout.AGREEMENT), out)
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
        _write_json(ctx.path(layout.JUDGE_FINETUNE_SOURCE), {"adapter": adapter, "trained_here": False})


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


# --------------------------------------------------------------------------- groups


def _candidate_run(ctx: StageContext) -> tuple[dict, dict]:
    """The candidates run restricted to each query's positives + mined negatives (what the judge saw)."""
    from relforge.data import read_qrels, read_run

    run = read_run(ctx.path(layout.CANDIDATES))
    positives = read_qrels(ctx.path(layout.GEN_QRELS))
    negs = _read_json(ctx.path(layout.NEGATIVES))
    out: dict[str, dict[str, float]] = {}
    for qid in positives:
        keep = list(positives[qid]) + list(negs.get(qid, []))  # no key: the query has no positive
        scores = run.get(qid, {})
        floor = min(scores.values(), default=0.0) - 1.0
        # random negatives may be outside the run: rank them after the retrieved ones, in mined order
        out[qid] = {d: scores.get(d, floor - i * 1e-3) for i, d in enumerate(keep)}
    return out, positives


def _variant_groups(ctx: StageContext, variant: str, gc, queries, positives, run, corpus):
    """The groups of one variant: plain (no judge), judged (the judge's buckets) or soft (soft policies)."""
    from relforge.dataset import build_groups
    from relforge.dataset.groups import policy_lines
    from relforge.judge.judge import read_judgments

    cfg: PipelineConfig = ctx.cfg
    js = read_judgments(ctx.path(layout.JUDGMENTS)) if variant != "plain" else None
    vc = gc.model_copy(update=cfg.groups.soft_policies) if variant == "soft" else gc
    ds, summary = build_groups(queries, positives, run, corpus, js, type(gc)(**vc.model_dump()))
    if js is not None:
        for line in policy_lines(summary, f"groups {variant}"):
            ctx.log(line)
    if len(ds) == 0:
        raise UsageError(
            f"{variant} groups: no group could be built (summary: {summary['dropped_queries']}); "
            f"lower groups.group_size or groups.min_positive_grade, or generate more queries"
        )
    return ds, summary


def stage_groups(ctx: StageContext) -> dict[str, Any]:
    """LCE groups twice: plain mined negatives (no judge) and the judge's re-bucketed candidates."""
    from relforge.data import read_corpus, read_queries
    from relforge.dataset import write_groups

    cfg: PipelineConfig = ctx.cfg
    corpus = read_corpus(ctx.path(layout.CORPUS))
    queries = read_queries(ctx.path(layout.GEN_QUERIES))
    run, positives = _candidate_run(ctx)
    gc = stage_part(cfg.groups, GroupConfig)
    res: dict[str, Any] = {}
    summaries: dict[str, dict] = {}
    for variant in _group_variants(cfg):
        ds, summary = _variant_groups(ctx, variant, gc, queries, positives, run, corpus)
        write_groups(ds, summary, ctx.path(layout.dataset(variant)))
        res[f"{variant}_groups"] = len(ds)
        summaries[variant] = summary
    _write_json(ctx.path(layout.DATASET_SUMMARY), bucket_summary(summaries))
    return res


def bucket_summary(summaries: dict[str, dict]) -> dict[str, Any]:
    """``dataset/summary.json`` for the report: the judged buckets first, then flat counts per variant.

    ``summaries``: per variant, the summary :func:`relforge.dataset.build_groups` returns."""
    main = summaries.get("judged") or next(iter(summaries.values()))
    out: dict[str, Any] = {"buckets": main["candidates"]}
    for variant, s in summaries.items():
        out[f"groups_{variant}"] = s["groups"]
        out[f"queries_kept_{variant}"] = s["queries_kept"]
        out[f"negatives_drawn_{variant}"] = s["negatives_drawn"]
        out[f"dropped_queries_{variant}"] = s["dropped_queries"]
    out["queries_in"] = main["queries_in"]
    out["group_size"] = main["group_size"]
    if "judged" in summaries:
        out["positives_judged"] = summaries["judged"]["positives"]
    for variant, s in summaries.items():
        for rule, d in s["policies"].items():
            if s["judged"]:
                out[f"policy_{variant}_{rule}"] = d
    return out


# --------------------------------------------------------------------------- train


def _train(
    ctx: StageContext, groups, out_rel: str, variant: str = "plain", dev=None, **overrides: Any
) -> dict[str, Any]:
    """Train one variant (``dev``: the :func:`_dev_set` that chooses its checkpoint, or None)."""
    from relforge.train import train_bi_encoder, train_cross_encoder

    cfg: PipelineConfig = ctx.cfg
    if variant == "soft":
        overrides["loss"] = cfg.train.soft_loss
    tc = stage_part(cfg.train, TrainConfig, **overrides)
    fn = train_bi_encoder if tc.kind == "bi" else train_cross_encoder
    return fn(groups, str(ctx.path(out_rel)), tc, dev=dev) or {}


def _dev_set(ctx: StageContext):
    """The human dev questions (``data.dev_split``) with the reranked first stage's top-k, or None."""
    from relforge.data import read_corpus, read_qrels, read_queries, read_run
    from relforge.train import DevSet

    cfg: PipelineConfig = ctx.cfg
    if not cfg.data.dev_split:
        return None
    return DevSet(
        corpus=read_corpus(ctx.path(layout.CORPUS)),
        queries=read_queries(ctx.path(layout.DEV_QUERIES)),
        qrels=read_qrels(ctx.path(layout.DEV_QRELS)),
        run=read_run(ctx.path(layout.first_stage_dev(cfg.rerank.first_stage))),
        top_k=cfg.rerank.top_k,
    )


def stage_train(ctx: StageContext) -> dict[str, Any]:
    """One reranker (cross-encoder, or bi-encoder with ``train.kind: bi``) per variant, same settings."""
    from relforge.dataset import load_groups

    cfg: PipelineConfig = ctx.cfg
    res: dict[str, Any] = {}
    dev = _dev_set(ctx)
    for variant in cfg.train.variants:
        groups = load_groups(ctx.path(layout.dataset(variant)))
        info = _train(ctx, groups, layout.train_model(variant), variant, dev)
        _write_json(ctx.path(layout.train_summary(variant)), info)
        res[variant] = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
    ctx.set_manifest("reranker_model", reranker_rel(cfg))
    return res


def reranker_rel(cfg: PipelineConfig) -> str | None:
    """The final reranker's folder relative to the run folder (judged if trained, else plain)."""
    for v in ("judged", "soft", "plain"):
        if v in cfg.train.variants:
            return layout.train_model(v)
    return None


def _kept_backbone(cfg: PipelineConfig, info: dict[str, Any]) -> bool:
    """Whether a trained bi-encoder kept its untrained start (dev selection): it is then the backbone
    itself (same weights, same rerank settings), so its runs are the backbone's runs, reused rather than
    encoded again. Recorded as ``same_as_backbone`` in the stage counts.

    ``info``: the trainer's summary; ``selected`` is there only when a dev set chose the checkpoint."""
    return (
        cfg.rerank.backbone
        and cfg.train.kind == "bi"
        and cfg.rerank.backend == "auto"
        and info.get("selected") == "start"
    )


def _variants_kept_backbone(ctx: StageContext) -> list[str]:
    """The trained variants (stage train) that are the backbone itself (:func:`_kept_backbone`)."""
    out = []
    for v in ctx.cfg.train.variants:
        path = ctx.path(layout.train_summary(v))
        if path.exists() and _kept_backbone(ctx.cfg, _read_json(path)):
            out.append(v)
    return out


# --------------------------------------------------------------------------- rerank


def _rerank(
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
        run = _rerank(ctx, model, kind=kind, backend=backend)
        pairs = sum(len(docs) for docs in run.values())
        speed[name] = round(pairs / max(time.perf_counter() - t0, 1e-9), 1)
        write_run(ctx.path(layout.rerank_run(name)), run, tag=name)
        res[name] = len(run)
        return run

    backbone_run = one("backbone", _backbone(cfg), "bi") if cfg.rerank.backbone else None
    same = _variants_kept_backbone(ctx)
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


def _eval_kwargs(cfg: PipelineConfig, baseline: str | None) -> dict[str, Any]:
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
        read_qrels(ctx.path(layout.TEST_QRELS)), runs, **_eval_kwargs(cfg, baseline), pairs=pairs
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
        runs["backbone"] = _rerank(ctx, _backbone(cfg), "bi", data=data)
    for v in cfg.train.variants:
        if "backbone" in runs and v in same:
            runs[v] = runs["backbone"]  # the same model: the same run (see kept_backbone)
        else:
            model = str(ctx.path(layout.train_model(v)))
            runs[v] = _rerank(ctx, model, cfg.train.kind, cfg.rerank.backend, data)
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
    result = evaluate(qrels, runs, **_eval_kwargs(cfg, baseline), pairs=comparison_pairs(runs))
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
    same = _variants_kept_backbone(ctx)
    for ec in ctx.cfg.evaluate.extra:
        index[ec.name], res[ec.name] = _evaluate_extra_one(ctx, ec, same)
    _write_json(ctx.path(layout.EXTRA_SUMMARY), index)
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


# --------------------------------------------------------------------------- ablation


def nested_subsets(n_groups: int, sizes: list[int], seed: int) -> dict[int, list[int]]:
    """Row indices of nested subsets: the first N of one fixed shuffled order (size capped at n_groups)."""
    order = list(range(n_groups))
    random.Random(seed).shuffle(order)
    return {s: sorted(order[: min(s, n_groups)]) for s in sizes}


def _p_value(test) -> float | None:
    """The randomisation-test p-value of a :class:`~relforge.evaluate.PairedTest` (None: no test, e.g. the
    baseline itself or a measure not computed)."""
    return None if test is None else test.perm_p


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
    info = _train(ctx, groups.select(idx), rel, variant, sh.dev, eval_steps=10**9)
    if _kept_backbone(cfg, info) and ctx.path(layout.BACKBONE_RUN).exists():
        run = read_run(ctx.path(layout.BACKBONE_RUN))  # the start kept: the backbone's run
        row["same_as_backbone"] = True
    else:
        run = _rerank(ctx, str(ctx.path(rel)), kind=cfg.train.kind, backend=cfg.rerank.backend)
    write_run(ctx.path(f"{rel}.trec"), run, tag=f"{variant}-{n}")
    ev = evaluate(sh.qrels, {sh.first: sh.first_run, "reranker": run}, **_eval_kwargs(cfg, sh.first))
    agg, p = ev.aggregates["reranker"], _p_value(ev.significance.get("reranker", {}).get("nDCG@10"))
    row["train_seconds"] = info.get("train_time_s")
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
            p = _p_value(sh.main.significance.get(variant, {}).get("nDCG@10"))
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
        dev=_dev_set(ctx),
    )
    rows = [row for variant in ab.variants for row in _variant_rows(ctx, sh, variant)]
    _write_json(
        ctx.path(layout.ABLATION_JSON),
        {
            "rows": rows,
            "reference": _reference(cfg, sh.main, first),
            "x": "training groups",
            "variants": ab.variants,
            "seed": ab.seed,
        },
    )
    return {"points": len(rows)}


# --------------------------------------------------------------------------- shared pieces of the table


def _dev_files(cfg: PipelineConfig) -> list[str]:
    return [layout.DEV_QUERIES, layout.DEV_QRELS] if cfg.data.dev_split else []


def _train_files(cfg: PipelineConfig) -> list[str]:
    return [layout.TRAIN_QUERIES, layout.TRAIN_QRELS] if cfg.data.train_split else []


def _dev_inputs(cfg: PipelineConfig) -> list[str]:
    """What checkpoint selection reads (``data.dev_split``): the dev questions and their first stage."""
    if not cfg.data.dev_split:
        return []
    return [*_dev_files(cfg), layout.first_stage_dev(cfg.rerank.first_stage)]


def _dev_config(cfg: PipelineConfig) -> dict[str, Any]:
    return (
        {"dev": {"first_stage": cfg.rerank.first_stage, "top_k": cfg.rerank.top_k}}
        if cfg.data.dev_split
        else {}
    )


def _preset_fingerprint(cfg: PipelineConfig) -> dict[str, Any]:
    """The preset's content in the stage config: a re-fitted preset file re-runs judge and agreement."""
    preset = judge_preset(cfg)
    return {"preset": preset.model_dump(mode="json", exclude={"measured"})} if preset is not None else {}


def _adapter_inputs(cfg: PipelineConfig) -> list[str]:
    a = judge_adapter(cfg)
    return [a] if a is not None else []


def _trained_models(cfg: PipelineConfig) -> list[str]:
    return [layout.train_model(v) for v in cfg.train.variants]


def _evaluate_config(cfg: PipelineConfig) -> dict[str, Any]:
    return cfg.evaluate.model_dump(mode="json", exclude={"extra"})


def _human_data(cfg: PipelineConfig) -> str:
    return str(resolve_data_source(cfg.judge.agreement.human, "judge.agreement.human"))


# --------------------------------------------------------------------------- one spec per stage


def _import_stage() -> Stage:
    return Stage(
        "import",
        stage_import,
        inputs=lambda k: [str(resolve_data_source(k.data.source))],
        outputs=lambda k: (
            [layout.CORPUS, layout.TEST_QUERIES, layout.TEST_QRELS] + _train_files(k) + _dev_files(k)
        ),
        config=lambda k: {"data": _dump(k.data)},
        description="read the documents and pick the held-out human questions",
    )


def _generate_config(cfg: PipelineConfig) -> dict[str, Any]:
    if cfg.data.train_split:
        return {"human_split": cfg.data.train_split}
    return {
        "generate": _dump(cfg.generate),
        "llm": cfg.llm_for("generate"),
        "options": cfg.llm_options("generate"),
    }


def _generate_stage() -> Stage:
    return Stage(
        "generate",
        stage_generate,
        inputs=lambda k: [layout.CORPUS] + _train_files(k),
        outputs=lambda k: [layout.GEN_QUERIES, layout.GEN_QRELS],
        config=_generate_config,
        enabled=lambda k: k.generate.enabled,
        description="LLM writes queries for documents (or data.train_split's human questions)",
    )


def _retrieve_outputs(cfg: PipelineConfig) -> list[str]:
    methods = cfg.retrieve.methods
    return (
        [layout.CANDIDATES, layout.NEGATIVES]
        + [layout.first_stage_test(m) for m in methods]
        + ([layout.first_stage_dev(m) for m in methods] if cfg.data.dev_split else [])
    )


def _retrieve_stage() -> Stage:
    return Stage(
        "retrieve",
        stage_retrieve,
        inputs=lambda k: [
            layout.CORPUS,
            layout.TEST_QUERIES,
            layout.GEN_QUERIES,
            layout.GEN_QRELS,
            *_dev_files(k)[:1],
        ],
        outputs=_retrieve_outputs,
        config=lambda k: {"retrieve": _dump(k.retrieve)},
        description="BM25 / dense / hybrid + mining",
    )


def _judge_finetune_stage() -> Stage:
    return Stage(
        "judge_finetune",
        stage_judge_finetune,
        inputs=lambda k: [str(resolve_data_source(k.judge_finetune.data, "judge_finetune.data"))],
        outputs=lambda k: [layout.JUDGE_FINETUNE],
        config=lambda k: {"ft": _dump(k.judge_finetune), "base": k.judge_finetune.base or k.llm_for("judge")},
        enabled=lambda k: k.judge.enabled and k.judge_finetune.enabled,
        description="LoRA fine-tuning of the judge on human labels",
    )


def _judge_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "judge": _dump(cfg.judge.model_copy(update={"agreement": None})),
        "llm": cfg.llm_for("judge"),
        "options": cfg.llm_options("judge"),
        **_preset_fingerprint(cfg),
    }


def _judge_stage() -> Stage:
    pairs_from = [layout.CORPUS, layout.GEN_QUERIES, layout.GEN_QRELS, layout.NEGATIVES]
    return Stage(
        "judge",
        stage_judge,
        inputs=lambda k: pairs_from + _adapter_inputs(k),
        outputs=lambda k: [layout.JUDGMENTS, layout.JUDGE_QRELS],
        config=_judge_config,
        enabled=lambda k: k.judge.enabled,
        description="LLM judge grades positives and candidates",
    )


def _agreement_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "judge": _dump(cfg.judge),
        "llm": cfg.llm_for("judge"),
        "seed": cfg.seed,
        "options": cfg.llm_options("judge"),
        **_preset_fingerprint(cfg),
    }


def _agreement_stage() -> Stage:
    return Stage(
        "agreement",
        stage_agreement,
        inputs=lambda k: [_human_data(k)] + _adapter_inputs(k),
        outputs=lambda k: [layout.AGREEMENT],
        config=_agreement_config,
        enabled=lambda k: k.judge.enabled and k.judge.agreement.enabled,
        description="judge vs held-out human labels, next to MiniLM cosine",
    )


def _groups_inputs(cfg: PipelineConfig) -> list[str]:
    judged = set(_group_variants(cfg)) - {"plain"}
    return [
        layout.CORPUS,
        layout.GEN_QUERIES,
        layout.GEN_QRELS,
        layout.CANDIDATES,
        layout.NEGATIVES,
    ] + ([layout.JUDGMENTS] if judged else [])


def _groups_stage() -> Stage:
    return Stage(
        "groups",
        stage_groups,
        inputs=_groups_inputs,
        outputs=lambda k: [layout.dataset(v) for v in _group_variants(k)] + [layout.DATASET_SUMMARY],
        config=lambda k: {"groups": _dump(k.groups), "variants": _group_variants(k)},
        description="re-bucket hard negatives into LCE groups (plain, judged, soft)",
    )


def _train_stage() -> Stage:
    return Stage(
        "train",
        stage_train,
        inputs=lambda k: [layout.dataset(v) for v in k.train.variants] + _dev_inputs(k),
        outputs=_trained_models,
        config=lambda k: {"train": _dump(k.train), **_dev_config(k)},
        description="reranker with LCE (cross- or bi-encoder), per variant",
    )


def _rerank_stage() -> Stage:
    return Stage(
        "rerank",
        stage_rerank,
        inputs=lambda k: (
            [layout.CORPUS, layout.TEST_QUERIES, layout.first_stage_test(k.rerank.first_stage)]
            + _trained_models(k)
        ),
        outputs=lambda k: [rel for rel in run_names(k).values() if rel.startswith(layout.RERANK_DIR)],
        config=lambda k: {"rerank": _dump(k.rerank), "backbone": _backbone(k)},
        description="rerank the held-out questions' candidates",
    )


def _evaluate_stage() -> Stage:
    return Stage(
        "evaluate",
        stage_evaluate,
        inputs=lambda k: [layout.TEST_QRELS] + list(run_names(k).values()),
        outputs=lambda k: [layout.METRICS_JSON, layout.METRICS_CSV],
        config=lambda k: {"evaluate": _evaluate_config(k)},
        description="metrics + significance vs BM25",
    )


def _evaluate_extra_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "evaluate": _dump(cfg.evaluate),
        "rerank": _dump(cfg.rerank),
        "retrieve": _dump(cfg.retrieve),
        "backbone": _backbone(cfg),
    }


def _evaluate_extra_stage() -> Stage:
    return Stage(
        "evaluate_extra",
        stage_evaluate_extra,
        inputs=lambda k: [str(resolve_data_source(e.source)) for e in k.evaluate.extra] + _trained_models(k),
        outputs=lambda k: [layout.EXTRA_SUMMARY],
        config=_evaluate_extra_config,
        enabled=lambda k: bool(k.evaluate.extra),
        description="every system on the evaluate.extra collections (e.g. out of domain)",
    )


def _ablation_inputs(cfg: PipelineConfig) -> list[str]:
    return (
        [
            layout.CORPUS,
            layout.TEST_QUERIES,
            layout.TEST_QRELS,
            layout.first_stage_test(cfg.rerank.first_stage),
            layout.METRICS_JSON,
        ]
        + [layout.dataset(v) for v in cfg.ablation.variants]
        + _dev_inputs(cfg)
    )


def _ablation_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        **_dev_config(cfg),
        "ablation": _dump(cfg.ablation),
        "train": _dump(cfg.train),
        "rerank": _dump(cfg.rerank),
        "evaluate": _evaluate_config(cfg),
    }


def _ablation_stage() -> Stage:
    return Stage(
        "ablation",
        stage_ablation,
        inputs=_ablation_inputs,
        outputs=lambda k: [layout.ABLATION_JSON],
        config=_ablation_config,
        enabled=lambda k: bool(k.ablation.sizes),
        description="dataset-size ablation",
    )


def _report_inputs(cfg: PipelineConfig) -> list[str]:
    out = [layout.METRICS_JSON]
    if cfg.judge.enabled:
        out.append(layout.JUDGMENTS)
        if cfg.judge.agreement.enabled:
            out.append(layout.AGREEMENT)
    out += [layout.dataset(v) for v in _group_variants(cfg)]
    if cfg.ablation.sizes:
        out.append(layout.ABLATION_JSON)
    if cfg.evaluate.extra:
        out.append(layout.EXTRA_SUMMARY)
    return out


def _report_stage() -> Stage:
    return Stage(
        "report",
        stage_report,
        inputs=_report_inputs,
        outputs=lambda k: [layout.REPORT],
        config=lambda k: {"report": _dump(k.report)},
        enabled=lambda k: k.report.enabled,
        description="report.html",
        version="1",
    )


#: the stage table, in pipeline order
STAGE_SPECS = (
    _import_stage,
    _generate_stage,
    _retrieve_stage,
    _judge_finetune_stage,
    _judge_stage,
    _agreement_stage,
    _groups_stage,
    _train_stage,
    _rerank_stage,
    _evaluate_stage,
    _evaluate_extra_stage,
    _ablation_stage,
    _report_stage,
)


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    """The pipeline's stages in order (disabled ones report themselves as such in the plan).

    ``cfg`` is not read here: each stage's inputs, outputs, config and enabled are functions of it."""
    del cfg
    return [spec() for spec in STAGE_SPECS]
