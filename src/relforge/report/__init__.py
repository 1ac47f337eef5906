"""The HTML report: one self-contained ``report.html`` (plots inlined as base64 PNG) from an artifacts dir.

``render_report(artifacts_dir, out=None) -> Path`` reads the files below (paths relative to
``artifacts_dir``). Each section of the page is shown when its file exists, and otherwise says
"not run". A file that exists but cannot be read shows a red error box in its section (and
``strict=True`` raises instead). The pipeline writes exactly these files.

Artifact contract (``relforge.report/1``)
-----------------------------------------
``manifest.json``
    ``{"config": {...resolved pipeline config...},
    "stages": {name: {"wall_s": float, "status": "done"|"skipped"|"failed"|..., "counts": {k: number},
    "llm_tokens": int | {k: int}, "cache_hits": int, ...}}, "reranker_model": "relative/dir",
    "relforge_version": str, "created": str}``. Every key is optional; stages are shown in file order,
    scalar stage keys besides ``wall_s``/``status``/``counts`` appear in the timings table's notes.
``eval/metrics.json``
    :meth:`relforge.evaluate.EvalResult.to_json` output (runs, measures, aggregates, per_query,
    baseline, significance, pairwise, skipped/missing queries, warnings, settings).
``judge/judgments.jsonl``
    one judgment per line: ``{"qid", "docid", "grade": int | null, "expected": float | null,
    "probs": {label: p} | null, ...}`` (``grade: null`` = unparseable output, counted separately).
``judge/agreement.json``
    ``relforge.judge.agreement.agreement()`` output, either one dict or several named ones
    (``{"judge": {...}, "minilm_cosine": {...}}``). Keys read: ``n``, ``tau_b``, ``kappa``,
    ``weighted_kappa``, ``alpha``, ``accuracy``, ``labels`` (list of label strings),
    ``confusion`` (``confusion[i][j]`` = pairs with human label ``labels[i]`` and predicted label
    ``labels[j]``), ``per_class`` (``{label: {"precision", "recall", "f1", "support"}}``). Missing
    keys show as "–".
``judge_finetune/metrics.jsonl``
    one line per epoch: ``{"epoch": number, "tau_b", "weighted_kappa", "accuracy",
    "per_class": {label: {"precision", "recall", "f1"}}, "loss"?: float, "eval_loss"?: float}``.
``dataset/summary.json``
    the bucket summary of ``relforge.dataset.build_groups``: ``{"buckets": {name: count}, ...}``; the
    other top-level values (numbers, strings, flat dicts) are shown as a table. Without a ``buckets``
    key, top-level numeric values are taken as the bucket counts.
``ablation.json``
    ``[{"size": n_training_entries, "nDCG@10": x, <other measures>...}, ...]`` or
    ``{"rows": [...same...], "reference": {system_name: nDCG@10}}``; reference systems are drawn as
    dashed horizontal lines (e.g. BM25, the reranker trained without judge labels).

``relforge report ARTIFACTS_DIR [--out report.html]`` calls :func:`render_report`.
"""

from relforge.report.render import ARTIFACTS, load_artifacts, render_report, write_report

__all__ = ["ARTIFACTS", "load_artifacts", "render_report", "write_report"]
