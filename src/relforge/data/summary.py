"""The base of every stage ``summary.json`` model (one writer and one reader per class) and the JSON writer."""

from __future__ import annotations

import json
import os
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
    """A summary file's content: the fields that were set are written, in field order (by alias), and
    :meth:`read` parses what :meth:`write` wrote."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def as_json(self, **kw: Any) -> dict[str, Any]:
        """The written keys as JSON-able data: the fields that were set (a key the writer left out stays
        out; nested models are written whole), in declaration order."""
        data = self.model_dump(mode="json", by_alias=True, **kw)
        unset = {(f.alias or n) for n, f in type(self).model_fields.items() if n not in self.model_fields_set}
        return {k: v for k, v in data.items() if k not in unset}

    def write(
        self,
        path: str | os.PathLike,
        *,
        ascii_only: bool = False,
        newline: bool = True,
        exclude: set[str] | None = None,
    ) -> Path:
        """Write ``path`` atomically: indented JSON (``ascii_only`` escapes non-ASCII text, ``newline`` adds
        the trailing newline; both as the file has been written so far); ``exclude`` leaves fields out."""
        from relforge.data.io import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.as_json(exclude=exclude), fh, indent=2, ensure_ascii=ascii_only, default=str)
            if newline:
                fh.write("\n")
        return Path(path)

    @classmethod
    def read(cls: type[S], path: str | os.PathLike) -> S:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
