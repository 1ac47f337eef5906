"""The review database: one SQLite file in WAL mode, every label committed the moment it is given.

Tables: ``meta`` (scale, sources, the write token), ``queries`` and ``docs`` (a snapshot of the texts
under review, so an export needs nothing but the database), ``pairs`` (the query-document pairs, their
split and the judge's distribution) and ``events``: the append-only history of what annotators did
(``label``, ``skip``, ``flag``, ``unflag``, ``note``) with who, when, grade, note, seconds spent and the
queue they worked in. Triggers refuse UPDATE and DELETE on ``events``: an edit is a new label event, the
earlier one stays. An annotator's current label of a pair is their latest ``label`` event.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from relforge.errors import DataError, MissingInputError

SCHEMA_VERSION = 1
EVENT_KINDS = ("label", "skip", "flag", "unflag", "note")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queries (qid TEXT PRIMARY KEY, text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    docid TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY, qid TEXT NOT NULL REFERENCES queries(qid),
    docid TEXT NOT NULL REFERENCES docs(docid), split TEXT NOT NULL CHECK (split IN ('train', 'validation')),
    judge_grade INTEGER, judge_expected REAL, judge_probs TEXT, judge_model TEXT,
    retriever_rank INTEGER, retriever_score REAL, UNIQUE (qid, docid));
CREATE TABLE IF NOT EXISTS annotators (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id INTEGER NOT NULL REFERENCES pairs(id),
    annotator TEXT NOT NULL REFERENCES annotators(name),
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'flag', 'unflag', 'note')),
    grade INTEGER, note TEXT, seconds REAL, queue TEXT, created_at TEXT NOT NULL,
    CHECK ((kind = 'label') = (grade IS NOT NULL)));
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, pair_id, annotator, id);
CREATE INDEX IF NOT EXISTS events_by_annotator ON events (annotator, id);
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
"""


def check_annotator(name: str) -> str:
    """An annotator name: 1-40 letters, digits, ``_ . @ -``, starting with a letter or digit."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValueError(
            f"annotator name {name!r} is not allowed: use 1-40 letters, digits, '_', '.', '@' or '-'"
        )
    return name


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PairRow:
    """One pair under review with the judge's view of it (``probs`` keyed by grade value)."""

    id: int
    qid: str
    docid: str
    split: str
    judge_grade: int | None
    judge_expected: float | None
    judge_probs: dict[int, float] | None
    judge_model: str | None
    retriever_rank: int | None
    retriever_score: float | None


@dataclass(frozen=True)
class Event:
    id: int
    pair_id: int
    annotator: str
    kind: str
    grade: int | None
    note: str | None
    seconds: float | None
    queue: str | None
    created_at: str


def _pair(row: tuple) -> PairRow:
    probs = json.loads(row[6]) if row[6] else None
    return PairRow(
        id=row[0],
        qid=row[1],
        docid=row[2],
        split=row[3],
        judge_grade=row[4],
        judge_expected=row[5],
        judge_probs={int(k): float(v) for k, v in probs.items()} if probs else None,
        judge_model=row[7],
        retriever_rank=row[8],
        retriever_score=row[9],
    )


class Store:
    """The review database. One connection per thread (the web server's threads read concurrently;
    SQLite serialises the writes); ``synchronous=FULL`` so a committed label survives a power cut too."""

    def __init__(self, path: str | Path, *, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise MissingInputError(
                f"{self.path}: no such review database (create it: relforge review --db {self.path} "
                "--corpus C --queries Q --pairs PAIRS)"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            con = self.conn()
            con.executescript(_SCHEMA)
            self._check_version(con)
        except sqlite3.DatabaseError as e:
            raise DataError(f"not a relforge review database ({e})", path=self.path) from None
        self._pairs: list[PairRow] | None = None
        self._cache: dict[str, tuple[int, Any]] = {}

    def conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
        return con

    def _check_version(self, con: sqlite3.Connection) -> None:
        got = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if got is None:
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(got[0]) != SCHEMA_VERSION:
            raise DataError(f"review database schema {got[0]}, this relforge reads {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self.conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def write_token(self) -> str:
        """The token every write request carries (kept in the database so it survives a restart)."""
        tok = self.get_meta("write_token")
        if tok is None:
            tok = secrets.token_urlsafe(24)
            self.conn().execute("INSERT OR IGNORE INTO meta VALUES ('write_token', ?)", (json.dumps(tok),))
            tok = self.get_meta("write_token")
        return tok

    # ------------------------------------------------------------------ texts and pairs
    def put_texts(self, queries: Iterable[tuple[str, str, dict]], docs: Iterable[tuple]) -> None:
        """Insert or refresh ``(qid, text, metadata)`` and ``(docid, title, text, metadata)`` rows."""
        con = self.conn()
        with con:
            con.execute("BEGIN")
            con.executemany(
                "INSERT OR REPLACE INTO queries VALUES (?, ?, ?)",
                ((q, t, json.dumps(m, ensure_ascii=False, default=str)) for q, t, m in queries),
            )
            con.executemany(
                "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?)",
                ((d, ti, t, json.dumps(m, ensure_ascii=False, default=str)) for d, ti, t, m in docs),
            )

    def add_pairs(self, rows: Iterable[dict[str, Any]]) -> int:
        """Add pairs (``qid, docid, split``, optional judge and retriever fields); existing pairs keep
        their split and get the judge/retriever fields given. Returns the number of new pairs."""
        con = self.conn()
        before = con.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        with con:
            con.execute("BEGIN")
            for r in rows:
                con.execute(
                    "INSERT OR IGNORE INTO pairs (qid, docid, split) VALUES (?, ?, ?)",
                    (r["qid"], r["docid"], r["split"]),
                )
                sets = {k: r[k] for k in ("judge_grade", "judge_expected", "judge_model") if k in r}
                if "judge_probs" in r:
                    sets["judge_probs"] = json.dumps(r["judge_probs"]) if r["judge_probs"] else None
                sets.update({k: r[k] for k in ("retriever_rank", "retriever_score") if k in r})
                if sets:
                    cols = ", ".join(f"{k}=?" for k in sets)
                    con.execute(
                        f"UPDATE pairs SET {cols} WHERE qid=? AND docid=?",
                        (*sets.values(), r["qid"], r["docid"]),
                    )
        self._pairs = None
        return con.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] - before

    def pairs(self) -> list[PairRow]:
        """All pairs by id (cached: pairs do not change while the server runs)."""
        if self._pairs is None:
            rows = self.conn().execute("SELECT * FROM pairs ORDER BY id").fetchall()
            self._pairs = [_pair(r) for r in rows]
        return self._pairs

    def pair(self, pair_id: int) -> PairRow | None:
        row = self.conn().execute("SELECT * FROM pairs WHERE id=?", (pair_id,)).fetchone()
        return _pair(row) if row else None

    def query(self, qid: str) -> dict[str, Any]:
        text, meta = self.conn().execute("SELECT text, metadata FROM queries WHERE qid=?", (qid,)).fetchone()
        return {"id": qid, "text": text, "metadata": json.loads(meta)}

    def doc(self, docid: str) -> dict[str, Any]:
        row = self.conn().execute("SELECT title, text, metadata FROM docs WHERE docid=?", (docid,)).fetchone()
        return {"id": docid, "title": row[0], "text": row[1], "metadata": json.loads(row[2])}

    # ------------------------------------------------------------------ events
    def add_annotator(self, name: str) -> str:
        name = check_annotator(name)
        self.conn().execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (name, now()))
        return name

    def annotators(self) -> list[str]:
        return [r[0] for r in self.conn().execute("SELECT name FROM annotators ORDER BY created_at, name")]

    def add_event(
        self,
        pair_id: int,
        annotator: str,
        kind: str,
        *,
        grade: int | None = None,
        note: str | None = None,
        seconds: float | None = None,
        queue: str | None = None,
    ) -> int:
        """Append one event and commit it before returning its id."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not one of {EVENT_KINDS}")
        con = self.conn()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (annotator, now()))
            cur = con.execute(
                "INSERT INTO events (pair_id, annotator, kind, grade, note, seconds, queue, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pair_id, annotator, kind, grade, note, seconds, queue, now()),
            )
        return int(cur.lastrowid)

    def add_labels(self, rows: Iterable[tuple[int, int]], annotator: str, queue: str) -> int:
        """Append many ``(pair_id, grade)`` labels by one annotator in one transaction (the pre-fill)."""
        rows = list(rows)
        con = self.conn()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (annotator, now()))
            con.executemany(
                "INSERT INTO events (pair_id, annotator, kind, grade, queue, created_at) "
                "VALUES (?, ?, 'label', ?, ?, ?)",
                ((pid, annotator, int(g), queue, now()) for pid, g in rows),
            )
        return len(rows)

    def events(self, *, pair_id: int | None = None, annotator: str | None = None) -> list[Event]:
        sql, args = "SELECT * FROM events WHERE 1=1", []
        if pair_id is not None:
            sql, args = sql + " AND pair_id=?", [*args, pair_id]
        if annotator is not None:
            sql, args = sql + " AND annotator=?", [*args, annotator]
        return [Event(*r) for r in self.conn().execute(sql + " ORDER BY id", args)]

    def version(self) -> int:
        """The id of the newest event (0 when there is none): any write changes it."""
        return self.conn().execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]

    def _cached(self, name: str, build):
        """``build()`` cached until the next event (also one written by another process); read-only."""
        v = self.version()
        got = self._cache.get(name)
        if got is None or got[0] != v:
            got = (v, build())
            self._cache[name] = got
        return got[1]

    def current_labels(self) -> dict[int, dict[str, tuple[int, int]]]:
        """``{pair_id: {annotator: (grade, event_id)}}``: each annotator's latest label of each pair
        (cached until the next event: treat it as read-only)."""
        return self._cached("labels", self._current_labels)

    def latest_labels(self) -> dict[int, int]:
        """``{pair_id: grade of its most recent label by anyone}`` (cached like :meth:`current_labels`)."""

        def build() -> dict[int, int]:
            return {
                pid: max(who.values(), key=lambda ge: ge[1])[0] for pid, who in self.current_labels().items()
            }

        return self._cached("latest", build)

    def _current_labels(self) -> dict[int, dict[str, tuple[int, int]]]:
        out: dict[int, dict[str, tuple[int, int]]] = {}
        rows = self.conn().execute(
            "SELECT e.pair_id, e.annotator, e.grade, e.id FROM events e JOIN ("
            " SELECT MAX(id) AS mid FROM events WHERE kind='label' GROUP BY pair_id, annotator"
            ") m ON e.id = m.mid"
        )
        for pid, who, grade, eid in rows:
            out.setdefault(pid, {})[who] = (grade, eid)
        return out

    def flags(self) -> dict[int, set[str]]:
        """``{pair_id: annotators whose latest flag/unflag event is a flag}`` (cached; read-only)."""
        return self._cached("flags", self._flags)

    def _flags(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        rows = self.conn().execute(
            "SELECT e.pair_id, e.annotator, e.kind FROM events e JOIN ("
            " SELECT MAX(id) AS mid FROM events WHERE kind IN ('flag', 'unflag') GROUP BY pair_id, annotator"
            ") m ON e.id = m.mid"
        )
        for pid, who, kind in rows:
            if kind == "flag":
                out.setdefault(pid, set()).add(who)
        return out

    def last_events(self, annotator: str, kinds: tuple[str, ...]) -> dict[int, int]:
        """``{pair_id: id of the annotator's latest event of one of these kinds}``."""
        marks = ",".join("?" * len(kinds))
        rows = self.conn().execute(
            f"SELECT pair_id, MAX(id) FROM events WHERE annotator=? AND kind IN ({marks}) GROUP BY pair_id",
            (annotator, *kinds),
        )
        return dict(rows.fetchall())

    def recheck_marks(self, annotator: str) -> dict[int, int]:
        """``{pair_id: id of the annotator's latest event given from the re-check queue}``."""
        rows = self.conn().execute(
            "SELECT pair_id, MAX(id) FROM events WHERE annotator=? AND queue='recheck' GROUP BY pair_id",
            (annotator,),
        )
        return dict(rows.fetchall())

    def history(self, annotator: str) -> list[int]:
        """Pair ids the annotator acted on, most recent first."""
        rows = self.conn().execute(
            "SELECT pair_id FROM events WHERE annotator=? GROUP BY pair_id ORDER BY MAX(id) DESC",
            (annotator,),
        )
        return [r[0] for r in rows]
