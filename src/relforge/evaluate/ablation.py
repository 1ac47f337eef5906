"""The dataset-size ablation's record: ``ablation.json`` (:class:`AblationResult`), and its pieces.

The pipeline's ``ablation`` stage trains rerankers on nested subsets of the groups
(:func:`nested_subsets`) and scores each like the main table; it writes :class:`AblationResult`, which
the report reads through the same class.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict


def nested_subsets(n_groups: int, sizes: list[int], seed: int) -> dict[int, list[int]]:
    """Row indices of nested subsets: the first N of one fixed shuffled order (size capped at n_groups)."""
    order = list(range(n_groups))
    random.Random(seed).shuffle(order)
    return {s: sorted(order[: min(s, n_groups)]) for s in sizes}


def p_value(test) -> float | None:
    """The randomisation-test p-value of a :class:`~relforge.evaluate.PairedTest` (None: no test, e.g. the
    baseline itself or a measure not computed)."""
    return None if test is None else test.perm_p


class AblationRow(BaseModel):
    """One point: a training-set size of one variant. Its measures (``nDCG@10``, ...) and
    ``p_vs_<first stage>`` (randomisation-test p-value of its nDCG@10) are further keys."""

    model_config = ConfigDict(extra="allow")

    #: groups trained on
    size: int
    variant: str | None = None
    #: the size asked for (sizes at or above the number of groups collapse to it)
    requested_size: int | None = None
    #: where a full-set point's numbers come from (the ``train`` stage's model) instead of a new training
    source: str | None = None
    #: the trained model kept its untrained start: its run is the backbone's
    same_as_backbone: bool | None = None
    train_seconds: float | None = None

    def values(self) -> dict[str, object]:
        """The row as written (keys that were set, in order)."""
        return self.model_dump(exclude_unset=True)


class AblationResult(BaseModel):
    """``ablation.json``."""

    rows: list[AblationRow]
    #: system display name -> its nDCG@10 (the plot's horizontal lines)
    reference: dict[str, float] = {}
    #: the x axis' label
    x: str = "training groups"
    variants: list[str] | None = None
    seed: int | None = None

    @classmethod
    def read(cls, path: str | os.PathLike) -> AblationResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def write(self, path: str | os.PathLike) -> None:
        from relforge.data import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.model_dump(exclude_unset=True), fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")
