"""Candidate records: one writer and one reader, which also reads the two formats before them."""

from __future__ import annotations

import json

import pytest

from relforge.errors import DataError
from relforge.retrieve.candidates import (
    Candidate,
    count_by_source,
    mined_candidates,
    read_candidates,
    write_candidates,
)
from relforge.retrieve.mining import read_negatives

RUN = {"q1": {"a": 3.0, "p": 2.5, "b": 1.0 / 3.0}, "q2": {"c": 1.0}}


def test_mined_candidates_keep_rank_score_and_source_in_mined_order(tmp_path):
    records = mined_candidates({"q1": (["b", "a"], ["z"]), "q2": ([], ["y"])}, RUN, "dense")
    assert [(r.query_id, r.doc_id, r.rank, r.source) for r in records] == [
        ("q1", "b", 3, "dense"),
        ("q1", "a", 1, "dense"),
        ("q1", "z", None, "random"),
        ("q2", "y", None, "random"),
    ]
    assert records[0].score == 0.3333333333  # the TREC run's precision (%.10g), as retrieve mine reads it
    path = tmp_path / "c.jsonl"
    assert write_candidates(path, records) == 4
    assert read_candidates(path) == records
    assert json.loads(path.read_text().splitlines()[2]) == {
        "query_id": "q1", "doc_id": "z", "rank": None, "score": None, "source": "random"
    }  # fmt: skip
    assert read_negatives(path) == {"q1": ["b", "a", "z"], "q2": ["y"]}
    assert count_by_source(records) == {"dense": 2, "random": 2}


def test_old_negatives_json_and_old_mine_jsonl_still_read(tmp_path):
    old_json = tmp_path / "negatives.json"  # a cached pipeline run's retrieve/negatives.json
    old_json.write_text(json.dumps({"q1": ["b", "z"], "q2": ["y"]}))
    old_mine = tmp_path / "mined.jsonl"  # the old `relforge retrieve mine` output
    rows = [
        {"query_id": "q1", "positives": ["p"], "negatives": ["b", "z"], "random_negatives": ["z"]},
        {"query_id": "q2", "positives": ["c"], "negatives": ["y"], "random_negatives": ["y"]},
    ]
    old_mine.write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = {"q1": ["b", "z"], "q2": ["y"]}
    assert read_negatives(old_json) == read_negatives(old_mine) == want
    assert read_candidates(old_mine)[:2] == [
        Candidate(query_id="q1", doc_id="b", source="unknown"),
        Candidate(query_id="q1", doc_id="z", source="random"),
    ]
    assert count_by_source(read_candidates(old_json)) == {"unknown": 3}
    assert count_by_source(read_candidates(old_mine)) == {"random": 2, "unknown": 1}


def test_a_bad_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"query_id": "q", "doc_id": "d", "rank": 1, "score": 1.0, "source": "bm25"}) + "\n"
    )
    bad.write_text(bad.read_text() + '{"query_id": "q", "doc_id": "d", "rank": "x", "source": "bm25"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a candidate"):
        read_candidates(bad)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataError, match="expected a JSON object"):
        read_candidates(tmp_path / "list.json")
