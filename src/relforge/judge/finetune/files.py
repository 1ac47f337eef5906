"""The adapter folder: its file names, its ``relforge.json`` and the adapters shipped in the package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relforge.errors import UsageError

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"
META_FILE = "relforge.json"
PREDICTIONS_FILE = "val_predictions.jsonl"
TEST_PREDICTIONS_FILE = "test_predictions.jsonl"


def read_adapter_meta(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``relforge.json`` of an adapter folder (base model, template hash, split, metrics)."""
    p = Path(adapter_dir) / META_FILE
    if not p.exists():
        raise UsageError(f"{adapter_dir} is not a relforge judge adapter (no {META_FILE})")
    return json.loads(p.read_text(encoding="utf-8"))


def write_adapter_meta(adapter_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``relforge.json`` atomically."""
    tmp = adapter_dir / (META_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    tmp.replace(adapter_dir / META_FILE)


def shipped_adapter_dir(name: str = "smollm2-liveqa") -> Path:
    """Folder of an adapter shipped inside the package (``relforge/judge/adapters/<name>``)."""
    from importlib import resources

    return Path(str(resources.files("relforge.judge") / "adapters" / name))
