"""Reading and writing the field's formats: BEIR JSONL/TSV, TREC qrels and runs.

Readers stream (``iter_*``) so a 10M-line corpus can be validated without holding it in a dict;
``read_*`` collect into dicts. Every error names the file and the line. Every write is atomic
(temp file in the same folder, then rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import math
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from relforge.errors import DataError, MissingInputError
from relforge.types import Document, Qrels, Query, Run, sorted_ranking

PathLike = str | os.PathLike
_UMASK = os.umask(0)
os.umask(_UMASK)


# --------------------------------------------------------------------------- low level


def _open_text(path: PathLike) -> IO[str]:
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{p}: no such file")
    if p.is_dir():
        raise DataError("expected a file, got a folder", path=p)
    raw = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def _open_binary(path: PathLike) -> IO[bytes]:
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{p}: no such file")
    if p.is_dir():
        raise DataError("expected a file, got a folder", path=p)
    return gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")  # noqa: SIM115


def iter_lines(path: PathLike, *, keepends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped unless ``keepends``); decoding errors
    name the line.

    Lines are split on ``\\n`` as bytes and decoded one by one, so a bad byte is reported on its own
    line (a text wrapper decodes 8 KB chunks and would blame an earlier line). A UTF-8 BOM is
    dropped; ``.gz`` files are read transparently and a truncated gzip names the file.
    """
    lineno = 0
    try:
        with _open_binary(path) as fh:
            for raw in fh:
                lineno += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"not valid UTF-8 (byte {raw[e.start : e.start + 1]!r} at column {e.start + 1}: {e.reason}); "
                        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                        path=path,
                        line=lineno,
                    ) from None
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield lineno, (line if keepends else line.rstrip("\r\n"))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"corrupt or truncated gzip file after line {lineno} ({e})", path=path) from None


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg} at column {e.colno})", path=path, line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=lineno)
        yield lineno, obj


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temp file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, atomically); ``.gz`` paths are gzipped. Returns the row count."""
    if Path(path).suffix == ".gz":
        n = 0
        with atomic_write(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                n += 1
        return n
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------- corpus / queries


def _get_id(obj: dict[str, Any], path: PathLike, lineno: int, id_field: str = "_id") -> str:
    for key in (id_field, "_id", "id", "docid", "doc_id", "qid", "query_id"):
        if key in obj and obj[key] is not None and str(obj[key]).strip() != "":
            return str(obj[key])
    raise DataError(f"missing {id_field!r} field", path=path, line=lineno)


def iter_corpus(
    path: PathLike, *, allow_empty: bool = False, stats: dict | None = None
) -> Iterator[Document]:
    """Stream a BEIR ``corpus.jsonl``: ``{"_id", "title", "text", "metadata"?, ...}``.

    Extra top-level fields go into ``metadata``. Duplicate ids raise; an empty ``text`` raises
    unless ``allow_empty`` (then it is counted in ``stats["empty"]``).
    """
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        did = _get_id(obj, path, lineno)
        if did in seen:
            raise DataError(f"duplicate document id {did!r}", path=path, line=lineno)
        seen.add(did)
        text = obj.get("text")
        if text is not None and not isinstance(text, str):
            raise DataError(f"document {did!r}: 'text' must be a string", path=path, line=lineno)
        title = obj.get("title") or ""
        if not (text or "").strip() and not str(title).strip():
            if not allow_empty:
                raise DataError(f"document {did!r} has empty text", path=path, line=lineno)
            if stats is not None:
                stats["empty"] = stats.get("empty", 0) + 1
        meta = dict(obj.get("metadata") or {})
        for k, v in obj.items():
            if k not in ("_id", "id", "docid", "doc_id", "title", "text", "metadata"):
                meta.setdefault(k, v)
        yield Document(id=did, text=text or "", title=str(title), metadata=meta)


def read_corpus(path: PathLike, **kw) -> dict[str, Document]:
    return {d.id: d for d in iter_corpus(path, **kw)}


def write_corpus(path: PathLike, docs: Iterable[Document]) -> int:
    return write_jsonl(path, (d.to_beir() for d in docs))


def iter_queries(path: PathLike) -> Iterator[Query]:
    """Stream BEIR ``queries.jsonl``: ``{"_id", "text", "metadata"?, ...}`` (extra fields -> metadata)."""
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        qid = _get_id(obj, path, lineno)
        if qid in seen:
            raise DataError(f"duplicate query id {qid!r}", path=path, line=lineno)
        seen.add(qid)
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"query {qid!r} has empty or missing text", path=path, line=lineno)
        meta = dict(obj.get("metadata") or {})
        for k, v in obj.items():
            if k not in ("_id", "id", "qid", "query_id", "text", "metadata"):
                meta.setdefault(k, v)
        yield Query(id=qid, text=text, metadata=meta)


def read_queries(path: PathLike, *, allow_empty: bool = False) -> dict[str, Query]:
    """Read BEIR queries; a file without a single query is an error unless ``allow_empty``."""
    out = {q.id: q for q in iter_queries(path)}
    if not out and not allow_empty:
        raise DataError("no queries in the file", path=path)
    return out


def write_queries(path: PathLike, queries: Iterable[Query]) -> int:
    return write_jsonl(path, (q.to_beir() for q in queries))


# --------------------------------------------------------------------------- qrels


def _parse_grade(raw: str, path: PathLike, lineno: int) -> int:
    try:
        val = float(raw)
    except ValueError:
        raise DataError(f"relevance grade {raw!r} is not an integer", path=path, line=lineno) from None
    if not val.is_integer():  # also rejects nan / inf
        raise DataError(f"relevance grade {raw!r} is not an integer", path=path, line=lineno)
    return int(val)


def iter_qrels_lines(path: PathLike) -> Iterator[tuple[int, str, str, int]]:
    """Like :func:`iter_qrels` but yields ``(line_number, qid, docid, grade)``."""
    fmt = None
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if fmt is None:
            if len(parts) == 3 and parts[0].lower() in ("query-id", "query_id", "qid", "query"):
                fmt = "beir"
                continue
            if len(parts) == 4:
                fmt = "trec"
            elif len(parts) == 3:
                fmt = "beir"
            else:
                raise DataError(
                    f"cannot tell the qrels format: expected 3 columns (BEIR: query-id corpus-id score) "
                    f"or 4 (TREC: qid 0 docid rel), got {len(parts)}",
                    path=path,
                    line=lineno,
                )
        want = 4 if fmt == "trec" else 3
        if len(parts) != want:
            raise DataError(
                f"expected {want} columns ({fmt} qrels), got {len(parts)}", path=path, line=lineno
            )
        if fmt == "trec":
            qid, _, docid, grade = parts
        else:
            qid, docid, grade = parts
        yield lineno, qid, docid, _parse_grade(grade, path, lineno)


def iter_qrels(path: PathLike) -> Iterator[tuple[str, str, int]]:
    """Stream ``(qid, docid, grade)`` from a BEIR qrels TSV (header ``query-id corpus-id score``)
    or a TREC qrels file (``qid iter docid rel``, whitespace separated); the format is detected."""
    for _, qid, docid, grade in iter_qrels_lines(path):
        yield qid, docid, grade


def read_qrels(path: PathLike) -> Qrels:
    """Read qrels (BEIR TSV or TREC). A (qid, docid) pair judged twice keeps its last row; when the grades
    differ, one warning on the ``relforge.data`` logger (printed on stderr by default) gives the file, the
    count and the first conflicting line with both grades. ``relforge data validate`` fails on them."""
    qrels: Qrels = {}
    conflicts, first = 0, None
    for lineno, qid, docid, grade in iter_qrels_lines(path):
        docs = qrels.setdefault(qid, {})
        if docid in docs and docs[docid] != grade:
            conflicts += 1
            first = first or (lineno, qid, docid, docs[docid], grade)
        docs[docid] = grade
    if first:
        lineno, qid, docid, before, after = first
        logging.getLogger("relforge.data").warning(
            "%s: %d (query, doc) pairs are judged twice with different grades; first at line %d "
            "(query %s, doc %s: grade %s, earlier %s); kept the last row of each",
            path,
            conflicts,
            lineno,
            qid,
            docid,
            after,
            before,
        )
    return qrels


def write_qrels(path: PathLike, qrels: Qrels, *, format: str = "beir") -> int:
    """Write qrels as BEIR TSV (with header; default) or TREC (``qid 0 docid rel``)."""
    if format not in ("beir", "trec"):
        raise ValueError(f"format must be 'beir' or 'trec', got {format!r}")
    n = 0
    with atomic_write(path) as fh:
        if format == "beir":
            fh.write("query-id\tcorpus-id\tscore\n")
        for qid in qrels:
            for docid, grade in qrels[qid].items():
                fh.write(
                    f"{qid}\t{docid}\t{int(grade)}\n"
                    if format == "beir"
                    else f"{qid} 0 {docid} {int(grade)}\n"
                )
                n += 1
    return n


# --------------------------------------------------------------------------- runs


def iter_run(path: PathLike) -> Iterator[tuple[str, str, float]]:
    """Stream ``(qid, docid, score)`` from a TREC run (``qid Q0 docid rank score tag``)."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise DataError(
                f"expected 6 columns in a TREC run (qid Q0 docid rank score tag), got {len(parts)}",
                path=path,
                line=lineno,
            )
        try:
            score = float(parts[4])
        except ValueError:
            raise DataError(f"score {parts[4]!r} is not a number", path=path, line=lineno) from None
        if not math.isfinite(score):
            raise DataError(f"score {parts[4]!r} is not a finite number", path=path, line=lineno)
        yield parts[0], parts[2], score


def read_run(path: PathLike, *, allow_empty: bool = False) -> Run:
    """Read a TREC run; a run without a single line is an error unless ``allow_empty``."""
    run: Run = {}
    for qid, docid, score in iter_run(path):
        run.setdefault(qid, {})[docid] = score
    if not run and not allow_empty:
        raise DataError("the run is empty (no 'qid Q0 docid rank score tag' line)", path=path)
    return run


def write_run(path: PathLike, run: Run, *, tag: str = "relforge", top_k: int | None = None) -> int:
    """Write a TREC run ranked by relforge's tie policy (score desc, then doc id asc)."""
    n = 0
    with atomic_write(path) as fh:
        for qid in run:
            ranked = sorted_ranking(run[qid])
            if top_k is not None:
                ranked = ranked[:top_k]
            for rank, (docid, score) in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {docid} {rank} {float(score):.10g} {tag}\n")
                n += 1
    return n


# --------------------------------------------------------------------------- BEIR folders and validation


def beir_file(folder: PathLike, name: str) -> Path:
    """``folder/name``, or ``folder/name.gz`` when only the gzipped file exists."""
    p = Path(folder) / name
    if not p.exists() and p.with_name(p.name + ".gz").exists():
        return p.with_name(p.name + ".gz")
    return p


def read_beir(
    folder: PathLike, split: str | None = "test", *, validate: bool = True
) -> tuple[dict[str, Document], dict[str, Query], Qrels]:
    """Read a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (each may be ``.gz``).

    Args:
        folder: the BEIR folder.
        split: which ``qrels/<split>.tsv`` to read; ``None`` reads no qrels.
        validate: raise a :class:`DataError` naming the qrels file and line when a qrels row names a
            query or document that is not in ``queries.jsonl`` / ``corpus.jsonl``.

    Returns:
        ``(corpus, queries, qrels)``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(
            f"{folder}: no such folder (expected a BEIR folder with corpus.jsonl, queries.jsonl)"
        )
    corpus = read_corpus(beir_file(folder, "corpus.jsonl"))
    queries = read_queries(beir_file(folder, "queries.jsonl"))
    qrels: Qrels = {}
    if split is not None:
        qpath = beir_file(folder / "qrels", f"{split}.tsv")
        if not qpath.exists():
            have = sorted(p.name.split(".")[0] for p in (folder / "qrels").glob("*.tsv*"))
            raise MissingInputError(f"{qpath}: no such qrels split {split!r}; splits here: {have or 'none'}")
        for lineno, qid, docid, grade in iter_qrels_lines(qpath):
            if validate:
                _check_qrel_ids(qid, docid, queries, corpus, qpath, lineno)
            qrels.setdefault(qid, {})[docid] = grade
    return corpus, queries, qrels


def resolve_data_source(source: str, key: str = "data.source") -> Path:
    """A data source setting as a folder or file: ``sample:<name>`` -> the packaged sample folder; anything
    else a path that must exist (the error names the config ``key`` holding it)."""
    if source.startswith("sample:"):
        from relforge.data.samples import sample_path

        return Path(sample_path(source.split(":", 1)[1]))
    p = Path(source).expanduser()
    if not p.exists():
        raise MissingInputError(
            f"{key}: {source!r} does not exist; set {key} to "
            + (
                "sample:medquad, a MedQuAD .tar.xz / folder, or a BEIR folder"
                if key == "data.source"
                else "sample:liveqa-med or a BEIR folder with human qrels"
            )
        )
    return p.resolve()


def read_labelled(folder: PathLike) -> tuple[dict[str, Document], dict[str, Query], Qrels]:
    """A human-labelled BEIR folder (not written by relforge): qrels in ``qrels.tsv``, ``qrels/test.tsv``
    or ``qrels/dev.tsv``, the first that exists (the judge fine-tuning and agreement stages' human data).

    Returns:
        ``(corpus, queries, qrels)``."""
    folder = Path(folder)
    for q in (folder / "qrels.tsv", folder / "qrels" / "test.tsv", folder / "qrels" / "dev.tsv"):
        if q.exists():
            return read_corpus(folder / "corpus.jsonl"), read_queries(folder / "queries.jsonl"), read_qrels(q)
    raise MissingInputError(f"{folder}: no qrels.tsv or qrels/test.tsv with human labels")


def _check_qrel_ids(qid, docid, queries, corpus, path, lineno) -> None:
    if queries is not None and qid not in queries:
        raise DataError(f"qrels name unknown query id {qid!r} (not in the queries)", path=path, line=lineno)
    if corpus is not None and docid not in corpus:
        raise DataError(
            f"qrels name unknown document id {docid!r} (query {qid!r}; not in the corpus)",
            path=path,
            line=lineno,
        )


def check_qrels_file(path: PathLike, queries=None, corpus=None, *, stats: dict | None = None) -> int:
    """Stream a qrels file and raise a :class:`DataError` (file and line) at the first row naming a
    query or document that is not in ``queries`` / ``corpus`` (any containers of ids; ``None`` skips).

    ``stats`` (if given) receives ``conflicts`` (pairs judged twice with different grades) and
    ``conflict_lines`` (the first few lines of the second rows).

    Returns:
        The number of qrels rows checked.
    """
    n = 0
    seen: dict[tuple[str, str], int] = {}
    conflicts: list[int] = []
    for lineno, qid, docid, grade in iter_qrels_lines(path):
        _check_qrel_ids(qid, docid, queries, corpus, path, lineno)
        if seen.setdefault((qid, docid), grade) != grade:
            conflicts.append(lineno)
        n += 1
    if stats is not None:
        stats["conflicts"] = len(conflicts)
        stats["conflict_lines"] = conflicts[:5]
    return n


def validate_qrels(qrels: Qrels, queries=None, corpus=None, *, path: PathLike | None = None) -> None:
    """Raise a :class:`DataError` if qrels name a query or document that does not exist."""
    for qid, docs in qrels.items():
        if queries is not None and qid not in queries:
            raise DataError(f"qrels name unknown query id {qid!r}", path=path)
        if corpus is not None:
            for did in docs:
                if did not in corpus:
                    raise DataError(f"qrels name unknown document id {did!r} (query {qid!r})", path=path)


def validate_corpus(path: PathLike, *, max_examples: int = 5) -> dict[str, Any]:
    """Check a BEIR ``corpus.jsonl`` in one streaming pass, holding only the set of ids.

    Malformed JSON, a missing ``_id``, non-UTF-8 bytes or a non-string ``text`` raise a
    :class:`DataError` naming the file and line; duplicate ids and empty documents are counted
    (with the first ``max_examples`` line numbers) so one run reports them all.

    Returns:
        ``{"path", "documents", "unique_ids", "duplicates", "duplicate_lines", "empty", "empty_lines",
        "ids"}`` where ``ids`` is the set of unique ids (reuse it to check qrels with
        :func:`check_qrels_file`).
    """
    ids: set[str] = set()
    out: dict[str, Any] = {
        "path": str(path),
        "documents": 0,
        "duplicates": 0,
        "duplicate_lines": [],
        "empty": 0,
        "empty_lines": [],
    }
    for lineno, obj in iter_jsonl(path):
        did = _get_id(obj, path, lineno)
        out["documents"] += 1
        if did in ids:
            out["duplicates"] += 1
            if len(out["duplicate_lines"]) < max_examples:
                out["duplicate_lines"].append(lineno)
        ids.add(did)
        text = obj.get("text")
        if text is not None and not isinstance(text, str):
            raise DataError(
                f"document {did!r}: 'text' must be a string, got {type(text).__name__}",
                path=path,
                line=lineno,
            )
        if not (text or "").strip() and not str(obj.get("title") or "").strip():
            out["empty"] += 1
            if len(out["empty_lines"]) < max_examples:
                out["empty_lines"].append(lineno)
    out["unique_ids"] = len(ids)
    out["ids"] = ids
    return out
