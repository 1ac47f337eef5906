"""``README.md`` of an adapter folder, written from its ``relforge.json`` (replaces PEFT's generic card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.judge.finetune.files import PREDICTIONS_FILE, read_adapter_meta

#: the agreement rows of the README's validation table: (row name, metric key)
_README_METRICS = [
    ("Kendall τ_b (pairs, expected grade)", "kendall_tau_b"),
    ("mean per-query τ_b", "per_query_tau_b"),
    ("quadratic-weighted κ", "quadratic_kappa"),
    ("Cohen κ", "cohen_kappa"),
    ("Krippendorff α (ordinal)", "krippendorff_alpha"),
    ("accuracy", "accuracy"),
    ("macro F1", "macro_f1"),
]


def write_adapter_readme(
    adapter_dir: str | Path, *, command: str | None = None, extra: str = "", title: str | None = None
) -> Path:
    """Write ``README.md`` of an adapter folder from its ``relforge.json`` (replaces PEFT's generic card).

    Args:
        adapter_dir: the folder written by :func:`finetune_judge`.
        command: the command that reproduces it.
        extra: markdown appended at the end (e.g. data attribution, recipes tried).
        title: first heading (default: the folder name).

    Returns:
        The README path.
    """
    d = Path(adapter_dir)
    meta = read_adapter_meta(d)
    lines = _readme_intro(meta, title or d.name) + _readme_use(meta, d)
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    lines += _readme_validation(meta) + _readme_metrics_table(meta) + _readme_files(meta)
    if extra:
        lines += [extra.strip(), ""]
    path = d / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _readme_number(x: Any) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def _readme_intro(meta: dict[str, Any], title: str) -> list[str]:
    """Heading and what the adapter is (base model, template, truncation, grades)."""
    return [
        f"# {title}",
        "",
        f"A LoRA adapter for the relforge LLM judge, trained by `relforge judge finetune` on human graded "
        f"relevance labels. Base model: `{meta['base_model']}` ({meta.get('base_model_file')}); judge template "
        f"`{meta['template']['id']}` (hash `{meta['template']['hash']}`); documents truncated to "
        f"{meta.get('max_doc_tokens')} model tokens; grades {', '.join(meta['labels'])}.",
        "",
    ]


def _readme_use(meta: dict[str, Any], d: Path) -> list[str]:
    """``## Use``: the ``relforge judge`` command line with this adapter."""
    return [
        "## Use",
        "",
        "```bash",
        f"relforge judge --llm {meta['base_model']} --adapter {d} --max-doc-tokens {meta.get('max_doc_tokens')} \\",
        "  --corpus corpus.jsonl --queries queries.jsonl --pairs pairs.tsv --out judgments.jsonl",
        "```",
        "",
        "Judge with the same `--max-doc-tokens` as training (recorded in `relforge.json`).",
        "",
    ]


def _readme_validation(meta: dict[str, Any]) -> list[str]:
    """``## Validation``: the split, the class counts and the header of the metrics table."""
    split, counts = meta.get("split", {}), meta.get("class_counts", {})
    return [
        f"## Validation (held-out queries, best epoch {meta.get('best_epoch')} by τ_b)",
        "",
        f"Split by query (hash, seed {split.get('seed')}): {len(split.get('train_queries', []))} training queries, "
        f"{len(split.get('val_queries', []))} validation queries ({split.get('val_pairs')} pairs, grades "
        f"{counts.get('validation')}). Training pairs used (class balanced): {counts.get('train_used')} of "
        f"{counts.get('train_available')}. Validation query ids are in `relforge.json` (`val_queries`).",
        "",
        "| metric | zero-shot (epoch 0) | tuned |",
        "|---|---|---|",
    ]


def _readme_metrics_table(meta: dict[str, Any]) -> list[str]:
    """The metrics table's rows: zero-shot vs tuned agreement, then F1 (P / R) per grade."""
    f = _readme_number
    zs, best = meta.get("zero_shot") or {}, meta.get("best") or {}
    lines = [f"| {name} | {f(zs.get(k))} | {f(best.get(k))} |" for name, k in _README_METRICS]
    for lab in meta["labels"]:
        a = (zs.get("per_class") or {}).get(lab, {})
        b = (best.get("per_class") or {}).get(lab, {})
        lines.append(
            f"| F1 grade {lab} (P / R) | {f(a.get('f1'))} ({f(a.get('precision'))} / {f(a.get('recall'))}) "
            f"| {f(b.get('f1'))} ({f(b.get('precision'))} / {f(b.get('recall'))}) |"
        )
    return lines


def _readme_files(meta: dict[str, Any]) -> list[str]:
    """Where the per-epoch curves and per-pair probabilities are, and the training time."""
    t = meta.get("timing", {})
    return [
        "",
        f"Per-epoch curves: `{meta.get('metrics_file')}`, `{meta.get('plot_file')}`; per-pair probabilities "
        f"(zero-shot and tuned): `{PREDICTIONS_FILE}`. Training time per epoch (s): {t.get('epoch_seconds')} "
        f"on {meta.get('device')}.",
        "",
    ]
