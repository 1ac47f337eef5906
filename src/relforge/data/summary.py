"""The base of every stage ``summary.json`` model (one writer and one reader per class) and the JSON writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

S = TypeVar("S", bound="SummaryFile")


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (non-ASCII kept, one trailing newline), written atomically: the format of
    every JSON artifact of a pipeline run."""
    from relforge.data.io import atomic_write

    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


class SummaryFile(BaseModel):
    """A summary file's content. Only the fields that were set are written (a key absent today stays absent),
    in field order; :meth:`read` parses what :meth:`write` wrote."""

    model_config = ConfigDict(extra="forbid")

    def as_json(self, **kw: Any) -> dict[str, Any]:
        """The written keys (set fields, in declaration order) as JSON-able data."""
        return self.model_dump(mode="json", exclude_unset=True, **kw)

    def write(self, path: Path) -> None:
        """``path`` atomically (:func:`write_json`)."""
        write_json(path, self.as_json())

    @classmethod
    def read(cls: type[S], path: Path) -> S:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
