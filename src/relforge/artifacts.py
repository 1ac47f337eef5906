"""The run folder's shared artifacts: the files the pipeline writes and the report reads, named once.

Paths are relative to a pipeline run folder. :mod:`relforge.pipeline.layout` re-exports them beside the
rest of the layout, and :mod:`relforge.report` reads them from here (the report does not import the
pipeline). :class:`Manifest` is ``manifest.json``: the runner writes it and the report reads it through
this one class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------- paths the report reads

MANIFEST = "manifest.json"
METRICS_JSON = "eval/metrics.json"
METRICS_CSV = "eval/metrics.csv"
EXTRA_SUMMARY = "eval/extra/summary.json"
JUDGMENTS = "judge/judgments.jsonl"
AGREEMENT = "judge/agreement.json"
JUDGE_FINETUNE_METRICS = "judge_finetune/metrics.jsonl"
DATASET_SUMMARY = "dataset/summary.json"
ABLATION_JSON = "ablation.json"
REPORT = "report.html"


def extra_dir(name: str) -> str:
    """The folder of the ``evaluate.extra`` collection ``name``."""
    return f"eval/extra/{name}"


#: the trained variants' run names (keys of eval/metrics.json runs), in table order; their untrained
#: start is the run ``backbone``
VARIANTS = ("plain", "judged", "soft")

# --------------------------------------------------------------------------- manifest.json

MANIFEST_VERSION = 1


class StageRecord(BaseModel):
    """One stage's entry in ``manifest.json`` (fields in the order the runner fills them in).

    ``counts`` is the stage's summary (what its function returned, plus anything it counted on the side).
    """

    model_config = ConfigDict(extra="allow")

    status: Literal["running", "done", "failed", "interrupted"]
    reason: str | None = None
    config_hash: str | None = None
    inputs: dict[str, str | None] = Field(default_factory=dict)
    started: str | None = None
    error: str | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    llm: dict[str, int] | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str | None] = Field(default_factory=dict)
    finished: str | None = None
    llm_tokens: dict[str, int] | None = None
    cache_hits: int | None = None
    cache_misses: int | None = None
    skipped_last_run: bool | None = None


class Manifest(BaseModel):
    """``manifest.json``: per stage its record, and the run's top-level facts.

    Keys are written in declaration order (then any extra ones), only those that were set: the file of a
    run is the same whether it was written before or after this class existed.
    """

    model_config = ConfigDict(extra="allow")

    version: int = MANIFEST_VERSION
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    created: str | None = None
    relforge_version: str | None = None
    name: str | None = None
    #: the resolved pipeline configuration (secrets redacted)
    config: dict[str, Any] | None = None
    #: the enabled stages in pipeline order
    stage_order: list[str] | None = None
    updated: str | None = None
    #: the final reranker's folder, relative to the run folder
    reranker_model: str | None = None
    #: evaluated system (run name) -> one line describing it
    systems: dict[str, str] | None = None
    last_run_wall_s: float | None = None
    total_stage_wall_s: float | None = None

    def to_data(self) -> dict[str, Any]:
        """The JSON-able content: the keys that were set, in declaration order."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """Read ``manifest.json`` (a file, or the run folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST
        return cls.model_validate_json(p.read_text(encoding="utf-8"))

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically to ``path`` (a file, or the run folder)."""
        from relforge.data.io import atomic_write

        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST
        with atomic_write(p) as fh:
            json.dump(self.to_data(), fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
