"""MedQuAD importer: NIH medical question-answer XML -> a BEIR folder with a leak-free split.

MedQuAD (Ben Abacha & Demner-Fushman, BMC Bioinformatics 20:511, 2019; CC BY 4.0) ships one XML file
per *document* (a web page about one focus: a disease, drug, test...) holding its question-answer
pairs. The importer maps:

- documents = answers. ``_id`` = ``<source>_<file stem>_A<pid>`` (e.g. ``GARD_0000004_A1``): stable
  across runs, machines and archive member order. ``title`` = the focus; ``metadata``: source,
  subset, url, qtype, focus, umls_cuis, semantic_types, semantic_group, category, synonyms,
  question, document, pid and, for an answer whose text repeats an earlier one, ``duplicate_of``.
- queries = the original questions. ``_id`` = ``<source>_<file stem>_Q<pid>``; metadata: qtype,
  doc_id, source, document, focus, split.
- qrels = each question -> its own answer with grade :data:`ANSWER_GRADE` (3, the top of relforge's
  0..3 scale: "dedicated to the query, contains the exact answer"; LiveQA-Med's grades use the same
  scale). Other answers are unjudged, not irrelevant.

The split is by *document* (``<source>_<Document id>``; CancerGov splits one page into several XML
files that share a Document id, and they stay together). Documents that share an identical question
text (case-insensitive; the same focus covered by two sites) form one split unit, so a test question
never appears verbatim in training either. A unit goes to train/dev/test by a salted SHA-256 of its
key (its smallest document key), so the assignment does not depend on member order and no document's
questions straddle splits. Identical *answer* texts (boilerplate such as GHR's inheritance
paragraphs) may sit in several splits: they are counted and marked ``duplicate_of``. The three subsets whose answers were removed upstream for copyright
(:data:`REMOVED_SUBSETS`) and any pair with an empty answer are skipped and counted.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import tarfile
import time
import xml.etree.ElementTree as ET
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relforge.data.config import DEFAULT_FRACTIONS, DEFAULT_SEED, MedQuADConfig
from relforge.data.io import atomic_write, write_corpus, write_qrels, write_queries
from relforge.errors import DataError, MissingInputError, UsageError
from relforge.types import Document, Qrels, Query

#: subsets whose answers MedQuAD removed (MedlinePlus copyright): folder name -> ``source`` attribute
REMOVED_SUBSETS = {
    "10_MPlus_ADAM_QA": "ADAM",
    "11_MPlusDrugs_QA": "MPlusDrugs",
    "12_MPlusHerbsSupplements_QA": "MPlusHerbsSupplements",
}
#: grade of a question's own answer in the qrels (top of the 0..3 scale)
ANSWER_GRADE = 3
SPLITS = ("train", "dev", "test")

_WS = re.compile(r"[ \t\u00a0\u2009\u200b]+")
_SUBSET_NUM = re.compile(r"^(\d+)_")


@dataclass
class MedQuADPair:
    """One question-answer pair as parsed (answer may be empty)."""

    source: str
    subset: str
    member: str
    stem: str
    document: str  # split key: <source>_<Document id>
    pid: str
    question: str
    answer: str
    qtype: str
    focus: str
    url: str
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return f"{self.source}_{self.stem}_A{self.pid}"

    @property
    def query_id(self) -> str:
        return f"{self.source}_{self.stem}_Q{self.pid}"


@dataclass
class MedQuADCollection:
    """Everything read from the XML: all pairs (answered or not) plus bookkeeping."""

    path: str
    pairs: list[MedQuADPair]
    files: Counter  # XML files per subset
    ignored_files: list[str]


# --------------------------------------------------------------------------- reading


def clean_answer(text: str) -> str:
    """Strip the XML indentation: trim each line, collapse runs of spaces, drop blank lines."""
    lines = (_WS.sub(" ", ln).strip() for ln in text.splitlines())
    return "\n".join(ln for ln in lines if ln)


def _clean_line(text: str) -> str:
    return " ".join(text.split())


def iter_xml_members(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(member name, bytes)`` for every file under a folder or inside a tar (``.tar.xz``, ``.tgz``...).

    The tar is streamed (never extracted to disk). Non-XML members are yielded too (callers decide).
    A truncated or corrupt archive raises a :class:`DataError` naming the member being read.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(
            f"{path}: no such file or folder (expected the MedQuAD folder or medquad-xml.tar.xz)"
        )
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            yield p.relative_to(path).as_posix(), p.read_bytes()
        return
    current, last_ok = None, None
    try:
        with _open_compressed(path) as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                current = member.name
                if not member.isfile():
                    current, last_ok = None, member.name
                    continue
                fh = tf.extractfile(member)
                data = fh.read() if fh is not None else b""
                if len(data) != member.size:
                    raise EOFError(f"read {len(data)} of {member.size} bytes")
                current, last_ok = None, member.name
                yield member.name, data
            # drain the compressed stream to its end marker: a cut download fails even when the cut
            # falls in the tar's zero padding
            while raw.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError, ValueError) as e:
        if current is not None:
            where = f"while reading member {current}" + (
                f" (last complete member: {last_ok})" if last_ok else ""
            )
        else:
            where = f"after member {last_ok} (the next entry is cut or damaged)" if last_ok else None
        if where is None:
            raise DataError(
                f"not a tar archive, or truncated or corrupt at its start ({e}); expected the MedQuAD "
                "folder or medquad-xml.tar.xz",
                path=path,
            ) from None
        raise DataError(
            f"truncated or corrupt archive {where}: {e}; re-download the archive", path=path
        ) from None


def _open_compressed(path: Path):
    """The archive as a decompressed stream, picked by magic bytes (xz, gzip, bzip2 or plain tar).

    Decompressing ourselves (not ``tarfile``'s ``r|*``) makes a cut stream raise ``EOFError`` when drained."""
    import bz2
    import gzip

    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115


def _find(el: ET.Element, *names: str) -> ET.Element | None:
    for n in names:
        hit = el.find(n)
        if hit is not None:
            return hit
    return None


def _texts(el: ET.Element, *names: str) -> list[str]:
    out: list[str] = []
    for n in names:
        for hit in el.iter(n):
            t = _clean_line(hit.text or "")
            if t and t not in out:
                out.append(t)
    return out


def parse_medquad_xml(data: bytes, member: str, *, where: str | None = None) -> list[MedQuADPair]:
    """Parse one MedQuAD XML file into its pairs (both the usual ``<Document>`` schema and the
    lower-case ``<doc>/<pair>`` variant four NINDS files use).

    Args:
        data: the file's bytes.
        member: its path inside the folder or archive (``<subset>/<stem>.xml``).
        where: how errors name the file (default ``member``).

    Returns:
        The pairs, answered or not, in file order.

    Raises:
        DataError: malformed XML (with the line inside the member), or a duplicated ``pid``.
    """
    where = where or member
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else None
        raise DataError(f"malformed XML ({e})", path=where, line=line) from None
    parts = member.split("/")
    stem = Path(parts[-1]).stem
    subset = parts[-2] if len(parts) > 1 else ""
    source = root.get("source") or root.get("corpus") or re.sub(r"^\d+_|_QA.*$", "", subset) or "MedQuAD"
    xml_id = root.get("id") or root.get("docid") or root.get("fid") or stem
    focus_el = _find(root, "Focus", "doctitle-focus")
    focus = _clean_line(focus_el.text or "") if focus_el is not None else ""
    semgroup = _texts(root, "SemanticGroup", "semanticGroup")
    category = _texts(root, "Category")
    annotations = {
        "umls_cuis": _texts(root, "CUI", "cui"),
        "semantic_types": _texts(root, "SemanticType", "semanticType"),
        "semantic_group": semgroup[0] if semgroup else None,
        "category": category[0] if category else None,
        "synonyms": _texts(root, "Synonym"),
    }
    pairs: list[MedQuADPair] = []
    seen: set[str] = set()
    qa_elements = list(root.iter("QAPair")) or list(root.iter("pair"))
    for i, qa in enumerate(qa_elements, start=1):
        pid = (qa.get("pid") or "").strip() or f"n{i}"
        if pid in seen:
            raise DataError(f"duplicate QAPair pid {pid!r}", path=where)
        seen.add(pid)
        q = _find(qa, "Question", "question")
        a = _find(qa, "Answer", "answer")
        pairs.append(
            MedQuADPair(
                source=source,
                subset=subset,
                member=member,
                stem=stem,
                document=f"{source}_{xml_id}",
                pid=pid,
                question=_clean_line("".join(q.itertext())) if q is not None else "",
                answer=clean_answer("".join(a.itertext())) if a is not None else "",
                qtype=(q.get("qtype") or "").strip() if q is not None else "",
                focus=focus,
                url=root.get("url") or "",
                annotations=annotations,
            )
        )
    return pairs


def load_medquad(path: str | Path) -> MedQuADCollection:
    """Read every MedQuAD XML file under a folder or in a tar archive (streamed).

    Pairs come back sorted by (subset number, file stem, pid), so everything derived from them is
    independent of the archive's member order.
    """
    pairs: list[MedQuADPair] = []
    files: Counter = Counter()
    ignored: list[str] = []
    archive = Path(path)
    for member, data in iter_xml_members(archive):
        if not member.lower().endswith(".xml"):
            ignored.append(member)
            continue
        where = str(archive / member) if archive.is_dir() else f"{archive}:{member}"
        got = parse_medquad_xml(data, member, where=where)
        subset = member.split("/")[-2] if "/" in member else ""
        files[subset] += 1
        pairs.extend(got)
    if not files:
        raise DataError("no MedQuAD XML files found (expected <subset>/<id>.xml members)", path=archive)

    def key(p: MedQuADPair):
        m = _SUBSET_NUM.match(p.subset)
        pid_num = int(p.pid) if p.pid.isdigit() else 10**9
        return (int(m.group(1)) if m else 10**9, p.subset, p.stem, pid_num, p.pid)

    pairs.sort(key=key)
    return MedQuADCollection(path=str(path), pairs=pairs, files=files, ignored_files=ignored)


# --------------------------------------------------------------------------- splitting and writing


def split_of(document: str, seed: int = DEFAULT_SEED, fractions=DEFAULT_FRACTIONS) -> str:
    """The split of a document key: a salted SHA-256 mapped to [0, 1), bucketed by ``fractions``."""
    h = hashlib.sha256(f"{seed}\x00{document}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    acc = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        acc += frac
        if frac > 0 and u < acc:
            return name
    return [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0][-1]  # float round-off at the top end


def split_units(pairs: list[MedQuADPair]) -> dict[str, str]:
    """Map each document key to its split unit: documents that share an identical question text
    (case-insensitive, e.g. "What is (are) Diabetes ?" in NIDDK, MPlusHealthTopics and SeniorHealth)
    form one unit, keyed by its smallest document key, so a question text never straddles splits.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_doc_of_question: dict[str, str] = {}
    for p in pairs:
        find(p.document)
        k = p.question.lower()
        if k in first_doc_of_question:
            a, b = find(p.document), find(first_doc_of_question[k])
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            first_doc_of_question[k] = p.document
    return {d: find(d) for d in parent}


def _is_removed(p: MedQuADPair) -> bool:
    return p.subset in REMOVED_SUBSETS or p.source in REMOVED_SUBSETS.values()


def select_answered(coll: MedQuADCollection) -> tuple[list[MedQuADPair], dict[str, Any]]:
    """Drop the removed subsets and empty answers/questions; return the kept pairs and the counts."""
    kept: list[MedQuADPair] = []
    by_subset: Counter = Counter()
    reasons: Counter = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for p in coll.pairs:
        if _is_removed(p):
            reason = "removed_subset"
            by_subset[p.subset or p.source] += 1
        elif not p.answer:
            reason = "empty_answer"
        elif not p.question:
            reason = "empty_question"
        else:
            kept.append(p)
            continue
        reasons[reason] += 1
        if reason != "removed_subset" and len(examples[reason]) < 10:
            examples[reason].append(f"{p.member}#pid={p.pid}")
    skipped = {
        "removed_subset": reasons["removed_subset"],
        "empty_answer": reasons["empty_answer"],
        "empty_question": reasons["empty_question"],
    }
    return kept, {
        "skipped": skipped,
        "skipped_by_subset": dict(sorted(by_subset.items())),
        "skipped_examples": dict(examples),
    }


def _pair_document(p: MedQuADPair, duplicate_of: str | None) -> Document:
    """The answer as a corpus document (title: the focus; metadata: the pair's fields)."""
    meta: dict[str, Any] = {
        "source": p.source,
        "subset": p.subset,
        "url": p.url,
        "qtype": p.qtype,
        "focus": p.focus,
        **p.annotations,
        "question": p.question,
        "document": p.document,
        "pid": p.pid,
    }
    if duplicate_of is not None:
        meta["duplicate_of"] = duplicate_of
    return Document(id=p.doc_id, text=p.answer, title=p.focus, metadata=meta)


def _pair_query(p: MedQuADPair, split: str) -> Query:
    """The question as a query, with the split it fell in."""
    return Query(
        id=p.query_id,
        text=p.question,
        metadata={
            "qtype": p.qtype,
            "doc_id": p.doc_id,
            "source": p.source,
            "document": p.document,
            "focus": p.focus,
            "split": split,
        },
    )


def write_medquad_beir(
    pairs: list[MedQuADPair], out_dir: str | Path, *, seed: int = DEFAULT_SEED, fractions=DEFAULT_FRACTIONS
) -> dict[str, Any]:
    """Write answered pairs as a BEIR folder (corpus, queries, qrels/{train,dev,test}.tsv).

    Returns:
        The part of the summary computed here: split sizes, duplicate counts, per-source and per-qtype counts.
    """
    out_dir = Path(out_dir)
    docs: list[Document] = []
    queries: list[Query] = []
    qrels: dict[str, Qrels] = {s: {} for s in SPLITS}
    first_with_text: dict[str, str] = {}
    dup_docs = 0
    qtext_splits: dict[str, set[str]] = defaultdict(set)
    split_docs: dict[str, set[str]] = {s: set() for s in SPLITS}
    per_source: dict[str, Counter] = defaultdict(Counter)
    doc_ids: set[str] = set()
    unit_of = split_units(pairs)
    answer_splits: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        if p.doc_id in doc_ids:
            raise DataError(
                f"two pairs map to the same id {p.doc_id!r} (pid {p.pid!r} repeated?)", path=p.member
            )
        doc_ids.add(p.doc_id)
        split = split_of(unit_of[p.document], seed, fractions)
        h = hashlib.sha1(p.answer.encode()).hexdigest()
        answer_splits[h].add(split)
        duplicate_of = first_with_text.get(h)
        if duplicate_of is not None:
            dup_docs += 1
        else:
            first_with_text[h] = p.doc_id
        docs.append(_pair_document(p, duplicate_of))
        queries.append(_pair_query(p, split))
        qrels[split][p.query_id] = {p.doc_id: ANSWER_GRADE}
        qtext_splits[p.question.lower()].add(split)
        split_docs[split].add(p.document)
        per_source[p.source]["answered"] += 1
        per_source[p.source][split] += 1
    write_corpus(out_dir / "corpus.jsonl", docs)
    write_queries(out_dir / "queries.jsonl", queries)
    for s in SPLITS:
        write_qrels(out_dir / "qrels" / f"{s}.tsv", qrels[s])
    dup_groups = Counter(d.metadata.get("duplicate_of") for d in docs if "duplicate_of" in d.metadata)
    return {
        "answered_pairs": len(docs),
        "splits": {s: {"queries": len(qrels[s]), "documents": len(split_docs[s])} for s in SPLITS},
        "per_source": {k: dict(v) for k, v in sorted(per_source.items())},
        "qtypes": dict(Counter(p.qtype for p in pairs).most_common()),
        "duplicate_answer_texts": {"documents": dup_docs, "distinct_texts_repeated": len(dup_groups)},
        "duplicate_question_texts": len(pairs) - len(qtext_splits),
        "question_texts_in_several_splits": sum(1 for v in qtext_splits.values() if len(v) > 1),
        "answer_texts_in_several_splits": sum(1 for v in answer_splits.values() if len(v) > 1),
        "answers_without_focus": sum(1 for d in docs if not d.title),  # upstream <Focus></Focus>: empty title
        "split_units": {
            "units": len(set(unit_of.values())),
            "documents_grouped_by_shared_question": _grouped(unit_of),
        },
    }


def _grouped(unit_of: dict[str, str]) -> int:
    sizes = Counter(unit_of.values())
    return sum(1 for u in unit_of.values() if sizes[u] > 1)


def import_medquad(
    path: str | Path, out_dir: str | Path, *, seed: int = DEFAULT_SEED, fractions=DEFAULT_FRACTIONS
) -> dict[str, Any]:
    """Import MedQuAD (a folder or the ``.tar.xz``, streamed) into a BEIR folder.

    Args:
        path: the MedQuAD folder (``medq/`` or any folder holding the ``<n>_<Source>_QA`` subsets) or
            the ``medquad-xml.tar.xz`` archive.
        out_dir: output folder; gets ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,dev,test}.tsv``
            and ``summary.json`` (each written atomically).
        seed: salt of the document-to-split hash.
        fractions: train/dev/test shares of *documents* (XML files grouped by Document id).

    Returns:
        The summary (also written to ``summary.json``): ``answered_pairs``, ``skipped`` per reason,
        ``skipped_by_subset``, ``splits`` (queries and documents per split), ``per_source``,
        ``duplicate_answer_texts``, ``question_texts_in_several_splits``, ``files``, ...

    Raises:
        DataError: malformed XML (names the member and line), a truncated archive (names the member).
        MissingInputError: ``path`` does not exist.
        UsageError: ``fractions`` are not 3 non-negative numbers summing to 1.
    """
    try:
        cfg = MedQuADConfig(seed=seed, fractions=tuple(fractions))
    except Exception as e:  # pydantic ValidationError
        raise UsageError(
            f"invalid MedQuAD split settings: fractions={tuple(fractions)!r}, seed={seed!r}: "
            "give 3 non-negative train/dev/test shares summing to 1 (--fractions 0.8,0.1,0.1)"
        ) from e
    t0 = time.perf_counter()
    coll = load_medquad(path)
    kept, skipped = select_answered(coll)
    written = write_medquad_beir(kept, out_dir, seed=cfg.seed, fractions=cfg.fractions)
    from relforge import __version__

    summary: dict[str, Any] = {
        "input": str(path),
        "seed": cfg.seed,
        "fractions": list(cfg.fractions),
        "grade": ANSWER_GRADE,
        "pairs_total": len(coll.pairs),
        "answered_pairs": written.pop("answered_pairs"),
        **skipped,
        "skipped_total": sum(skipped["skipped"].values()),
        **written,
        "files": {
            "xml": sum(coll.files.values()),
            "per_subset": dict(sorted(coll.files.items())),
            "ignored_non_xml": coll.ignored_files,
        },
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "relforge_version": __version__,
    }
    import json

    with atomic_write(Path(out_dir) / "summary.json") as fh:
        json.dump(summary, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    return summary
