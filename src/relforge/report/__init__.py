"""The HTML report: one self-contained ``report.html`` (plots inlined as base64 PNG) from an artifacts dir.

``render_report(artifacts_dir, out=None) -> Path`` reads the files below (paths relative to
``artifacts_dir``). Each section of the page is shown when its file exists, and otherwise says
"not run". A file that exists but cannot be read shows a red error box in its section (and
``strict=True`` raises instead). The pipeline writes exactly these files.

Artifact contract (``relforge.report/1``)
-----------------------------------------
The paths are :mod:`relforge.artifacts`'s (re-exported by :mod:`relforge.pipeline.layout`). Files the
pipeline writes through a class are read through the same class; one in another shape is an error box.

``manifest.json``
    :class:`relforge.artifacts.Manifest` (the pipeline runner's): ``config`` (the resolved pipeline
    config), ``stage_order``, ``stages`` (:class:`~relforge.artifacts.StageRecord` per stage: ``status``,
    ``wall_s``, ``counts``, ``llm_tokens``, ``cache_hits``, ...), ``systems`` (run name -> description),
    ``reranker_model``, ``relforge_version``, ``created``. Stages are listed in ``stage_order`` (else file
    order); other scalar stage keys go to the timings table's "other" column, except bookkeeping
    (``outputs``, ``inputs``, ``started``, ``finished``, ``llm``, ``*hash``). ``systems`` adds a
    description under each run name.
``eval/metrics.json``
    :meth:`relforge.evaluate.EvalResult.to_json` output (runs, measures, aggregates, per_query,
    baseline, significance, pairwise, skipped/missing queries, warnings, settings). The headline is
    the best run on nDCG@10 (else the first measure) vs the baseline, then every ``pairwise`` comparison.
``judge/judgments.jsonl``
    ``relforge.judge.write_judgments`` lines: ``{"qid", "docid", "grade": int | null, "expected",
    "probs", "model", ...}`` (``grade: null`` = unparseable output, counted and shown separately).
``judge/agreement.json``
    one entry or several named ones (``{"judge": {...}, "judge_zero_shot": {...},
    "minilm_cosine": {...}}``). An entry holds ``n``, ``tau_b``, ``per_query_tau_b``, ``kappa``,
    ``weighted_kappa``, ``alpha``, ``accuracy``, ``macro_f1``, ``labels`` (label strings),
    ``confusion`` (``confusion[i][j]`` = pairs with human label ``labels[i]`` and predicted label
    ``labels[j]``), ``per_class`` (``{label: {"precision", "recall", "f1", "support"}}``),
    ``rerank`` (``{"nDCG@10": x}``), ``balanced`` (same numbers on the class-balanced subsample),
    ``counts`` (``unlabelled`` is shown), and for the held-out set ``pairs``, ``queries`` (list),
    ``queries_from``, ``human``. ``relforge.judge.agreement.pair_metrics`` names (``kendall_tau_b``,
    ``cohen_kappa``, ``quadratic_kappa``, ``krippendorff_alpha``) are accepted too, and so is the raw
    ``agreement()`` output (``{"counts", "values", "all", "balanced", "rerank"}``). Missing keys show "–";
    a column nobody has is left out.
``judge_finetune/metrics.jsonl``
    ``relforge.judge.finetune`` lines, one per epoch (epoch 0 = zero-shot, before training):
    ``{"epoch", "tau_b" | "kendall_tau_b", "weighted_kappa" | "quadratic_kappa", "accuracy",
    "per_query_tau_b"?, "macro_f1"?, "loss"?, "eval_loss"?, "per_class": {label: {"precision",
    "recall", "f1"}}}``. The best epoch is the trained epoch with the highest τ_b.
``dataset/summary.json``
    ``{"buckets": {name: count}, ...}``: the bucket counts (table + bar chart); every other top-level
    value (numbers, strings, flat dicts) is listed below. Without ``buckets``, the top-level numbers
    are taken as the bucket counts.
``ablation.json``
    :class:`relforge.evaluate.ablation.AblationResult`: ``{"rows": [{"size": n, "variant"?,
    "nDCG@10": x, <other numbers>...}, ...], "reference": {system: nDCG@10}, "x": "x-axis label"}``.
    Rows with a ``"variant"`` are drawn as one line per variant; reference systems are dashed horizontal
    lines. The plotted measure is ``nDCG@10`` (else the first numeric key).
``eval/extra/summary.json``
    :class:`relforge.evaluate.extra.ExtraIndex`: per collection its ``metrics`` file (an EvalResult,
    relative to the artifacts dir), ``source``, ``split``, ``mode``, ``first_stage``, ``top_k``,
    ``queries``, ``documents``, ``description``; each gets its own metrics table.

``relforge report ARTIFACTS_DIR [--out report.html]`` calls :func:`render_report`.
"""

from relforge.report.render import ARTIFACTS, load_artifacts, render_report, write_report

__all__ = ["ARTIFACTS", "load_artifacts", "render_report", "write_report"]
