"""judge_pairs: probs and generate modes, unparseable replies, pair inputs, outputs.

Parsing/aggregation logic runs against a small deterministic LLM double implementing the LLM
Protocol; the real-model paths run on the tiny random Llama (``tiny_llm_dir``).
"""

from __future__ import annotations

import json
import re

import pytest

from relforge.errors import DataError, UsageError
from relforge.judge import (
    JudgeTemplate,
    Judgment,
    judge_pairs,
    judgments_to_qrels,
    read_judgments,
    read_pairs,
    write_judgment_qrels,
    write_judgments,
)
from relforge.judge.judge import query_batches
from relforge.llm.base import LLM, Completion, GenParams
from relforge.types import Document, Query


class ScriptedLLM:
    """Deterministic LLM double. A document text ``"g=<k> ..."`` gets 0.7 on grade k in ``score_choices``;
    ``generate`` answers from ``replies[docid-text] = [first reply, retry reply]``."""

    name = "scripted"

    def __init__(self, replies: dict[str, list[str]] | None = None):
        self.replies = replies or {}
        self.calls: list[tuple[str, list[str], GenParams | None]] = []

    @staticmethod
    def _field(chat, name):
        return re.search(rf"^{name}: (.*)$", chat[-1]["content"], re.M).group(1)

    def score_choices(self, chats, choices):
        self.calls.append(("score", [self._field(c, "Query") for c in chats], None))
        out = []
        for c in chats:
            k = int(re.match(r"g=(\d)", self._field(c, "Text")).group(1))
            out.append({ch: (0.7 if i == k else 0.1) for i, ch in enumerate(choices)})
        return out

    def generate(self, chats, params=None):
        self.calls.append(("generate", [self._field(c, "Query") for c in chats], params))
        retry = params is not None and params.temperature > 0
        return [Completion(self.replies[self._field(c, "Text")][1 if retry else 0]) for c in chats]


QUERIES = {"q1": Query("q1", "anemia causes"), "q2": Query("q2", "flu symptoms")}
CORPUS = {f"d{k}": Document(f"d{k}", f"g={k} text of document {k}") for k in range(4)}


def test_double_implements_the_protocol():
    assert isinstance(ScriptedLLM(), LLM)


def test_probs_mode_distribution_expected_and_argmax():
    llm = ScriptedLLM()
    pairs = [("q1", "d3"), ("q2", "d0"), ("q1", "d1"), ("q2", "d2"), ("q1", "d2")]
    stats: dict = {}
    js = judge_pairs(
        llm, JudgeTemplate.load(), QUERIES, CORPUS, pairs, progress=False, batch_size=8, stats=stats
    )
    assert [(j.qid, j.docid) for j in js] == pairs  # input order
    for j in js:
        k = int(j.docid[1])
        assert sum(j.probs.values()) == pytest.approx(1.0)
        assert j.probs[str(k)] == pytest.approx(0.7)
        assert j.expected == pytest.approx(0.7 * k + 0.1 * (6 - k))
        assert j.grade == k and j.parse_ok and j.mode == "probs" and j.raw is None
        assert j.model == "scripted" and j.template_hash == JudgeTemplate.load().hash
    # the backend saw each query's pairs together: q1, q1, q1 then q2, q2
    assert llm.calls == [("score", ["anemia causes"] * 3 + ["flu symptoms"] * 2, None)]
    assert stats["pairs"] == 5 and stats["queries"] == 2 and stats["unparsed"] == 0
    assert stats["grades"] == {"0": 1, "1": 1, "2": 2, "3": 1}
    assert stats["pairs_per_s"] > 0


def test_batches_keep_queries_together():
    pairs = (
        [("a", str(i)) for i in range(5)]
        + [("b", "x"), ("c", "y"), ("a", "9")]
        + [("d", str(i)) for i in range(3)]
    )
    assert query_batches(pairs, 4) == [[0, 1, 2, 3], [4, 7, 5, 6], [8, 9, 10]]
    llm = ScriptedLLM()
    pairs = [("q1", f"d{k}") for k in range(4)] + [("q2", f"d{k}") for k in range(4)]
    judge_pairs(llm, JudgeTemplate.load(), QUERIES, CORPUS, pairs, progress=False, batch_size=3)
    assert [len(set(c[1])) for c in llm.calls] == [1, 1, 1, 1]  # no call mixes two queries
    assert [len(c[1]) for c in llm.calls] == [3, 1, 3, 1]


def test_thresholds_replace_argmax():
    js = judge_pairs(
        ScriptedLLM(),
        JudgeTemplate.load(),
        QUERIES,
        CORPUS,
        [("q1", "d1"), ("q1", "d2")],
        progress=False,
        thresholds=[0.5, 1.0, 1.5],
    )
    # expected grades 1.2 and 1.6 -> grades 2 and 3 with these cut points
    assert [j.grade for j in js] == [2, 3]
    with pytest.raises(UsageError, match="3 non-decreasing cut points"):
        judge_pairs(
            ScriptedLLM(),
            JudgeTemplate.load(),
            QUERIES,
            CORPUS,
            [("q1", "d1")],
            progress=False,
            thresholds=[1.0, 0.5],
        )


def test_generate_mode_retries_once_then_counts_unparseable():
    replies = {
        CORPUS["d0"].text: ["Grade: 2", "never used"],
        CORPUS["d1"].text: ["The document text of document 1 is about", "**1**"],  # parsed on the retry
        CORPUS["d2"].text: ["I cannot tell.", "Grade: 7"],  # never parseable (7 is out of scale)
    }
    llm = ScriptedLLM(replies)
    stats: dict = {}
    js = judge_pairs(
        llm,
        JudgeTemplate.load(),
        QUERIES,
        CORPUS,
        [("q1", "d0"), ("q1", "d1"), ("q1", "d2")],
        mode="generate",
        progress=False,
        stats=stats,
        seed=5,
    )
    g = {j.docid: j for j in js}
    assert (g["d0"].grade, g["d0"].parse_ok, g["d0"].attempts, g["d0"].raw) == (2, True, 1, "Grade: 2")
    assert (g["d1"].grade, g["d1"].parse_ok, g["d1"].attempts, g["d1"].raw) == (1, True, 2, "**1**")
    assert (g["d2"].grade, g["d2"].parse_ok, g["d2"].attempts, g["d2"].raw) == (None, False, 2, "Grade: 7")
    assert all(j.expected is None and j.probs is None and j.mode == "generate" for j in js)
    assert stats["unparsed"] == 1 and stats["retried"] == 2
    assert stats["grades"] == {"0": 0, "1": 1, "2": 1, "3": 0}  # the unparsed one is not a grade
    # first pass greedy; the retry samples with another seed, only the failures
    (_, q1, p1), (_, q2, p2) = llm.calls
    assert len(q1) == 3 and p1.temperature == 0.0 and p1.seed == 5
    assert len(q2) == 2 and p2.temperature > 0 and p2.seed == 6
    assert judgments_to_qrels(js) == {"q1": {"d0": 2, "d1": 1}}


def test_probs_mode_refuses_a_reasoning_template():
    with pytest.raises(UsageError, match="--mode generate"):
        judge_pairs(
            ScriptedLLM(), JudgeTemplate.load(reasoning=True), QUERIES, CORPUS, [("q1", "d1")], progress=False
        )


def test_unknown_ids_error_or_skip():
    pairs = [("q1", "d1"), ("q9", "d1"), ("q1", "dX")]
    with pytest.raises(
        DataError,
        match=r"2 of 3 pairs name unknown ids; unknown query ids \(1\): \['q9'\]; "
        r"unknown document ids \(1\): \['dX'\]",
    ):
        judge_pairs(ScriptedLLM(), JudgeTemplate.load(), QUERIES, CORPUS, pairs, progress=False)
    stats: dict = {}
    js = judge_pairs(
        ScriptedLLM(),
        JudgeTemplate.load(),
        QUERIES,
        CORPUS,
        pairs + [("q1", "d1")],
        progress=False,
        on_missing="skip",
        stats=stats,
    )
    assert [(j.qid, j.docid) for j in js] == [("q1", "d1")]
    assert stats["skipped_unknown"] == 2 and stats["duplicates"] == 1


def test_read_pairs_formats(tmp_path):
    beir = tmp_path / "qrels.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq1\td1\t2\n")
    assert read_pairs(beir) == [("q1", "d1"), ("q1", "d2"), ("q1", "d1")]  # judge_pairs counts duplicates
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 1\nq2 0 d3 0\n")
    assert read_pairs(trec) == [("q1", "d1"), ("q2", "d3")]
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 d1 2 0.5 x\nq1 Q0 d2 1 0.9 x\nq1 Q0 d0 3 0.5 x\nq2 Q0 d3 1 1.0 x\n")
    assert read_pairs(run) == [("q1", "d2"), ("q1", "d0"), ("q1", "d1"), ("q2", "d3")]  # ties by doc id
    assert read_pairs(run, top_k=2) == [("q1", "d2"), ("q1", "d0"), ("q2", "d3")]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("qid\tdocid\nq1\td1\n")
    assert read_pairs(tsv) == [("q1", "d1")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\td1\nq1\td2\t3\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected 2 columns \(pairs\), got 3"):
        read_pairs(bad)
    five = tmp_path / "five.txt"
    five.write_text("a b c d e\n")
    with pytest.raises(DataError, match="five.txt:1: cannot tell the pairs format from 5 columns"):
        read_pairs(five)


def test_judgments_roundtrip_and_qrels(tmp_path):
    js = [
        Judgment("q1", "d1", 2, 1.8, {"0": 0.1, "1": 0.2, "2": 0.5, "3": 0.2}, "probs", "m", "h"),
        Judgment("q1", "d2", None, None, None, "generate", "m", "h", raw="??", parse_ok=False, attempts=2),
    ]
    path = tmp_path / "j.jsonl"
    assert write_judgments(path, js) == 2
    first = json.loads(path.read_text().splitlines()[0])
    assert {"qid", "docid", "grade", "expected", "probs", "mode", "model", "template_hash", "raw"} <= set(
        first
    )
    assert read_judgments(path) == js
    write_judgment_qrels(tmp_path / "q.txt", js)
    assert (tmp_path / "q.txt").read_text() == "q1 0 d1 2\n"  # the unlabelled pair is not in the qrels
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "q1", "docid": "d1", "grade": 1}\n{"qid": "q1", "grade": 2}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: judgment misses fields \['docid'\]"):
        read_judgments(bad)


# --------------------------------------------------------------------------- the tiny random Llama


@pytest.fixture(scope="module")
def tiny_llm(tiny_llm_dir):
    from relforge.llm import load_llm

    return load_llm(f"hf:{tiny_llm_dir}", cache=False, batch_size=4)


def test_probs_mode_on_tiny_model(tiny_llm):
    pairs = [(q, d) for q in QUERIES for d in CORPUS]
    js = judge_pairs(
        tiny_llm, JudgeTemplate.load(), QUERIES, CORPUS, pairs, progress=False, max_doc_tokens=16
    )
    assert len(js) == 8
    for j in js:
        assert set(j.probs) == {"0", "1", "2", "3"}
        assert sum(j.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert 0.0 <= j.expected <= 3.0
        assert j.grade == int(max(j.probs, key=j.probs.get))
    assert len({round(j.expected, 6) for j in js}) > 1  # different prompts, different distributions


def test_generate_mode_on_tiny_model_never_invents_grades(tiny_llm):
    stats: dict = {}
    js = judge_pairs(
        tiny_llm,
        JudgeTemplate.load(),
        QUERIES,
        CORPUS,
        [("q1", "d1"), ("q2", "d2")],
        mode="generate",
        progress=False,
        max_new_tokens=4,
        stats=stats,
    )
    from relforge.judge.parse import parse_grade

    for j in js:
        assert isinstance(j.raw, str)
        assert j.grade == parse_grade(j.raw, ["0", "1", "2", "3"])  # None when the random text has no grade
        assert j.parse_ok == (j.grade is not None)
    assert stats["unparsed"] == sum(j.grade is None for j in js)
