"""Who the judge is: the adapter it loads (and what that adapter records), a preset, one line naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the adapter shipped in the package (``relforge/judge/adapters/<name>``)
SHIPPED_ADAPTER = "smollm2-liveqa"


def shipped_adapter_dir() -> Path:
    """The shipped adapter's folder (one helper: relforge.judge.finetune's)."""
    from relforge.judge.finetune import shipped_adapter_dir as shipped

    return shipped(SHIPPED_ADAPTER)


def check_adapter(path: Path) -> Path:
    """``path`` if the adapter folder exists, else a MissingInputError saying what to set instead."""
    from relforge.errors import MissingInputError

    if not path.exists():
        hint = (
            (
                "the shipped adapter is missing from the installed package; reinstall relforge or set "
                "judge.adapter to null (zero-shot) or a folder"
            )
            if SHIPPED_ADAPTER in str(path)
            else "set judge.adapter to an existing folder, 'shipped', 'finetune' or null"
        )
        raise MissingInputError(f"judge adapter {path} does not exist; {hint}")
    return path


def adapter_meta(adapter: str | Path | None) -> dict[str, Any]:
    """The adapter's ``relforge.json`` ({} without an adapter, or for one trained elsewhere)."""
    if adapter is None:
        return {}
    f = Path(adapter) / "relforge.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}


def validation_qids(meta: dict[str, Any]) -> list[str] | None:
    """The adapter's held-out validation query ids: ``val_queries`` of the ``relforge.json`` that
    ``relforge judge finetune`` writes (None for an adapter trained elsewhere)."""
    val = meta.get("val_queries")
    return [str(q) for q in val] if isinstance(val, list) else None


def describe_labeller(llm: str, template: str, mode: str, adapter: str | None, preset: Any = None) -> str:
    """Who grades the pairs, in one line (manifest ``systems``, report, agreement.json)."""
    if preset is not None:
        return f"preset {preset.name}: {preset.description or preset.head.features}"
    if adapter is None:
        return f"LLM judge {llm}, zero-shot ({template}, {mode})"
    name = "shipped" if Path(adapter) == shipped_adapter_dir() else adapter
    return f"LLM judge {llm} + LoRA adapter {name} ({template}, {mode})"


def preset_doc(preset: Any) -> str:
    """Where a preset's recipe and held-out numbers are written up: its ``measured["doc"]``, else the page of
    its kind (a probe preset's, or a QL/cosine one's)."""
    doc = (getattr(preset, "measured", None) or {}).get("doc")  # written by the recipe that fitted it
    if doc:
        return str(doc)
    return "docs/judge-probe.md#shipped-as-best" if getattr(preset, "probe", None) else "docs/judge-preset.md"


def preset_cv(preset: Any) -> dict[str, Any] | None:
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
        "source": preset_doc(preset),
    }


def shipped_adapter_note() -> str:
    """What ``--adapter auto`` prints: the shipped LoRA adapter is v1's judge, and ``--preset best`` (the
    labeller relforge ships as its best, a preset rather than an adapter) agrees better with humans."""
    from relforge.judge.preset import JudgePreset

    cv = preset_cv(JudgePreset.load("best")) or {}
    row = next(iter((cv.get("rows") or {}).values()), None) or {}
    tau = row.get("kendall_tau_b")
    held_out = f" (pair tau_b {tau[0]:.3f} +- {tau[1]:.3f}, {cv.get('folds')}-fold by query)" if tau else ""
    return (
        "note: --adapter auto is the LoRA adapter relforge shipped first (pair tau_b 0.256 on its 10 validation "
        f"queries, where MiniLM cosine has 0.642); --preset best agrees better with human grades{held_out}: "
        "relforge judge --preset best ... (see relforge judge --help)"
    )
