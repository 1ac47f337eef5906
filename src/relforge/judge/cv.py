"""K-fold cross-validation of a judge recipe, split by query, with MiniLM cosine on the same folds.

Fold assignment: queries ordered by ``sha256(f"{seed}:{qid}")`` and dealt round-robin into K folds,
so every query lands in exactly one fold, independent of input order. For fold i the judge is trained
by :func:`relforge.judge.finetune.finetune_judge` on the other folds; its epoch is chosen on an inner
dev slice of those training folds (``val_fraction`` of their queries); fold i is scored once with the
chosen epoch (``FinetuneConfig.test_queries``). Grades for κ / accuracy / macro-F1 come from cut points
on the expected grade (:func:`relforge.judge.calibrate.fit_thresholds`) fitted on training-fold pairs
only: the inner dev slice for the LLM (pairs it was not trained on), all training-fold pairs for the
cosine baseline (which has nothing to train). The frozen-bottom cache is shared by all folds.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from relforge.errors import UsageError
from relforge.judge.finetune_config import CVConfig, FinetuneConfig
from relforge.types import Document, Qrels, Query

CV_FILE = "cv.json"
CV_PLOT = "cv.png"
METRICS = ("kendall_tau_b", "per_query_tau_b", "quadratic_kappa", "accuracy", "macro_f1")


class FoldScore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fold: int
    n_pairs: int
    n_queries: int
    metrics: dict[str, float | None]
    thresholds: list[float]
    best_epoch: int | None = None


class JudgeCV(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    folds: list[FoldScore]
    mean: dict[str, float | None]
    sd: dict[str, float | None]
    pairs_per_second: float | None = None


class CVResult(BaseModel):
    """What ``cv.json`` holds (written and read back by this class)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = "relforge-judge-cv"
    base_model: str
    k: int
    seed: int
    n_queries: int
    n_pairs: int
    fold_queries: list[list[str]]
    judges: list[JudgeCV]
    finetune: dict[str, Any]
    seconds: float
    command: str | None = None

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> CVResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def judge(self, name: str) -> JudgeCV:
        return next(j for j in self.judges if j.name == name)


def assign_folds(qids: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """Deterministic K folds of query ids: hash order, dealt round-robin (each query in one fold)."""
    uniq = sorted(set(qids))
    if k < 2 or k > len(uniq):
        raise UsageError(
            f"--folds {k}: need 2 <= folds <= number of labelled queries ({len(uniq)}); "
            "use fewer folds, or --folds 1 for a single train/validation split"
        )
    order = sorted(uniq, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    return [sorted(order[i::k]) for i in range(k)]


def scored_metrics(
    human: list[int],
    score: list[float],
    qids: list[str],
    fit_score: list[float],
    fit_human: list[int],
    values: list[int],
    metric: str = "qwk",
) -> tuple[dict[str, float | None], list[float]]:
    """Agreement of a continuous score with human grades; grades by cut points fitted on other pairs."""
    from relforge.judge.agreement import pair_metrics
    from relforge.judge.calibrate import apply_thresholds, fit_thresholds

    th = fit_thresholds(fit_score, fit_human, values=values, metric=metric)
    m = pair_metrics(human, apply_thresholds(score, th, values), score, qids, values)
    return {k: m.get(k) for k in METRICS}, th


def cosine_scores(
    queries: dict[str, Query], corpus: dict[str, Document], pairs: list[tuple[str, str]], model: str
) -> tuple[list[float], float]:
    """MiniLM cosine (query text vs title + text) per pair, and the pairs/s of computing them."""
    from relforge.retrieve.dense import load_encoder
    from relforge.types import doc_text

    enc = load_encoder(model)
    t0 = time.time()
    qids, dids = sorted({q for q, _ in pairs}), sorted({d for _, d in pairs})
    kw = {"normalize_embeddings": True, "show_progress_bar": False}
    qe = dict(zip(qids, enc.encode([queries[q].text for q in qids], **kw), strict=True))
    de = dict(zip(dids, enc.encode([doc_text(corpus[d]) for d in dids], **kw), strict=True))
    cos = [float(np.dot(qe[q], de[d])) for q, d in pairs]
    return cos, len(pairs) / max(1e-9, time.time() - t0)


def _summarise(name: str, folds: list[FoldScore], pps: float | None) -> JudgeCV:
    mean, sd = {}, {}
    for k in METRICS:
        xs = [f.metrics[k] for f in folds if f.metrics.get(k) is not None]
        mean[k] = round(float(np.mean(xs)), 4) if xs else None
        sd[k] = round(float(np.std(xs, ddof=1)), 4) if len(xs) > 1 else None
    return JudgeCV(name=name, folds=folds, mean=mean, sd=sd, pairs_per_second=pps)


def _expected(rows: list[dict[str, Any]], key: str, values: list[int]) -> list[float]:
    out = []
    for r in rows:
        p = r[key]
        p = [p[str(v)] for v in values] if isinstance(p, dict) else p
        out.append(float(sum(v * x for v, x in zip(values, p, strict=True))))
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def llm_fold(fold_dir: Path, summary: dict[str, Any], values: list[int], metric: str) -> FoldScore:
    """Score one fold's held-out pairs from the files ``finetune_judge`` wrote (cut points: inner dev)."""
    dev = _read_jsonl(fold_dir / "val_predictions.jsonl")
    test = _read_jsonl(fold_dir / "test_predictions.jsonl")
    m, th = scored_metrics(
        [r["human"] for r in test],
        _expected(test, "probs", values),
        [r["qid"] for r in test],
        _expected(dev, "tuned", values),
        [r["human"] for r in dev],
        values,
        metric,
    )
    return FoldScore(
        fold=int(fold_dir.name.split("-")[-1]),
        n_pairs=len(test),
        n_queries=len({r["qid"] for r in test}),
        metrics=m,
        thresholds=th,
        best_epoch=summary.get("best_epoch"),
    )


def _pairs(qrels: Qrels, queries: dict[str, Query], corpus: dict[str, Document]) -> list[tuple[str, str]]:
    return [(q, d) for q in sorted(qrels) if q in queries for d in sorted(qrels[q]) if d in corpus]


def cosine_cv(
    folds: list[list[str]],
    pairs: list[tuple[str, str]],
    cos: list[float],
    qrels: Qrels,
    values: list[int],
    metric: str,
    pps: float | None,
) -> JudgeCV:
    """The cosine baseline on the same folds (cut points fitted on the training folds' pairs)."""
    out = []
    for i, test_q in enumerate(folds):
        ts = set(test_q)
        te = [j for j, (q, _) in enumerate(pairs) if q in ts]
        tr = [j for j, (q, _) in enumerate(pairs) if q not in ts]
        h = [qrels[q][d] for q, d in pairs]
        m, th = scored_metrics(
            [h[j] for j in te],
            [cos[j] for j in te],
            [pairs[j][0] for j in te],
            [cos[j] for j in tr],
            [h[j] for j in tr],
            values,
            metric,
        )
        out.append(FoldScore(fold=i, n_pairs=len(te), n_queries=len(ts), metrics=m, thresholds=th))
    return _summarise("minilm-cosine", out, pps)


def run_cv(
    base: str,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    qrels: Qrels,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    cv: CVConfig | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
) -> CVResult:
    """K-fold CV of ``finetune_judge`` with ``config``; writes ``OUT/cv.json``, ``OUT/cv.png``, ``OUT/fold-i/``."""
    from relforge.judge.finetune import finetune_judge
    from relforge.judge.prompt import JudgeTemplate

    cfg, cv = config or FinetuneConfig(), cv or CVConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    values = JudgeTemplate.load(cfg.template).values
    pairs = _pairs(qrels, queries, corpus)
    folds = assign_folds([q for q, _ in pairs], cv.folds, cv.seed)
    cache: dict[tuple[int, ...], Any] = {}
    llm_folds, seconds, n_scored = [], 0.0, 0
    for i, test_q in enumerate(folds):
        fold_cfg = cfg.model_copy(update={"test_queries": test_q, "judge_check": False, "val_queries": None})
        fd = out / f"fold-{i}"
        s = finetune_judge(base, corpus, queries, qrels, fd, fold_cfg, progress=progress, hidden_cache=cache)
        llm_folds.append(llm_fold(fd, s, values, cv.threshold_metric))
        # judge cost of a pair = bottom layers (cache, amortised) + top layers (the test scoring pass)
        seconds += s["timing"]["cache_seconds"] + (s["test"] or {}).get("eval_seconds", 0.0)
        n_scored += s["test"]["n"] if s.get("test") else 0
    cos, cos_pps = cosine_scores(queries, corpus, pairs, cv.cosine_model)
    res = CVResult(
        base_model=base,
        k=cv.folds,
        seed=cv.seed,
        n_queries=len({q for q, _ in pairs}),
        n_pairs=len(pairs),
        fold_queries=folds,
        judges=[
            _summarise("llm", llm_folds, round(n_scored / seconds, 3) if seconds > 0 else None),
            cosine_cv(folds, pairs, cos, qrels, values, cv.threshold_metric, round(cos_pps, 1)),
        ],
        finetune=cfg.model_dump(),
        seconds=round(time.time() - t0, 1),
        command=command,
    )
    res.save(out / CV_FILE)
    plot_cv(res, out / CV_PLOT)
    return res


def plot_cv(res: CVResult, path: str | Path) -> Path:
    """Bars of mean ± sd over folds, one group per metric, one bar per judge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    w = 0.8 / len(res.judges)
    for j, jd in enumerate(res.judges):
        xs = np.arange(len(METRICS)) + j * w
        ys = [jd.mean[k] if jd.mean[k] is not None else np.nan for k in METRICS]
        es = [jd.sd[k] if jd.sd[k] is not None else 0.0 for k in METRICS]
        ax.bar(xs, ys, w, yerr=es, capsize=3, label=jd.name)
    ax.set_xticks(np.arange(len(METRICS)) + 0.4 - w / 2, [k.replace("_", " ") for k in METRICS], fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(
        f"{res.k}-fold by query ({res.n_queries} queries, {res.n_pairs} pairs): mean ± sd", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = Path(path)
    tmp = p.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(p)
    return p
