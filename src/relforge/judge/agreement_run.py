"""The agreement stage: the judge (LLM or preset) vs human grades, next to MiniLM cosine, in ``agreement.json``.

:func:`run` is its one entry point (the pipeline's ``agreement`` stage calls it); :class:`AgreementReport` is
the file it writes and what its readers (``relforge run``'s summary, the report) read it through.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from relforge.judge.config import AgreementConfig, JudgeConfig
from relforge.judge.labeller import adapter_meta, describe_labeller, preset_cv, preset_doc, validation_qids

#: a number as written (pydantic keeps an int an int and a float a float: the file reads back unchanged)
Num = int | float


def _write_json(path: Path, obj: Any) -> None:
    """JSON as the pipeline writes it (atomically; UTF-8, indented, newline-terminated)."""
    from relforge.data.io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


# --------------------------------------------------------------------------- agreement.json


class ScorerAgreement(BaseModel):
    """One judge's entry of agreement.json (``judge``, ``judge_zero_shot``): :func:`flat_agreement`'s
    numbers in the report's names, then what was compared and who graded. Fields are written in this
    order, only those set; other keys are kept (a raw ``agreement()`` report's ``all``, ``values``)."""

    model_config = ConfigDict(extra="allow")

    n: int | None = None
    tau_b: Num | None = None
    per_query_tau_b: Num | None = None
    kappa: Num | None = None
    weighted_kappa: Num | None = None
    alpha: Num | None = None
    accuracy: Num | None = None
    macro_f1: Num | None = None
    labels: list[str] | None = None
    confusion: list[list[Num]] | None = None
    per_class: dict[str, Any] | None = None
    rerank: dict[str, Any] | None = None
    balanced: dict[str, Any] | None = None
    counts: dict[str, Any] | None = None
    #: the human grades (``judge.agreement.human``), the queries compared on and how they were chosen
    human: str | None = None
    queries: list[str] | None = None
    queries_from: str | None = None
    pairs: int | None = None
    llm: str | None = None
    labeller: str | None = None
    adapter: str | None = None
    #: a preset's entry: its name and models, whether these pairs were held out from its fit, why, and
    #: the held-out k-fold numbers recorded in it
    preset: str | None = None
    model: str | None = None
    pairs_per_s: Num | None = None
    held_out: bool | None = None
    note: str | None = None
    cv: dict[str, Any] | None = None


class CosineAgreement(BaseModel):
    """agreement.json's ``minilm_cosine``: ranking each pool by MiniLM cosine (:func:`cosine_agreement`)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    n: int | None = None
    tau_b: Num | None = None
    per_query_tau_b: Num | None = None
    per_query_n: int | None = None
    rerank: dict[str, Any] | None = None
    human: str | None = None
    queries: list[str] | None = None
    queries_from: str | None = None
    pairs: int | None = None
    llm: str | None = None


class AgreementReport(BaseModel):
    """``judge/agreement.json``: one entry per scorer, in this order (only those present)."""

    model_config = ConfigDict(extra="allow")

    judge_zero_shot: ScorerAgreement | None = None
    judge: ScorerAgreement | None = None
    minilm_cosine: CosineAgreement | None = None

    def entries(self) -> dict[str, dict[str, Any]]:
        """``{scorer: {key: value}}`` as written (only the keys set)."""
        return self.model_dump(exclude_unset=True)

    def write(self, path: Path) -> None:
        """The report as JSON (atomically; UTF-8, indented, newline-terminated)."""
        _write_json(path, self.entries())

    @classmethod
    def read(cls, path: Path) -> AgreementReport:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


class AgreementSummary(BaseModel):
    """What the agreement stage reports (its manifest counts): pairs and queries compared, each tau_b."""

    pairs: int
    queries: int
    judge_tau_b: float | None
    minilm_tau_b: float | None
    zero_shot_tau_b: float | None = None
    #: a preset's caveat (the pairs were among those it was fitted on, or may have been)
    note: str | None = None
    #: set when the judge agrees with the humans less than MiniLM cosine
    warning: str | None = None

    def counts(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


# --------------------------------------------------------------------------- inputs and outputs


class AgreementInputs(BaseModel):
    """The human-graded BEIR folder (``qrels.tsv``, ``qrels/test.tsv`` or ``qrels/dev.tsv``), the adapter the
    LLM judge loads and the adapter whose validation queries are compared on (``queries: adapter``)."""

    human: Path
    #: how the configuration names ``human`` (recorded in agreement.json; None: the folder)
    human_name: str | None = None
    adapter: Path | None = None
    #: whose recorded validation query ids ``queries: adapter`` means (the adapter; for a preset, the
    #: shipped adapter's, so that its numbers stand beside the adapter's)
    split_from: Path | None = None


class AdapterCurves(BaseModel):
    """Where the used adapter's own training curves are copied (the report shows them)."""

    metrics: Path
    source: Path
    #: folder of the adapter's PNG plots (same names)
    plots: Path


class AgreementOutputs(BaseModel):
    agreement: Path
    #: scorer key -> confusion-matrix PNG (keys not listed are not plotted)
    confusion: dict[str, Path] = {}
    #: None: do not copy (e.g. the adapter was trained in this run and wrote its own)
    curves: AdapterCurves | None = None


# --------------------------------------------------------------------------- the run


@dataclass
class _Job:
    """One agreement run's resolved settings and services (what the steps below share)."""

    cfg: AgreementConfig
    judge: JudgeConfig
    inputs: AgreementInputs
    seed: int
    llm_spec: str | None
    open_llm: Callable[[str | None], Any]
    preset: Any
    labeller: str
    log: Callable[[str], None]


def run(
    cfg: AgreementConfig,
    inputs: AgreementInputs,
    out: Path | AgreementOutputs,
    *,
    judge: JudgeConfig | None = None,
    seed: int = 0,
    llm_spec: str | None = None,
    open_llm: Callable[[str | None], Any] | None = None,
    preset: Any = None,
    labeller: str | None = None,
    log: Callable[[str], None] | None = None,
) -> AgreementSummary:
    """Grade the human-labelled pairs with the judge (``judge`` settings; ``preset``, or the LLM
    ``open_llm(adapter)`` / ``llm_spec``) and with MiniLM cosine, and write ``agreement.json`` (+ confusion
    plots, + the adapter's curves): the one entry point of the agreement stage.

    ``seed`` draws the ``max_pairs`` subsample; ``labeller`` names the judge (default: from the settings);
    ``log`` gets the warnings (default: stderr)."""
    from relforge.data.io import read_labelled

    outs = (
        out if isinstance(out, AgreementOutputs) else AgreementOutputs(agreement=Path(out) / "agreement.json")
    )
    judge = judge or JudgeConfig()
    adapter = str(inputs.adapter) if inputs.adapter is not None else None
    if open_llm is None:
        open_llm = _default_llm(llm_spec, judge)
    job = _Job(
        cfg=cfg,
        judge=judge,
        inputs=inputs,
        seed=seed,
        llm_spec=llm_spec,
        open_llm=open_llm,
        preset=preset,
        labeller=labeller or describe_labeller(llm_spec or "", judge.template, judge.mode, adapter, preset),
        log=log or (lambda m: print(m, file=sys.stderr)),
    )
    corpus, queries, human = read_labelled(inputs.human)
    pairs, sub, meta = _agreement_pairs(job, human, corpus, queries)
    if preset is not None:
        rep = {"judge": _preset_agreement(job, queries, corpus, pairs, sub, meta)}
    else:
        rep = _llm_agreement(job, adapter, queries, corpus, pairs, sub, meta)
    rep["minilm_cosine"] = {**cosine_agreement(sub, queries, corpus, pairs), **meta}
    rep["minilm_cosine"].pop("labeller", None)
    report = AgreementReport.model_validate(rep)
    _plot_confusions(job, report.entries(), outs.confusion)
    report.write(outs.agreement)
    if outs.curves is not None:
        _copy_adapter_curves(adapter, outs.curves)
    return _summary(job, report.entries(), len(pairs), len(sub))


def _default_llm(llm_spec: str | None, judge: JudgeConfig) -> Callable[[str | None], Any]:
    """Open ``llm_spec`` (with or without an adapter) once per adapter."""
    from relforge.judge.run import open_llm

    opened: dict[str | None, Any] = {}

    def get(adapter: str | None) -> Any:
        if llm_spec is None:
            from relforge.errors import UsageError

            raise UsageError("the LLM judge's agreement needs an LLM spec or a preset")
        if adapter not in opened:
            opened[adapter] = open_llm(llm_spec, adapter=adapter, batch_size=judge.batch_size)
        return opened[adapter]

    return get


def _agreement_qids(job: _Job, human) -> tuple[list[str], str]:
    """The labelled queries compared on and how they were chosen (``queries``)."""
    qids = sorted(human)
    if job.cfg.queries != "adapter":
        return qids, "all"
    src = job.inputs.split_from
    val = validation_qids(adapter_meta(src if src and Path(src).exists() else None))
    if not val:
        job.log("the adapter records no validation query ids; using every labelled query")
        return qids, "all"
    chosen_by = (
        "adapter validation split"
        if job.preset is None
        else "the shipped adapter's validation split (the preset was fitted on them too)"
    )
    return [q for q in val if q in human], chosen_by


def _agreement_pairs(job: _Job, human, corpus, queries):
    """The human-graded pairs the judge is compared on: ``(pairs, sub-qrels, meta)``."""
    qids, chosen_by = _agreement_qids(job, human)
    pairs = [(q, d) for q in qids for d in sorted(human[q]) if d in corpus and q in queries]
    if job.cfg.max_pairs is not None and len(pairs) > job.cfg.max_pairs:
        pairs = sorted(random.Random(job.seed).sample(pairs, job.cfg.max_pairs))
    sub = {q: {d: human[q][d] for qq, d in pairs if qq == q} for q in qids}
    sub = {q: v for q, v in sub.items() if v}
    meta = {
        "human": job.inputs.human_name or str(job.inputs.human),
        "queries": sorted(sub),
        "queries_from": chosen_by,
        "pairs": len(pairs),
        "llm": job.llm_spec if job.preset is None else None,
        "labeller": job.labeller,
    }
    return pairs, sub, meta


def _compare(job: _Job) -> dict[str, Any]:
    """The comparison settings of :func:`relforge.judge.agreement.agreement` (``measure``, ``seed``)."""
    return {"measure": job.cfg.measure, "seed": job.cfg.seed}


def _preset_agreement(job: _Job, queries, corpus, pairs, sub, meta) -> dict[str, Any]:
    """agreement.json's ``judge`` entry for a preset: its numbers on pairs it was fitted on (flagged), and
    the held-out k-fold numbers recorded in the preset (``cv``)."""
    from relforge.judge.agreement import agreement
    from relforge.judge.judge import Judgment
    from relforge.judge.run import grade_with_preset

    preset = job.preset
    rows, info = grade_with_preset(
        preset,
        queries,
        corpus,
        pairs,
        on_missing=job.judge.on_missing,
        batch_size=job.judge.batch_size,
        log=job.log,
    )
    human_data = str(job.inputs.human).lower()
    trained_on = str(preset.head.meta.get("data") or "")
    fitted_on = "liveqa" in human_data and "liveqa" in trained_on.lower()
    return flat_agreement(
        agreement(sub, [Judgment.from_dict(r) for r in rows], **_compare(job)),
        {
            **meta,
            "adapter": None,
            "preset": preset.name,
            "model": info["model"],
            "pairs_per_s": info["pairs_per_s"],
            "held_out": False if fitted_on else None,
            "note": (
                f"pairs the preset was fitted on (not held out); held-out k-fold numbers: {preset_doc(preset)}"
                if fitted_on
                else f"the preset was fitted on: {trained_on or 'not recorded'}; check these pairs were not among them"
            ),
            "cv": preset_cv(preset),
        },
    )


def _llm_agreement(job: _Job, adapter: str | None, queries, corpus, pairs, sub, meta) -> dict[str, Any]:
    """agreement.json's ``judge`` entry (and ``judge_zero_shot``, with ``zero_shot``) for the LLM; the
    zero-shot judge cuts documents like the adapter too."""
    from relforge.judge.agreement import agreement
    from relforge.judge.run import judge_llm_pairs

    out: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    js = judge_llm_pairs(job.open_llm(adapter), job.judge, queries, corpus, pairs, stats, adapter)
    if job.cfg.zero_shot and adapter is not None:
        zs = judge_llm_pairs(job.open_llm(None), job.judge, queries, corpus, pairs, {}, adapter)
        out["judge_zero_shot"] = flat_agreement(
            agreement(sub, zs, **_compare(job)), {**meta, "adapter": None}
        )
    out["judge"] = flat_agreement(
        agreement(sub, js, **_compare(job)),
        {**meta, "adapter": adapter, "pairs_per_s": stats.get("pairs_per_s")},
    )
    return out


def _plot_confusions(job: _Job, rep: dict[str, Any], pngs: dict[str, Path]) -> None:
    from relforge.judge.agreement import plot_confusion

    for key in ("judge", "judge_zero_shot"):
        conf = rep.get(key, {}).get("confusion")
        if conf and key in pngs:
            try:
                pngs[key].parent.mkdir(parents=True, exist_ok=True)
                plot_confusion(conf, rep[key]["labels"], pngs[key])
            except Exception as e:  # a plot must not lose the numbers
                job.log(f"confusion plot failed: {e}")


def _summary(job: _Job, rep: dict[str, Any], n_pairs: int, n_queries: int) -> AgreementSummary:
    res: dict[str, Any] = {
        "pairs": n_pairs,
        "queries": n_queries,
        "judge_tau_b": rep["judge"]["tau_b"],
        "minilm_tau_b": rep["minilm_cosine"]["tau_b"],
    }
    if "judge_zero_shot" in rep:
        res["zero_shot_tau_b"] = rep["judge_zero_shot"]["tau_b"]
    if rep["judge"].get("note"):  # only a preset's entry has a note
        res["note"] = rep["judge"]["note"]
    jt, mt = res["judge_tau_b"], res["minilm_tau_b"]
    if jt is not None and mt is not None and jt < mt:
        res["warning"] = "judge agrees with humans less than MiniLM cosine"
        job.log(
            f"WARNING: on held-out human labels the judge's tau_b ({jt:.3f}) is below MiniLM cosine's "
            f"({mt:.3f}): its re-bucketing may hurt; compare the 'judged' and 'plain' rerankers in the report"
        )
    return AgreementSummary.model_validate(res)


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


def _copy_adapter_curves(adapter: str | None, curves: AdapterCurves) -> None:
    """Show the used adapter's own training curves in the report (when it was not trained in this run)."""
    import shutil

    if adapter is None:
        return
    src = Path(adapter) / "metrics.jsonl"
    if src.exists():
        curves.metrics.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, curves.metrics)
        for png in Path(adapter).glob("*.png"):
            shutil.copyfile(png, curves.plots / png.name)
        _write_json(curves.source, {"adapter": adapter, "trained_here": False})


# --------------------------------------------------------------------------- MiniLM cosine


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
    from relforge.retrieve.dense import load_encoder
    from relforge.types import doc_text

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
