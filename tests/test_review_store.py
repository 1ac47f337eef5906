"""relforge review: the database, the inputs it is prepared from, the queues and the agreement numbers
(no server here). Also the shared builders of the review tests: :func:`make_inputs`, :class:`ReviewServer`."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from relforge.data import read_corpus, read_qrels, read_queries, write_corpus, write_jsonl, write_queries
from relforge.data.samples import sample_path
from relforge.errors import DataError, UsageError
from relforge.review.config import ReviewConfig
from relforge.review.queues import Queues, Snapshot, class_targets
from relforge.review.run import prepare, query_split
from relforge.review.stats import agreement_tables
from relforge.review.store import Store
from relforge.types import Document, Query

XSS_TITLE = '<script>window.__pwned = "title"</script>Evil & "quoted" title'
XSS_TEXT = (
    "Before <img src=x onerror=\"window.__pwned = 'img'\"> after </div><script>window.__pwned = 1</script>"
)
XSS_QUERY = "what does <b>bold</b> <img src=y onerror=alert(1)> mean"


def make_inputs(folder: Path, *, n_queries: int = 10, seed: int = 0) -> dict[str, Path]:
    """A small review set from the bundled LiveQA-Med sample: its first ``n_queries`` questions with
    their human-graded MedQuAD answers as a TREC run, a synthetic judge (right ~70% of the time, its
    distribution peaked on its grade), the human grades as qrels, plus one hostile document/query."""
    src = sample_path("liveqa-med")
    human = read_qrels(src / "qrels" / "test.tsv")
    qids = sorted(human, key=int)[:n_queries]
    corpus, queries = read_corpus(src / "corpus.jsonl"), read_queries(src / "queries.jsonl")
    rng = random.Random(seed)
    docs = {d for q in qids for d in human[q]}
    docs_out = [corpus[d] for d in sorted(docs)]
    docs_out.append(Document("xss-doc", XSS_TEXT, XSS_TITLE, {"url": "javascript:window.__pwned='url'"}))
    qs_out = [queries[q] for q in qids] + [Query("xss-q", XSS_QUERY, {"note": "<i>meta</i>"})]
    run_lines, judgments, qrels_lines = [], [], ["query-id\tcorpus-id\tscore"]
    for q in [*qids, "xss-q"]:
        grades = human.get(q, {"xss-doc": 0})
        for rank, d in enumerate(sorted(grades, key=lambda d: (rng.random(), d)), start=1):
            run_lines.append(f"{q} Q0 {d} {rank} {100 - rank} test")
            g = grades[d] if rng.random() < 0.7 else rng.randrange(4)
            w = [rng.random() * 0.3 for _ in range(4)]
            w[g] += 1.0
            probs = {str(i): w[i] / sum(w) for i in range(4)}
            expected = sum(i * p for i, p in enumerate(probs.values()))
            judgments.append({"qid": q, "docid": d, "grade": g, "expected": expected, "probs": probs,
                              "mode": "probs", "model": "synthetic-judge", "template_hash": "test"})  # fmt: skip
            if q != "xss-q":
                qrels_lines.append(f"{q}\t{d}\t{grades[d]}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / n for k, n in [("corpus", "corpus.jsonl"), ("queries", "queries.jsonl"),
             ("pairs", "run.trec"), ("judgments", "judgments.jsonl"), ("qrels", "human.tsv")]}  # fmt: skip
    write_corpus(paths["corpus"], docs_out)
    write_queries(paths["queries"], qs_out)
    paths["pairs"].write_text("\n".join(run_lines) + "\n", encoding="utf-8")
    write_jsonl(paths["judgments"], judgments)
    paths["qrels"].write_text("\n".join(qrels_lines) + "\n", encoding="utf-8")
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReviewServer:
    """``relforge review`` as a real process on 127.0.0.1 (so a test can SIGKILL it)."""

    def __init__(self, db: Path, *args: str, port: int | None = None):
        self.db, self.args, self.port = Path(db), list(args), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.db.with_suffix(".log")

    def start(self, timeout: float = 60.0) -> ReviewServer:
        import httpx

        cmd = [sys.executable, "-m", "relforge", "review", "--db", str(self.db), "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*cmd, *self.args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"review server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"review server did not answer in {timeout} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def labels_in_db(db: Path, annotator: str) -> list[tuple[int, int]]:
    """``(pair_id, grade)`` of every label event of ``annotator``, in order (read with plain sqlite3)."""
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT pair_id, grade FROM events WHERE annotator=? AND kind='label' ORDER BY id", (annotator,)
        ).fetchall()


# --------------------------------------------------------------------------- tests


@pytest.fixture()
def inputs(tmp_path):
    return make_inputs(tmp_path / "in", n_queries=6)


def _prepared(tmp_path, inputs, **cfg):
    db = tmp_path / "review.sqlite"
    summary = prepare(
        ReviewConfig(**cfg), db=db, **{k: inputs[k] for k in ("corpus", "queries", "pairs", "judgments")}
    )
    return db, summary


def test_prepare_stores_pairs_split_by_query_with_judge_and_retriever(tmp_path, inputs):
    db, summary = _prepared(tmp_path, inputs, val_fraction=0.3)
    store = Store(db)
    pairs = store.pairs()
    assert summary["pairs"] == len(pairs) == sum(1 for _ in open(inputs["pairs"])) and summary[
        "judged"
    ] == len(pairs)
    sides = {}
    for p in pairs:
        sides.setdefault(p.qid, set()).add(p.split)
        assert p.split == query_split(p.qid, 0.3)
        assert p.retriever_rank >= 1 and abs(sum(p.judge_probs.values()) - 1) < 1e-9
    assert all(len(s) == 1 for s in sides.values())  # a query never straddles the split
    assert {s for (s,) in sides.values()} == {"train", "validation"}
    assert summary["splits"]["validation"]["queries"] == sum(1 for s in sides.values() if s == {"validation"})
    assert store.doc("xss-doc")["title"] == XSS_TITLE  # stored verbatim; escaping is the page's job
    again = prepare(
        ReviewConfig(val_fraction=0.9), db=db, **{k: inputs[k] for k in ("corpus", "queries", "pairs")}
    )
    assert again["new_pairs"] == 0 and [p.split for p in Store(db).pairs()] == [p.split for p in pairs]


def test_query_split_is_order_free_and_near_the_fraction():
    qids = [f"q{i}" for i in range(2000)]
    val = [q for q in qids if query_split(q, 0.2) == "validation"]
    assert 0.17 < len(val) / len(qids) < 0.23
    assert query_split("q7", 0.2, seed=1) == query_split("q7", 0.2, seed=1)
    assert [query_split(q, 0.0) for q in qids[:50]] == ["train"] * 50


def test_labels_are_append_only_and_prefill_happens_once(tmp_path, inputs):
    db = tmp_path / "review.sqlite"
    args = {k: inputs[k] for k in ("corpus", "queries", "pairs", "qrels")}
    first = prepare(ReviewConfig(), db=db, **args)
    n_human = sum(1 for _ in open(inputs["qrels"])) - 1
    assert first["prefilled"] == n_human
    assert prepare(ReviewConfig(), db=db, **args)["prefilled"] == 0
    store = Store(db)
    pid = store.pairs()[0].id
    store.add_event(pid, "alice", "label", grade=1, seconds=2.5, queue="random")
    store.add_event(pid, "alice", "label", grade=3, note="on second thought", queue="random")
    assert store.current_labels()[pid]["alice"][0] == 3
    assert [e.grade for e in store.events(pair_id=pid, annotator="alice")] == [1, 3]  # history kept
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE events SET grade=0")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM events")


def test_bad_inputs_name_the_file(tmp_path, inputs):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tno-such-doc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv.*unknown document ids.*no-such-doc"):
        prepare(
            ReviewConfig(),
            db=tmp_path / "a.sqlite",
            corpus=inputs["corpus"],
            queries=inputs["queries"],
            pairs=bad,
        )
    off = tmp_path / "off.tsv"
    off.write_text("1\tADAM_0003147_Sec1.txt\t7\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"off\.tsv.*grade 7.*off the scale"):
        prepare(ReviewConfig(), db=tmp_path / "b.sqlite", corpus=inputs["corpus"], queries=inputs["queries"],
                pairs=inputs["pairs"], qrels=off)  # fmt: skip
    with pytest.raises(UsageError, match="together"):
        prepare(ReviewConfig(), db=tmp_path / "c.sqlite", corpus=inputs["corpus"])
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="junk.sqlite.*not a relforge review database"):
        prepare(ReviewConfig(), db=tmp_path / "junk.sqlite")
    db, _ = _prepared(tmp_path, inputs)
    with pytest.raises(UsageError, match="scale"):
        binary = tmp_path / "binary.yaml"
        tpl = (resources.files("relforge.judge") / "templates" / "relevance-0to3.yaml").read_text()
        scale_end = tpl.index("# document fields")
        two = 'scale:\n  - {label: "0", name: no}\n  - {label: "1", name: yes}\n'
        binary.write_text(tpl[: tpl.index("scale:")] + two + tpl[scale_end:], encoding="utf-8")
        prepare(ReviewConfig(template=str(binary)), db=db)


def test_non_loopback_host_needs_a_token():
    assert not ReviewConfig().needs_token()
    assert ReviewConfig(host="0.0.0.0").needs_token() and ReviewConfig(host="192.168.1.5").needs_token()
    assert not ReviewConfig(host="::1").needs_token() and not ReviewConfig(host="localhost").needs_token()
    assert ReviewConfig(token="x" * 16).needs_token()
    with pytest.raises(ValueError):
        ReviewConfig(token="short")


def _queues(store: Store, train=8, val=4) -> Queues:
    values = [0, 1, 2, 3]
    targets = {"train": class_targets(train, values), "validation": class_targets(val, values)}
    return Queues(store.pairs(), values, targets)


@pytest.mark.parametrize("human", ["agrees", "disagrees"])
def test_balanced_queue_fills_every_class_to_its_target(tmp_path, inputs, human):
    db, _ = _prepared(tmp_path, inputs, val_fraction=0.3)
    store = Store(db)
    qs = _queues(store, train=8, val=4)
    truth = {(q, d): g for q, docs in read_qrels(inputs["qrels"]).items() for d, g in docs.items()}
    served = 0
    while (pid := qs.next("balanced", Snapshot.read(store, "ann"))) is not None:
        p = qs.pairs[pid]
        grade = p.judge_grade if human == "agrees" else truth[(p.qid, p.docid)]
        store.add_event(pid, "ann", "label", grade=grade, queue="balanced")
        served += 1
        assert served < 200
    done = qs.progress(Snapshot.read(store, "ann"))
    if human == "agrees":  # every label lands where the judge said: exactly the targets, no more
        assert done == {"train": {0: 2, 1: 2, 2: 2, 3: 2}, "validation": {0: 1, 1: 1, 2: 1, 3: 1}}
        assert served == 12
    else:  # a class the judge rarely predicts right fills slower, but never stops short while pairs remain
        for split, tgt in qs.targets.items():
            for v, t in tgt.items():
                left = [
                    i for i in qs.strata.get((split, v), []) if i not in Snapshot.read(store, "ann").labels
                ]
                assert done[split][v] >= t or not left


def test_uncertain_disagreement_random_overlap_and_recheck_orders(tmp_path, inputs):
    from relforge.review.queues import entropy

    db, _ = _prepared(tmp_path, inputs)
    store = Store(db)
    qs = _queues(store)
    snap = Snapshot.read(store, "a")
    first = qs.pairs[qs.next("uncertain", snap)]
    assert entropy(first.judge_probs) == max(entropy(p.judge_probs) for p in qs.pairs.values())
    d = qs.pairs[qs.next("disagreement", snap)]
    assert d.retriever_rank is not None
    assert qs.next("random", snap) == qs.by_random[0] and qs.next("overlap", snap) is None
    store.add_event(first.id, "b", "label", grade=0)
    assert qs.next("overlap", Snapshot.read(store, "a")) == first.id
    assert qs.next("uncertain", Snapshot.read(store, "a")) != first.id  # coverage queues skip labelled pairs
    store.add_event(first.id, "a", "label", grade=3, queue="overlap")
    assert qs.next("recheck", Snapshot.read(store, "a")) == first.id  # a and b disagree by 3
    store.add_event(first.id, "a", "label", grade=1, queue="recheck")
    assert qs.next("recheck", Snapshot.read(store, "a")) != first.id  # re-checked
    store.add_event(first.id, "b", "label", grade=2, queue="random")
    assert qs.next("recheck", Snapshot.read(store, "a")) == first.id  # b changed it: back in the queue
    store.add_event(first.id, "a", "skip")
    assert first.id not in {qs.next(q, Snapshot.read(store, "a")) for q in ("random", "recheck", "overlap")}


def test_agreement_tables_match_hand_computed_kappa(tmp_path, inputs):
    db, _ = _prepared(tmp_path, inputs)
    store = Store(db)
    ids = [p.id for p in store.pairs()[:8]]
    carol, dave = [0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 1, 1, 2, 0]
    for pid, a, b in zip(ids, carol, dave, strict=True):
        store.add_event(pid, "carol", "label", grade=a)
        store.add_event(pid, "dave", "label", grade=b)
    t = agreement_tables(store, store.get_meta("scale"))
    (row,) = t["pairs"]
    # p_o = 6/8, p_e = (2*2 + 2*3 + 2*2 + 2*1) / 64 = 1/4  ->  kappa = (3/4 - 1/4) / (3/4) = 2/3
    assert row["n"] == 8 and row["cohen_kappa"] == pytest.approx(2 / 3, abs=1e-4)
    # quadratic weights (i-j)^2/9: observed (1/9 + 1)/8 = 10/72, expected 1/4  ->  1 - (10/72)/(1/4) = 4/9
    assert row["quadratic_kappa"] == pytest.approx(4 / 9, abs=1e-4)
    assert row["confusion"][3] == [1, 0, 0, 1] and t["doubly"] == 8
    assert t["alpha_all"] == row["krippendorff_alpha"]  # two annotators: the same alpha
    assert t["judge_vs_human"]["n"] == 8 and {r["a"] for r in t["judge_pairs"]} == {"carol", "dave"}
    assert json.dumps(t)  # the page renders it
