"""Read an artifacts directory (contract in :mod:`relforge.report`) and render ``report.html``."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from relforge import artifacts
from relforge.artifacts import Manifest
from relforge.errors import DataError, MissingInputError, RelforgeError
from relforge.judge.agreement_run import AgreementReport

#: section key -> file read (relative to the artifacts dir): the contract documented in relforge.report
ARTIFACTS: dict[str, str] = {
    "manifest": artifacts.MANIFEST,
    "metrics": artifacts.METRICS_JSON,
    "judgments": artifacts.JUDGMENTS,
    "agreement": artifacts.AGREEMENT,
    "finetune": artifacts.JUDGE_FINETUNE_METRICS,
    "dataset": artifacts.DATASET_SUMMARY,
    "ablation": artifacts.ABLATION_JSON,
    "extra": artifacts.EXTRA_SUMMARY,
}

PRETTY_NAMES = {
    "judge": "LLM judge",
    "judge_zero_shot": "LLM judge, zero-shot (no adapter)",
    "minilm_cosine": "MiniLM cosine (baseline)",
    "finetuned": "fine-tuned judge",
    "zero_shot": "zero-shot judge",
}

# ----------------------------------------------------------------------------- formatting


def fmt(x: Any, digits: int = 4) -> str:
    """Numbers for tables: ints as ints (thousands separators), floats with ``digits``; None/NaN as a dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x.is_integer() and abs(x) >= 1000:
            return f"{int(x):,}"
        return f"{x:.{digits}f}"
    return str(x)


def fmt_p(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_seconds(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compact(d: Any, nested: bool = False) -> str:
    if isinstance(d, dict):
        text = ", ".join(f"{k} {fmt(v) if _is_num(v) else _compact(v, True)}" for k, v in d.items())
        return f"({text})" if nested else text
    if isinstance(d, list):
        return ", ".join(_compact(v) for v in d)
    return fmt(d) if _is_num(d) else str(d)


# ----------------------------------------------------------------------------- loading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg})", path=path, line=e.lineno) from None
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", path=path) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from relforge.data import iter_jsonl

    return [obj for _, obj in iter_jsonl(path)]


def _need(cond: bool, msg: str, path: Path) -> None:
    if not cond:
        raise DataError(msg, path=path)


def load_artifacts(artifacts_dir: str | os.PathLike, *, strict: bool = False) -> dict[str, Any]:
    """Read every artifact of the contract that exists.

    Args:
        artifacts_dir: the pipeline's output folder.
        strict: raise on the first unreadable artifact instead of recording it in ``["errors"]``.

    Returns:
        ``{"dir", "present": {key: bool}, "errors": {key: message}, <key>: parsed content...}``.

    Raises:
        MissingInputError: the folder does not exist or holds none of the artifact files.
    """
    root = Path(artifacts_dir)
    if not root.is_dir():
        raise MissingInputError(f"{root}: no such artifacts directory")
    present = {k: (root / rel).is_file() for k, rel in ARTIFACTS.items()}
    if not any(present.values()):
        raise MissingInputError(
            f"{root}: none of the report's artifacts found (expected any of {', '.join(ARTIFACTS.values())}); "
            "point `relforge report` at the pipeline's output folder"
        )
    out: dict[str, Any] = {"dir": root, "present": present, "errors": {}}
    loaders = {
        "manifest": _load_manifest,
        "metrics": _load_metrics,
        "judgments": _load_judgments,
        "agreement": _load_agreement,
        "finetune": _load_finetune,
        "dataset": _load_dataset,
        "ablation": _load_ablation,
        "extra": _load_extra,
    }
    for key, loader in loaders.items():
        if not present[key]:
            continue
        path = root / ARTIFACTS[key]
        try:
            out[key] = loader(path)
        except (RelforgeError, ValueError, KeyError, TypeError, AttributeError) as e:
            if strict:
                if isinstance(e, RelforgeError):
                    raise
                raise DataError(f"unreadable artifact ({type(e).__name__}: {e})", path=path) from e
            msg = str(e) if isinstance(e, RelforgeError) else f"{path}: {type(e).__name__}: {e}"
            out["errors"][key] = msg
    return out


def _read_model(cls: type[BaseModel], path: Path) -> Any:
    """``path`` read through the class its writer writes it with (a mismatch is a DataError)."""
    d = _read_json(path)
    try:
        return cls.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "top level"
        raise DataError(f"not a {cls.__name__} ({where}: {err['msg']})", path=path) from None


def _load_manifest(path: Path) -> Manifest:
    return _read_model(Manifest, path)


def _load_metrics(path: Path):
    from relforge.evaluate import EvalResult

    d = _read_json(path)
    _need(isinstance(d, dict) and "aggregates" in d, "not an EvalResult JSON (no 'aggregates')", path)
    return EvalResult.from_dict(d)


def _load_judgments(path: Path) -> dict[str, Any]:
    from relforge.data import iter_jsonl

    grades: Counter = Counter()
    queries: set[str] = set()
    models: Counter = Counter()
    scale: set[str] = set()  # the grade scale, from the probability keys (grades nobody got show as 0)
    expected_sum, expected_n, n = 0.0, 0, 0
    for lineno, obj in iter_jsonl(path):
        if "grade" not in obj or "qid" not in obj:
            raise DataError(
                "judgment needs 'qid' and 'grade' (null when unparseable)", path=path, line=lineno
            )
        n += 1
        queries.add(str(obj["qid"]))
        g = obj["grade"]
        grades["unparsed" if g is None else str(g)] += 1
        if _is_num(obj.get("expected")):
            expected_sum += float(obj["expected"])
            expected_n += 1
        if obj.get("model"):
            models[str(obj["model"])] += 1
        if isinstance(obj.get("probs"), dict):
            scale.update(str(k) for k in obj["probs"])
    order = sorted(
        {k for k in grades if k != "unparsed"} | scale,
        key=lambda k: (not k.lstrip("-").isdigit(), int(k) if k.lstrip("-").isdigit() else 0, k),
    )
    counts = {k: grades[k] for k in order}
    if grades.get("unparsed"):
        counts["unparsed"] = grades["unparsed"]
    return {
        "n": n,
        "queries": len(queries),
        "counts": counts,
        "unparsed": grades.get("unparsed", 0),
        "mean_expected": expected_sum / expected_n if expected_n else None,
        "models": dict(models),
    }


#: relforge.judge.agreement.pair_metrics names -> the report's names (both are accepted)
ALIASES = {
    "kendall_tau_b": "tau_b",
    "cohen_kappa": "kappa",
    "quadratic_kappa": "weighted_kappa",
    "krippendorff_alpha": "alpha",
}


def _normalise(m: dict[str, Any]) -> dict[str, Any]:
    """Accept both ``pair_metrics`` names (``kendall_tau_b``...) and the report's (``tau_b``...)."""
    out = dict(m)
    for long, short in ALIASES.items():
        if short not in out and long in out:
            out[short] = out[long]
    return out


def _load_agreement(path: Path) -> dict[str, dict[str, Any]]:
    d = _read_json(path)
    _need(isinstance(d, dict), "expected a JSON object", path)
    if any(
        k in d for k in ("tau_b", "kappa", "weighted_kappa", "confusion", "accuracy", "all", "kendall_tau_b")
    ):
        d = {"judge": d}
    d = AgreementReport.model_validate(d).entries()  # the model relforge.judge.agreement_run writes it with
    for name in list(d):
        entry = d[name]
        _need(isinstance(entry, dict), f"entry {name!r} must be an object of agreement numbers", path)
        if isinstance(entry.get("all"), dict):  # raw relforge.judge.agreement.agreement() output
            entry = {
                **entry["all"],
                "balanced": entry.get("balanced"),
                "rerank": entry.get("rerank"),
                "counts": entry.get("counts"),
                "labels": [str(v) for v in entry.get("values") or []] or None,
            }
        entry = _normalise(entry)
        if isinstance(entry.get("balanced"), dict):
            entry["balanced"] = _normalise(entry["balanced"])
        d[name] = entry
        conf, labels = entry.get("confusion"), entry.get("labels")
        if conf is not None:
            _need(
                isinstance(conf, list) and all(isinstance(r, list) for r in conf),
                f"{name}.confusion must be a list of rows",
                path,
            )
            if labels is None:
                entry["labels"] = [str(i) for i in range(len(conf))]
            _need(
                len(conf) == len(entry["labels"]) and all(len(r) == len(conf) for r in conf),
                f"{name}.confusion must be square with one row per label",
                path,
            )
    return d


def _load_finetune(path: Path) -> list[dict[str, Any]]:
    rows = _read_jsonl(path)
    for i, r in enumerate(rows, start=1):
        _need(_is_num(r.get("epoch")), f"row {i} has no numeric 'epoch'", path)
    return sorted((_normalise(r) for r in rows), key=lambda r: r["epoch"])


def _load_extra(path: Path) -> dict[str, Any]:
    """``eval/extra/summary.json`` (:class:`~relforge.evaluate.extra.ExtraIndex`) -> per collection its
    entry and EvalResult."""
    from relforge.evaluate.extra import ExtraIndex

    root = path.parents[len(Path(artifacts.EXTRA_SUMMARY).parts) - 1]
    index = _read_model(ExtraIndex, path).root
    return {name: {"info": e, "result": _load_metrics(root / e.metrics)} for name, e in index.items()}


def _extra_section(d: dict[str, Any], systems: dict[str, str] | None = None) -> dict[str, Any]:
    tables = []
    for name, e in d.items():
        info = e["info"]
        about = (
            f"{info.queries} queries · {info.documents} documents · source {info.source} ({info.split})"
            f" · mode {info.mode} · rerankers see {info.first_stage} top {info.top_k}"
        )
        tables.append(
            {
                "name": name,
                "about": about,
                "description": info.description,
                "m": _metrics_section(e["result"], systems),
            }
        )
    return {"tables": tables}


def _load_dataset(path: Path) -> dict[str, Any]:
    d = _read_json(path)
    _need(isinstance(d, dict), "expected a JSON object", path)
    return d


def _load_ablation(path: Path) -> dict[str, Any]:
    """``ablation.json`` (:class:`~relforge.evaluate.ablation.AblationResult`): rows by variant and size."""
    from relforge.evaluate.ablation import AblationResult

    res = _read_model(AblationResult, path)
    rows = sorted((r.values() for r in res.rows), key=lambda r: (str(r.get("variant") or ""), r["size"]))
    return {"rows": rows, "reference": res.reference, "x": res.x}


# ----------------------------------------------------------------------------- sections


def _rr10(measures: list[str], canonical: dict[str, str]) -> str | None:
    for m in measures:
        c = canonical.get(m, m)
        if c.startswith("RR") and c.endswith("@10"):
            return m
    return None


#: trained variants of the pipeline (run names); their untrained start is the run ``backbone``
TRAINED_RUNS = artifacts.VARIANTS


def _budget_notes(res, primary: str) -> list[str]:
    """A plain statement when no trained reranker beats its untrained backbone."""
    trained = [r for r in TRAINED_RUNS if r in res.runs]
    if "backbone" not in res.runs or not trained:
        return []
    base = res.aggregates["backbone"][primary]
    if any(res.aggregates[r][primary] > base for r in trained):
        return []
    return [
        f"No trained reranker beats its untrained backbone on {primary} ({fmt(base)}): this run's "
        "training budget (groups × steps, and the quality of its labels) is too small for training to "
        "improve on the backbone. configs/medquad-cpu.yaml is the larger CPU recipe (docs/training.md)."
    ]


def _stage_counts(manifest: Manifest, stage: str) -> dict[str, Any]:
    """A stage's summary (record ``counts``); empty when the stage has no record."""
    rec = manifest.stages.get(stage)
    return rec.counts if rec is not None else {}


def _selection_notes(manifest: Manifest) -> list[str]:
    """What checkpoint selection on the human dev questions chose, per trained variant (stage train)."""
    counts = _stage_counts(manifest, "train")
    n_dev = _stage_counts(manifest, "retrieve").get("dev_queries")
    same = _stage_counts(manifest, "rerank").get("same_as_backbone")
    parts = []
    for v in TRAINED_RUNS:
        c = counts.get(v)
        if not isinstance(c, dict) or c.get("selected") not in ("start", "trained", "interpolated"):
            continue
        start, best = c.get("start_dev_ndcg@10"), c.get("best_dev_ndcg@10")
        if c["selected"] == "start":
            parts.append(
                f"{v} kept the untrained start (no checkpoint beat its dev nDCG@10 {fmt(start)})"
                + (": it is the backbone, and its rows are the backbone's runs" if v in (same or []) else "")
            )
        else:
            wise = c["selected"] == "interpolated"
            parts.append(
                (
                    f"{v}: weights {c.get('interpolation_alpha')} of the way from the start to "
                    if wise
                    else f"{v}: "
                )
                + f"step {c.get('best_checkpoint_step')} (dev nDCG@10 {fmt(best)}"
                + (f" vs {fmt(start)} at the start)" if _is_num(start) else ")")
            )
    if not parts:
        return []
    who = f"{n_dev} human dev questions" if _is_num(n_dev) else "the human dev questions"
    return [
        f"Checkpoint selection on {who} (data.dev_split: never trained on, not the test questions; the "
        f"untrained start is a candidate): " + "; ".join(parts) + "."
    ]


def _metrics_rows(res, measures: list[str], systems: dict[str, str] | None) -> list[dict[str, Any]]:
    """One row per run: each measure's value, significance mark, p-values and whether it is the best."""
    best_per_measure = {m: max(res.aggregates[r][m] for r in res.runs) for m in measures}
    rows = []
    for run in res.runs:
        tests = res.significance.get(run, {})
        cells = []
        for m in measures:
            t = tests.get(m)
            cells.append(
                {
                    "value": fmt(res.aggregates[run][m]),
                    "mark": res.marks(run, m),
                    "p": f"{fmt_p(t.ttest_p)} / {fmt_p(t.perm_p)}" if t is not None else "",
                    "best": len(res.runs) > 1 and res.aggregates[run][m] == best_per_measure[m],
                }
            )
        rows.append(
            {
                "run": run,
                "baseline": run == res.baseline,
                "cells": cells,
                "desc": str((systems or {}).get(run, "")) if (systems or {}).get(run) != run else "",
            }
        )
    return rows


def _metrics_headline(res, primary: str) -> dict[str, Any]:
    """The best run on the primary measure, against the baseline when there is one."""
    best = max(res.runs, key=lambda r: res.aggregates[r][primary])
    headline: dict[str, Any] = {"measure": primary, "best": best, "value": fmt(res.aggregates[best][primary])}
    if res.baseline is not None:
        headline["baseline"] = res.baseline
        headline["baseline_value"] = fmt(res.aggregates[res.baseline][primary])
        t = res.significance.get(best, {}).get(primary)
        if t is not None:
            headline.update(
                delta=f"{t.delta:+.4f}",
                ttest_p=fmt_p(t.ttest_p),
                perm_p=fmt_p(t.perm_p),
                significant=bool(res.marks(best, primary)),
            )
    return headline


def _pairwise_rows(res) -> list[dict[str, Any]]:
    """The pairwise comparisons (e.g. judged vs plain), one cell per measure."""
    return [
        {
            "run": c["run"],
            "versus": c["versus"],
            "cells": [
                {
                    "measure": m,
                    "delta": f"{t.delta:+.4f}",
                    "p": f"{fmt_p(t.ttest_p)} / {fmt_p(t.perm_p)}",
                    "significant": (t.ttest_p < res.alpha) or (t.perm_p < res.alpha),
                }
                for m, t in c["tests"].items()
            ],
        }
        for c in res.pairwise
    ]


def _metrics_section(res, systems: dict[str, str] | None = None) -> dict[str, Any]:
    from relforge.report import plots

    measures = res.measures
    primary = "nDCG@10" if "nDCG@10" in measures else measures[0]
    rows = _metrics_rows(res, measures, systems)
    headline = _metrics_headline(res, primary)
    pairwise = _pairwise_rows(res)
    chart_measures = [
        m for m in (primary if primary == "nDCG@10" else None, _rr10(measures, res.canonical)) if m
    ]
    if not chart_measures:
        chart_measures = measures[:2]
    chart = plots.metrics_bars({r: res.aggregates[r] for r in res.runs}, chart_measures)
    notes = _budget_notes(res, primary)
    if res.skipped_queries:
        notes.append(f"{len(res.skipped_queries)} qrels queries without any relevant judgment were skipped.")
    notes.extend(res.warnings)
    s = res.settings
    settings = (
        f"{len(res.queries)} queries · relevance threshold for binary measures: grade ≥ {s.get('rel') or 1}"
        f" · randomisation test: {s['permutation_rounds']} sign flips, seed {s['seed']}"
        f" · ties: {s['tie_policy']}"
        f" · queries missing from a run score 0 · ir_measures {s['ir_measures']}"
    )
    return {
        "measures": measures,
        "rows": rows,
        "headline": headline,
        "pairwise": pairwise,
        "chart": chart,
        "chart_measures": chart_measures,
        "legend": res.legend(),
        "notes": notes,
        "settings": settings,
        "has_tests": bool(res.significance),
    }


def _judgments_section(j: dict[str, Any]) -> dict[str, Any]:
    from relforge.report import plots

    total = j["n"] or 1
    rows = [{"label": k, "count": fmt(v), "share": f"{100 * v / total:.1f}%"} for k, v in j["counts"].items()]
    return {
        "n": fmt(j["n"]),
        "queries": fmt(j["queries"]),
        "rows": rows,
        "unparsed": j["unparsed"],
        "mean_expected": fmt(j["mean_expected"], 3),
        "models": ", ".join(j["models"]) or "–",
        "chart": plots.label_distribution(j["counts"]) if j["counts"] else None,
    }


AGREEMENT_COLS = [
    ("n", "pairs", 0),
    ("tau_b", "τ_b", 3),
    ("per_query_tau_b", "per-query τ_b", 3),
    ("kappa", "κ", 3),
    ("weighted_kappa", "weighted κ", 3),
    ("alpha", "α", 3),
    ("accuracy", "accuracy", 3),
    ("macro_f1", "macro-F1", 3),
    ("rerank_ndcg", "rerank nDCG@10", 4),
]


def _agreement_row(name: str, e: dict[str, Any]) -> dict[str, Any]:
    vals = dict(e)
    rr = e.get("rerank")
    if isinstance(rr, dict) and rr:
        vals["rerank_ndcg"] = rr.get("nDCG@10", next(iter(rr.values())))
    return {"name": name, "vals": vals}


def _agreement_section(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from relforge.report import plots

    raw_rows, cards, notes = [], [], []
    cv = None
    for name, e in entries.items():
        pretty = PRETTY_NAMES.get(name, name)
        if name == "judge" and (e.get("preset") or e.get("labeller")):
            pretty = f"judge — preset {e['preset']}" if e.get("preset") else f"judge — {e['labeller']}"
        if e.get("note"):
            notes.append(f"{pretty}: {e['note']}.")
        cv = cv or _cv_section(e.get("cv"))
        raw_rows.append(_agreement_row(pretty, e))
        if isinstance(e.get("balanced"), dict) and e["balanced"]:
            raw_rows.append(_agreement_row(f"{pretty} — class-balanced subsample", e["balanced"]))
        counts = e.get("counts") or {}
        if counts.get("unlabelled"):
            notes.append(
                f"{pretty}: {counts['unlabelled']} pairs had an unparseable judgment and are not scored."
            )
        card: dict[str, Any] = {"name": pretty, "image": None, "per_class": []}
        if e.get("confusion") is not None:
            card["image"] = plots.confusion_matrix(e["confusion"], [str(x) for x in e["labels"]])
        for lab, pc in (e.get("per_class") or {}).items():
            pc = pc or {}
            card["per_class"].append(
                {
                    "label": lab,
                    "precision": fmt(pc.get("precision"), 3),
                    "recall": fmt(pc.get("recall"), 3),
                    "f1": fmt(pc.get("f1"), 3),
                    "support": fmt(pc.get("support")),
                }
            )
        if card["image"] or card["per_class"]:
            cards.append(card)
    cols = [c for c in AGREEMENT_COLS if any(r["vals"].get(c[0]) is not None for r in raw_rows)]
    rows = [
        {
            "name": r["name"],
            "cells": [fmt(r["vals"].get(k), d) if d else fmt(r["vals"].get(k)) for k, _, d in cols],
        }
        for r in raw_rows
    ]
    first = next(iter(entries.values()), {})
    held = []
    if _is_num(first.get("pairs")) or _is_num(first.get("n")):
        kind = (
            "pairs the labeller was fitted on (not held out)"
            if first.get("held_out") is False
            else "held-out pairs"
        )
        held.append(f"{fmt(first.get('pairs', first.get('n')))} {kind}")
    if isinstance(first.get("queries"), list):
        held.append(f"{len(first['queries'])} queries")
    if first.get("queries_from"):
        held.append(f"queries: {first['queries_from']}")
    if first.get("human"):
        held.append(f"human labels: {first['human']}")
    if first.get("labeller"):
        held.append(f"judge: {first['labeller']}")
    return {
        "headers": [h for _, h, _ in cols],
        "rows": rows,
        "cards": cards,
        "notes": notes,
        "held": " · ".join(held),
        "cv": cv,
    }


#: the k-fold table's metrics (benchmarks/judge_preset.py names) -> column headers
CV_COLS = [
    ("kendall_tau_b", "τ_b"),
    ("per_query_tau_b", "per-query τ_b"),
    ("quadratic_kappa", "weighted κ"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
]


def _cv_section(cv: Any) -> dict[str, Any] | None:
    """A preset's recorded k-fold numbers (``{"rows": {name: {metric: [mean, sd]}}}``) as mean ± sd cells."""
    if not isinstance(cv, dict) or not isinstance(cv.get("rows"), dict):
        return None

    def cell(v: Any) -> str:
        if isinstance(v, (list, tuple)) and len(v) == 2 and _is_num(v[0]):
            return f"{fmt(float(v[0]), 3)} ± {fmt(float(v[1]), 3)}" if _is_num(v[1]) else fmt(float(v[0]), 3)
        return "–"

    rows = [
        {"name": name, "cells": [cell((r or {}).get(k)) for k, _ in CV_COLS]}
        for name, r in cv["rows"].items()
        if isinstance(r, dict)
    ]
    return {
        "headers": [h for _, h in CV_COLS],
        "rows": rows,
        "folds": cv.get("folds"),
        "seed": cv.get("seed"),
        "source": cv.get("source") or "docs/judge-preset.md",
    }


def _epoch_label(e: Any) -> str:
    return fmt(int(e)) if float(e).is_integer() else fmt(float(e), 2)


def _finetune_section(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from relforge.report import plots

    labels: list[str] = []
    for r in rows:
        for lab in r.get("per_class") or {}:
            if lab not in labels:
                labels.append(lab)
    labels.sort(key=lambda s: (not str(s).isdigit(), int(s) if str(s).isdigit() else 0, str(s)))
    cols = [
        k
        for k in ("tau_b", "per_query_tau_b", "weighted_kappa", "accuracy", "macro_f1", "loss", "eval_loss")
        if any(r.get(k) is not None for r in rows)
    ]
    table = [
        {
            "epoch": _epoch_label(r["epoch"]) + (" (zero-shot)" if r["epoch"] == 0 else ""),
            "cells": [fmt(r.get(k), 3) for k in cols],
            "f1": [fmt(((r.get("per_class") or {}).get(lab) or {}).get("f1"), 3) for lab in labels],
        }
        for r in rows
    ]
    trained = [r for r in rows if r["epoch"] > 0 and _is_num(r.get("tau_b"))]
    best = max(trained, key=lambda r: r["tau_b"]) if trained else None
    return {
        "cols": cols,
        "labels": labels,
        "rows": table,
        "chart": plots.finetune_curves(rows, labels),
        "best_epoch": _epoch_label(best["epoch"]) if best else None,
        "best_tau": fmt(best.get("tau_b"), 3) if best else None,
    }


def _dataset_section(d: dict[str, Any]) -> dict[str, Any]:
    from relforge.report import plots

    buckets = d.get("buckets")
    if not isinstance(buckets, dict):
        buckets = {k: v for k, v in d.items() if _is_num(v)}
        others = {k: v for k, v in d.items() if k not in buckets}
    else:
        others = {k: v for k, v in d.items() if k != "buckets"}
    buckets = {str(k): v for k, v in buckets.items() if _is_num(v)}
    total = sum(buckets.values()) or 1
    rows = [{"name": k, "count": fmt(v), "share": f"{100 * v / total:.1f}%"} for k, v in buckets.items()]
    info = [{"key": k, "value": fmt(v) if _is_num(v) else _compact(v)} for k, v in others.items()]
    return {"rows": rows, "info": info, "chart": plots.bucket_bars(buckets) if buckets else None}


def _ablation_section(d: dict[str, Any]) -> dict[str, Any]:
    from relforge.report import plots

    rows = d["rows"]
    text_cols = [k for k in ("variant",) if any(k in r for r in rows)]
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in ("size", "requested_size") and _is_num(v) and k not in keys:
                keys.append(k)
    measure = "nDCG@10" if "nDCG@10" in keys else (keys[0] if keys else None)
    xlabel = d["x"]
    chart = None
    if measure:
        series: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if _is_num(r.get(measure)):
                series.setdefault(str(r.get("variant", "trained reranker")), []).append(r)
        if series:
            chart = plots.ablation_curve(series, measure, d["reference"], xlabel=xlabel)
    return {
        "measure": measure,
        "columns": keys,
        "text_cols": text_cols,
        "chart": chart,
        "xlabel": xlabel,
        "rows": [
            {
                "size": fmt(r["size"]),
                "text": [str(r.get(k, "")) for k in text_cols],
                "cells": [fmt(r.get(k)) for k in keys],
            }
            for r in rows
        ],
        "reference": [{"name": k, "value": fmt(v)} for k, v in d["reference"].items()],
    }


#: manifest stage keys not repeated in the timings table's "other" column
STAGE_HIDDEN = {"wall_s", "status", "counts", "outputs", "inputs", "started", "finished", "llm", "config"}


def _share(part: Any, total: float) -> str:
    if not _is_num(part) or total <= 0:
        return ""
    pct = 100 * part / total
    return "<1%" if 0 < pct < 1 else f"{pct:.0f}%"


def _manifest_section(m: Manifest) -> dict[str, Any]:
    import yaml

    listed = [n for n in m.stage_order or [] if n in m.stages]
    stages = {n: m.stages[n] for n in listed + [n for n in m.stages if n not in listed]}
    walls = [s.wall_s for s in stages.values() if s.wall_s is not None]
    total, longest = sum(walls), max(walls, default=0)
    rows = []
    for name, s in stages.items():
        wall = s.wall_s
        extra = {
            k: v
            for k, v in s.model_dump(exclude_unset=True).items()
            if k not in STAGE_HIDDEN
            and not k.endswith("hash")
            and (not isinstance(v, (dict, list)) or k == "llm_tokens")
        }
        rows.append(
            {
                "name": name,
                "status": s.status,
                "wall": fmt_seconds(wall),
                "share": _share(wall, total),
                "bar": round(100 * wall / longest, 1) if wall is not None and longest > 0 else 0,
                "counts": _compact(s.counts),
                "other": _compact(extra) if extra else "",
            }
        )
    config = m.config
    config_text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100) if config else None
    meta = [
        {"key": k, "value": str(getattr(m, k))}
        for k in ("relforge_version", "created", "reranker_model")
        if getattr(m, k) is not None
    ]
    return {"rows": rows, "total": fmt_seconds(total) if stages else "–", "config": config_text, "meta": meta}


# ----------------------------------------------------------------------------- rendering


def _template():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("relforge.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def render_report(
    artifacts_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    strict: bool = False,
    title: str | None = None,
) -> Path:
    """Render one self-contained ``report.html`` from a pipeline artifacts directory.

    Args:
        artifacts_dir: folder holding the artifacts listed in :data:`ARTIFACTS` (any subset).
        out: output file; default ``<artifacts_dir>/report.html``.
        strict: raise :class:`~relforge.errors.DataError` on an unreadable artifact instead of showing
            an error box in its section.
        title: page title; default the config's ``name`` or the folder name.

    Returns:
        The path of the written HTML file (written atomically).

    Raises:
        MissingInputError: the folder is missing or holds none of the artifacts.
    """
    return write_report(load_artifacts(artifacts_dir, strict=strict), out, strict=strict, title=title)


def write_report(
    art: dict[str, Any],
    out: str | os.PathLike | None = None,
    *,
    strict: bool = False,
    title: str | None = None,
) -> Path:
    """Render artifacts already read by :func:`load_artifacts` (render errors are added to ``art["errors"]``)."""
    from relforge import __version__
    from relforge.data import atomic_write

    root: Path = art["dir"]
    builders = {
        "metrics": _metrics_section,
        "judgments": _judgments_section,
        "agreement": _agreement_section,
        "finetune": _finetune_section,
        "dataset": _dataset_section,
        "ablation": _ablation_section,
        "extra": _extra_section,
        "manifest": _manifest_section,
    }
    manifest: Manifest = art.get("manifest") or Manifest()
    systems = manifest.systems
    sections: dict[str, Any] = {}
    for key, build in builders.items():
        if key in art:
            try:
                with_systems = key in ("metrics", "extra")
                sections[key] = build(art[key], systems) if with_systems else build(art[key])
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
                path = root / ARTIFACTS[key]
                if strict:
                    raise DataError(
                        f"cannot render this artifact ({type(e).__name__}: {e})", path=path
                    ) from e
                art["errors"][key] = f"{path}: cannot render ({type(e).__name__}: {e})"
    if "metrics" in sections:
        sections["metrics"]["notes"].extend(_selection_notes(manifest))
    page_title = title or (manifest.config or {}).get("name") or root.resolve().name
    html = _template().render(
        title=page_title,
        s=sections,
        errors=art["errors"],
        files=ARTIFACTS,
        dir=str(root),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
    )
    out_path = Path(out) if out is not None else root / artifacts.REPORT
    with atomic_write(out_path) as fh:
        fh.write(html)
    return out_path
