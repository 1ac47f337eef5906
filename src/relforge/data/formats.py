"""Tabular formats with column mapping: JSONL, CSV/TSV, Parquet and Hugging Face ``datasets``,
plus BEIR and TREC, for the four record kinds (corpus, queries, qrels, run).

Every reader streams (a corpus is checked for duplicate ids with a set of ids only) and names the
file and line (CSV, JSONL) or row (Parquet, ``datasets``) of a bad record. Canonical columns:

========  ============================================
kind      columns
========  ============================================
corpus    ``_id``, ``title``, ``text``, ``metadata``
queries   ``_id``, ``text``, ``metadata``
qrels     ``query-id``, ``corpus-id``, ``score`` (int)
run       ``query-id``, ``corpus-id``, ``score`` (float)
========  ============================================

``columns`` maps a relforge field to the column holding it, e.g. ``{"id": "docid", "text": "body"}``
(fields: corpus ``id title text metadata``; queries ``id text metadata``; qrels ``qid docid grade``;
run ``qid docid score``). Without a mapping, common names are recognised (``_id``/``id``/``docid``,
``query-id``/``qid``, ``score``/``relevance``/``label``...). Extra columns of corpus and queries go
into ``metadata``. In CSV, Parquet and ``datasets``, ``metadata`` is stored as a JSON string so a
round trip is exact whatever its keys.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from relforge.data.config import FORMATS, KINDS
from relforge.data.io import (
    _UMASK,
    PathLike,
    atomic_write,
    iter_jsonl,
    iter_lines,
    iter_qrels_lines,
    iter_run,
    write_jsonl,
    write_qrels,
    write_run,
)
from relforge.errors import DataError, MissingInputError, UsageError
from relforge.types import Document, Qrels, Query, Run, sorted_ranking

#: relforge fields of each kind
FIELDS: dict[str, tuple[str, ...]] = {
    "corpus": ("id", "title", "text", "metadata"),
    "queries": ("id", "text", "metadata"),
    "qrels": ("qid", "docid", "grade"),
    "run": ("qid", "docid", "score"),
}
#: the column each field is written to
CANONICAL: dict[str, dict[str, str]] = {
    "corpus": {"id": "_id", "title": "title", "text": "text", "metadata": "metadata"},
    "queries": {"id": "_id", "text": "text", "metadata": "metadata"},
    "qrels": {"qid": "query-id", "docid": "corpus-id", "grade": "score"},
    "run": {"qid": "query-id", "docid": "corpus-id", "score": "score"},
}
#: column names recognised for each field when no mapping is given (first match wins)
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "corpus": {
        "id": ("_id", "id", "docid", "doc_id", "corpus-id", "corpus_id"),
        "title": ("title",),
        "text": ("text", "contents", "body", "passage"),
        "metadata": ("metadata",),
    },
    "queries": {
        "id": ("_id", "id", "qid", "query_id", "query-id"),
        "text": ("text", "query", "question"),
        "metadata": ("metadata",),
    },
    "qrels": {
        "qid": ("query-id", "query_id", "qid", "q_id", "query"),
        "docid": ("corpus-id", "corpus_id", "docid", "doc_id", "doc", "pid"),
        "grade": ("score", "relevance", "rel", "label", "grade", "judgment"),
    },
    "run": {
        "qid": ("query-id", "query_id", "qid", "q_id", "query"),
        "docid": ("corpus-id", "corpus_id", "docid", "doc_id", "doc", "pid"),
        "score": ("score", "sim", "similarity"),
    },
}
#: field names users may also write in a mapping (the BEIR column names)
_FIELD_SYNONYMS = {"_id": "id", "query-id": "qid", "corpus-id": "docid"}


# --------------------------------------------------------------------------- options


def parse_columns(spec: str | dict[str, str] | None, kind: str) -> dict[str, str]:
    """Parse ``"id=docid,text=body"`` (or a dict) into a field -> column mapping, checking field names."""
    _check_kind(kind)
    if not spec:
        return {}
    if isinstance(spec, str):
        out: dict[str, str] = {}
        for item in spec.split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise UsageError(
                    f"--columns item {item!r} is not FIELD=COLUMN (e.g. --columns id=docid,text=body)"
                )
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
        spec = out
    mapping: dict[str, str] = {}
    for k, v in spec.items():
        fld = _FIELD_SYNONYMS.get(k, k)
        if kind == "qrels" and fld == "score":
            fld = "grade"
        if fld not in FIELDS[kind]:
            raise UsageError(
                f"unknown {kind} field {k!r} in the column mapping; fields: {', '.join(FIELDS[kind])} "
                f"(e.g. --columns id=docid,text=body)"
            )
        mapping[fld] = v
    return mapping


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)} (--kind)")


def detect_format(path: PathLike, kind: str) -> str:
    """Guess the format from the path: a ``datasets`` folder -> ``hf``; ``.jsonl`` -> ``jsonl`` (BEIR for
    corpus/queries); ``.csv``; ``.tsv`` (BEIR for qrels); ``.parquet``; ``.trec``/``.run``/``.qrels``/``.txt``
    -> ``trec``. A trailing ``.gz`` is ignored."""
    _check_kind(kind)
    p = Path(path)
    if p.is_dir() or not p.suffix:
        return "hf"
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("jsonl", "json", "ndjson"):
        return "beir" if kind in ("corpus", "queries") else "jsonl"
    if suffix == "csv":
        return "csv"
    if suffix == "tsv":
        return "beir" if kind == "qrels" else "tsv"
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix in ("trec", "run", "qrels", "txt", "res"):
        return "trec"
    raise UsageError(
        f"cannot tell the format of {p} from its name; pass it explicitly (--from/--to one of {', '.join(FORMATS)})"
    )


def _check_format(fmt: str, kind: str) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)} (--from/--to)")
    if fmt == "beir" and kind == "run":
        raise UsageError("runs have no BEIR format; use trec, jsonl, csv, tsv, parquet or hf")
    if fmt == "trec" and kind in ("corpus", "queries"):
        raise UsageError(
            f"TREC format is for qrels and runs, not {kind}; use beir, jsonl, csv, tsv, parquet or hf"
        )
    return fmt


# --------------------------------------------------------------------------- raw rows


def _where(path: PathLike, loc: tuple[str, int]) -> dict[str, Any]:
    # lines go into DataError's path:line; rows (Parquet, datasets) into the message
    return {"path": path, "line": loc[1]} if loc[0] == "line" else {"path": f"{path} (row {loc[1]})"}


def _iter_csv_rows(path: PathLike, delimiter: str) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    lines = iter_lines(path, keepends=True)  # per-line UTF-8 decoding: a bad byte names its line
    reader = csv.reader((ln for _, ln in lines), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise DataError(f"malformed CSV header ({e})", path=path, line=1) from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataError(f"duplicate column names in the header: {header}", path=path, line=1)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path=path, line=reader.line_num) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DataError(
                f"expected {len(header)} columns ({', '.join(header)}), got {len(row)}",
                path=path,
                line=reader.line_num,
            )
        yield ("line", reader.line_num), dict(zip(header, row, strict=True))


def _iter_parquet_rows(path: PathLike) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    import pyarrow.parquet as pq

    if not Path(path).exists():
        raise MissingInputError(f"{path}: no such file")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError
        raise DataError(f"not a readable Parquet file ({e})", path=path) from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield ("row", n), row


def _load_hf(path: PathLike):
    import datasets

    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{p}: no such folder (expected a dataset saved with Dataset.save_to_disk)")
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"not a saved Hugging Face dataset ({type(e).__name__}: {e})", path=p) from None
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(
                f"holds a DatasetDict with splits {list(ds)}; save the one split to convert", path=p
            )
        ds = next(iter(ds.values()))
    return ds


def _iter_dataset_rows(ds) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    for i, row in enumerate(ds, start=1):
        yield ("row", i), row


def _raw_rows(path: PathLike, fmt: str) -> Iterator[tuple[tuple[str, int], dict[str, Any]]]:
    if fmt in ("beir", "jsonl"):
        for lineno, obj in iter_jsonl(path):
            yield ("line", lineno), obj
    elif fmt in ("csv", "tsv"):
        yield from _iter_csv_rows(path, "," if fmt == "csv" else "\t")
    elif fmt == "parquet":
        yield from _iter_parquet_rows(path)
    elif fmt == "hf":
        yield from _iter_dataset_rows(_load_hf(path))
    else:  # pragma: no cover - guarded by _check_format
        raise UsageError(f"format {fmt!r} has no row reader")


# --------------------------------------------------------------------------- rows -> records


def _resolve(kind: str, keys: Iterable[str], columns: dict[str, str]) -> dict[str, str | None]:
    keys = list(keys)
    out: dict[str, str | None] = {}
    for fld in FIELDS[kind]:
        if fld in columns:
            out[fld] = columns[fld]
        else:
            out[fld] = next((a for a in _ALIASES[kind][fld] if a in keys), None)
    return out


def _str_id(val: Any) -> str | None:
    if val is None:
        return None
    if isinstance(val, float) and val.is_integer():
        val = int(val)
    s = str(val).strip()
    return s or None


def _metadata(val: Any, where: dict[str, Any]) -> dict[str, Any]:
    if val is None or val == "":
        return {}
    if isinstance(val, dict):
        return dict(val)
    if isinstance(val, str):
        try:
            obj = json.loads(val)
        except json.JSONDecodeError as e:
            raise DataError(f"'metadata' is not valid JSON ({e.msg})", **where) from None
        if isinstance(obj, dict):
            return obj
    raise DataError(f"'metadata' must be a JSON object, got {type(val).__name__}", **where)


def _grade(val: Any, where: dict[str, Any]) -> int:
    if isinstance(val, bool):
        return int(val)
    if isinstance(val, int):
        return val
    try:
        f = float(str(val).strip())
    except ValueError:
        raise DataError(f"relevance grade {val!r} is not an integer", **where) from None
    if not f.is_integer():
        raise DataError(f"relevance grade {val!r} is not an integer", **where)
    return int(f)


def _score(val: Any, where: dict[str, Any]) -> float:
    try:
        f = float(str(val).strip()) if not isinstance(val, (int, float)) else float(val)
    except ValueError:
        raise DataError(f"score {val!r} is not a number", **where) from None
    if math.isnan(f):
        raise DataError("score is NaN", **where)
    return f


def _records(kind: str, rows, path: PathLike, columns: dict[str, str], allow_empty: bool) -> Iterator[Any]:
    cols: dict[str, str | None] | None = None
    seen: set[str] = set()
    for loc, row in rows:
        where = _where(path, loc)
        if cols is None:
            cols = _resolve(kind, row.keys(), columns)
        id_fields = ("id",) if kind in ("corpus", "queries") else ("qid", "docid")
        for fld in id_fields:
            col = cols[fld]
            if col is None or _str_id(row.get(col)) is None:
                tried = (
                    f"column {col!r}" if col else "any of " + ", ".join(repr(a) for a in _ALIASES[kind][fld])
                )
                raise DataError(f"missing {fld} ({tried}); map it with --columns {fld}=<column>", **where)
        if kind in ("qrels", "run"):
            qid, docid = _str_id(row[cols["qid"]]), _str_id(row[cols["docid"]])
            val_col = cols["grade" if kind == "qrels" else "score"]
            if val_col is None or row.get(val_col) is None or row.get(val_col) == "":
                raise DataError(f"missing {'grade' if kind == 'qrels' else 'score'} column", **where)
            val = _grade(row[val_col], where) if kind == "qrels" else _score(row[val_col], where)
            yield qid, docid, val
            continue
        rid = _str_id(row[cols["id"]])
        if rid in seen:
            raise DataError(f"duplicate {'document' if kind == 'corpus' else 'query'} id {rid!r}", **where)
        seen.add(rid)
        text = row.get(cols["text"]) if cols["text"] else None
        if text is not None and not isinstance(text, str):
            raise DataError(f"{rid!r}: text must be a string, got {type(text).__name__}", **where)
        meta = _metadata(row.get(cols["metadata"]) if cols["metadata"] else None, where)
        used = {c for c in cols.values() if c}
        for k, v in row.items():
            if k not in used and k is not None:
                meta.setdefault(k, v)
        if kind == "corpus":
            title = row.get(cols["title"]) if cols["title"] else None
            title = "" if title is None else str(title)
            if not (text or "").strip() and not title.strip() and not allow_empty:
                raise DataError(f"document {rid!r} has empty text", **where)
            yield Document(id=rid, text=text or "", title=title, metadata=meta)
        else:
            if not (text or "").strip():
                raise DataError(f"query {rid!r} has empty or missing text", **where)
            yield Query(id=rid, text=text, metadata=meta)


def iter_table(
    path: PathLike,
    kind: str,
    columns: str | dict[str, str] | None = None,
    *,
    format: str | None = None,
    allow_empty: bool = False,
) -> Iterator[Any]:
    """Stream records of ``kind`` from a file in any supported format.

    Args:
        path: input file (or ``datasets`` folder).
        kind: ``corpus``, ``queries``, ``qrels`` or ``run``.
        columns: field -> column mapping (``{"id": "docid"}`` or ``"id=docid,text=body"``).
        format: one of :data:`relforge.data.config.FORMATS`; guessed from the path when ``None``.
        allow_empty: accept corpus documents with empty title and text.

    Yields:
        :class:`Document` (corpus), :class:`Query` (queries), ``(qid, docid, grade)`` (qrels) or
        ``(qid, docid, score)`` (run).
    """
    cols = parse_columns(columns, kind)
    fmt = _check_format(format or detect_format(path, kind), kind)
    if fmt in ("beir", "trec") and kind in ("qrels", "run"):
        if cols:
            raise UsageError(f"--columns does not apply to {fmt} {kind} (fixed columns); drop it")
        if kind == "qrels":
            for _, qid, docid, grade in iter_qrels_lines(path):
                yield qid, docid, grade
        else:
            yield from iter_run(path)
        return
    yield from _records(kind, _raw_rows(path, fmt), path, cols, allow_empty)


def read_table(
    path: PathLike,
    kind: str,
    columns: str | dict[str, str] | None = None,
    *,
    format: str | None = None,
    allow_empty: bool = False,
):
    """Read a whole file of ``kind`` (see :func:`iter_table`).

    Returns:
        ``dict[str, Document]`` (corpus), ``dict[str, Query]`` (queries), :data:`Qrels` or :data:`Run`.
    """
    return collect(kind, iter_table(path, kind, columns, format=format, allow_empty=allow_empty))


def collect(kind: str, records: Iterable[Any]):
    """Gather streamed records into the dict relforge uses for ``kind``."""
    if kind in ("corpus", "queries"):
        return {r.id: r for r in records}
    out: dict[str, dict[str, Any]] = {}
    for qid, docid, val in records:
        out.setdefault(qid, {})[docid] = val
    return out


# --------------------------------------------------------------------------- records -> rows


def _triples(data) -> Iterator[tuple[str, str, Any]]:
    if isinstance(data, dict):
        for qid, docs in data.items():
            for docid, val in docs.items():
                yield qid, docid, val
    else:
        yield from data


def _rows(kind: str, data, columns: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Canonical (or mapped) rows; metadata as a JSON string for flat formats."""
    names = {**CANONICAL[kind], **columns}
    if kind in ("corpus", "queries"):
        for r in data.values() if isinstance(data, dict) else data:
            row = {names["id"]: r.id}
            if kind == "corpus":
                row[names["title"]] = r.title
            row[names["text"]] = r.text
            row[names["metadata"]] = json.dumps(r.metadata, ensure_ascii=False) if r.metadata else ""
            yield row
    elif kind == "qrels":
        for qid, docid, grade in _triples(data):
            yield {names["qid"]: qid, names["docid"]: docid, names["grade"]: int(grade)}
    else:
        run = data if isinstance(data, dict) else collect("run", data)
        for qid in run:
            for docid, score in sorted_ranking(run[qid]):
                yield {names["qid"]: qid, names["docid"]: docid, names["score"]: float(score)}


def write_table(
    path: PathLike, kind: str, data, *, format: str | None = None, columns: str | dict[str, str] | None = None
) -> int:
    """Write records of ``kind`` atomically in any supported format.

    Args:
        path: output file (or folder for ``hf``).
        kind: ``corpus``, ``queries``, ``qrels`` or ``run``.
        data: a dict as returned by :func:`read_table`, or an iterable of records as yielded by
            :func:`iter_table` (streamed for corpus and queries).
        format: guessed from the path when ``None``.
        columns: field -> output column mapping (default: the canonical columns).

    Returns:
        The number of records written.
    """
    cols = parse_columns(columns, kind)
    fmt = _check_format(format or detect_format(path, kind), kind)
    if fmt in ("beir", "trec") and kind in ("qrels", "run"):
        if cols:
            raise UsageError(f"output column names do not apply to {fmt} {kind}; drop the mapping")
        if kind == "qrels":
            qrels: Qrels = data if isinstance(data, dict) else collect("qrels", data)
            return write_qrels(path, qrels, format=fmt)
        run: Run = data if isinstance(data, dict) else collect("run", data)
        return write_run(path, run)
    if fmt in ("beir", "jsonl") and kind in ("corpus", "queries") and not cols:
        items = data.values() if isinstance(data, dict) else data
        return write_jsonl(path, (r.to_beir() for r in items))
    rows = _rows(kind, data, cols)
    if fmt in ("beir", "jsonl"):
        if kind in ("corpus", "queries"):  # mapped columns: keep metadata a JSON object
            mcol = cols.get("metadata", "metadata")
            rows = (
                {**r, mcol: json.loads(r[mcol])} if r[mcol] else {k: v for k, v in r.items() if k != mcol}
                for r in rows
            )
        return write_jsonl(path, rows)
    if fmt in ("csv", "tsv"):
        return _write_csv(path, kind, rows, cols, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        return _write_parquet(path, kind, rows, cols)
    return _save_hf(path, to_dataset(kind, data, columns=cols))


def _header(kind: str, cols: dict[str, str]) -> list[str]:
    names = {**CANONICAL[kind], **cols}
    return [names[f] for f in FIELDS[kind]]


def _write_csv(path: PathLike, kind: str, rows, cols, delimiter: str) -> int:
    import contextlib
    import gzip

    n = 0
    with contextlib.ExitStack() as stack:
        if str(path).endswith(".gz"):
            raw = stack.enter_context(atomic_write(path, "wb"))
            gz = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0))
            fh = stack.enter_context(io.TextIOWrapper(gz, encoding="utf-8", newline=""))
        else:
            fh = stack.enter_context(atomic_write(path, "w"))
        w = csv.DictWriter(fh, fieldnames=_header(kind, cols), delimiter=delimiter, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def _arrow_schema(kind: str, cols: dict[str, str]):
    import pyarrow as pa

    types = {"grade": pa.int64(), "score": pa.float64()}
    return pa.schema(
        [(name, types.get(f, pa.string())) for f, name in zip(FIELDS[kind], _header(kind, cols), strict=True)]
    )


def _write_parquet(path: PathLike, kind: str, rows, cols, batch: int = 8192) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(kind, cols)
    n = 0
    with atomic_write(path, "wb") as fh:
        writer = pq.ParquetWriter(fh, schema)
        buf: list[dict[str, Any]] = []
        for row in rows:
            buf.append(row)
            if len(buf) >= batch:
                writer.write_table(pa.Table.from_pylist(buf, schema=schema))
                n += len(buf)
                buf = []
        if buf or n == 0:
            writer.write_table(pa.Table.from_pylist(buf, schema=schema))
            n += len(buf)
        writer.close()
    return n


# --------------------------------------------------------------------------- Hugging Face datasets


def to_dataset(kind: str, data, *, columns: str | dict[str, str] | None = None):
    """Convert corpus / queries / qrels / run to a ``datasets.Dataset`` with the canonical (BEIR) columns.

    Args:
        kind: ``corpus``, ``queries``, ``qrels`` or ``run``.
        data: a dict as returned by :func:`read_table` or an iterable of records.
        columns: field -> column mapping for the output.

    Returns:
        A ``datasets.Dataset``; ``metadata`` is a JSON string column (exact round trip).
    """
    import datasets
    import pyarrow as pa

    cols = parse_columns(columns, kind)
    table = pa.Table.from_pylist(list(_rows(kind, data, cols)), schema=_arrow_schema(kind, cols))
    return datasets.Dataset(table)


def from_dataset(kind: str, ds, *, columns: str | dict[str, str] | None = None, allow_empty: bool = False):
    """Convert a ``datasets.Dataset`` (e.g. BEIR's ``corpus`` config from the Hub) back to relforge records.

    Returns:
        ``dict[str, Document]``, ``dict[str, Query]``, :data:`Qrels` or :data:`Run`; bad rows raise a
        :class:`DataError` naming the row.
    """
    cols = parse_columns(columns, kind)
    return collect(kind, _records(kind, _iter_dataset_rows(ds), "<datasets.Dataset>", cols, allow_empty))


def _save_hf(path: PathLike, ds) -> int:
    """``save_to_disk`` into a temp folder beside ``path``, then swap it in (atomic for readers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    import datasets

    quiet = datasets.utils.are_progress_bars_disabled()
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        datasets.disable_progress_bars()
        try:
            ds.save_to_disk(str(tmp))
        finally:
            if not quiet:
                datasets.enable_progress_bars()
        from relforge.outputs import MARKER, owned

        if path.exists() and not owned(path):
            # a folder relforge did not create (written with --overwrite): replace only our files
            for f in sorted(tmp.iterdir()):
                os.replace(f, path / f.name)
            shutil.rmtree(tmp, ignore_errors=True)
            return len(ds)
        (tmp / MARKER).write_text("written by relforge; relforge commands may replace this folder\n")
        if path.exists():  # relforge's own earlier output: swap it whole
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(ds)


# --------------------------------------------------------------------------- conversion


def convert(
    src: PathLike,
    dst: PathLike,
    kind: str,
    *,
    from_format: str | None = None,
    to_format: str | None = None,
    columns: str | dict[str, str] | None = None,
    out_columns: str | dict[str, str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert a file of ``kind`` between formats, streaming corpus and queries.

    An existing output file, or a non-empty output folder (``hf``) relforge did not create, is refused
    unless ``overwrite`` (:mod:`relforge.outputs`).

    Returns:
        ``{"records", "from", "to"}``.
    """
    _check_kind(kind)
    fin = _check_format(from_format or detect_format(src, kind), kind)
    fout = _check_format(to_format or detect_format(dst, kind), kind)
    if Path(src).resolve() == Path(dst).resolve():
        raise UsageError(f"input and output are the same path ({src}); write to another file")
    from relforge.outputs import guard_dir, guard_file

    if fout == "hf":
        guard_dir(dst, overwrite=overwrite, flag="output folder")
        if Path(dst).is_dir() and Path(dst).resolve() in Path(src).resolve().parents:
            raise UsageError(f"the input {src} is inside the output folder {dst}; write to another folder")
    else:
        guard_file(dst, overwrite=overwrite, flag="output")
    records = iter_table(src, kind, columns, format=fin)
    n = write_table(dst, kind, records, format=fout, columns=out_columns)
    return {"records": n, "from": fin, "to": fout}
