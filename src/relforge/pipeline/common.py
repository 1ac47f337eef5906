"""What every pipeline stage shares: the system names, the variants, JSON in and out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relforge.config import PipelineConfig
from relforge.data.summary import write_json  # noqa: F401  (re-exported: the pipeline stages import it from here)

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


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dump(model: Any) -> Any:
    """A config section as JSON-able data (what goes into a stage's config hash)."""
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


def group_variants(cfg: PipelineConfig) -> list[str]:
    """The variants whose groups are built: those trained and those of the ablation, in table order."""
    return sorted(
        set(cfg.train.variants) | set(cfg.ablation.variants if cfg.ablation.sizes else []),
        key=VARIANTS.index,
    )


def backbone_model(cfg: PipelineConfig) -> str:
    """The untrained start every variant trains from (``train.base``); reranked as the ``backbone``."""
    return cfg.train.base
