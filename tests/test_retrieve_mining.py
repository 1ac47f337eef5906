"""Hard-negative mining rules: positives excluded, rank window, random share, margins, counted skips."""

from __future__ import annotations

import pytest

from relforge.cli import main
from relforge.data import iter_jsonl, write_qrels, write_run
from relforge.retrieve import MiningConfig, mine_negatives

# q1: ranks d1..d10 with scores 10..1; the positive d3 sits at rank 3
RUN = {"q1": {f"d{i}": float(11 - i) for i in range(1, 11)}, "q2": {"d1": 5.0, "d2": 4.0}}
POS = {"q1": {"d3": 3}, "q2": {"x9": 2}, "q3": {"d1": 0}}


def test_positives_excluded_and_window_respected():
    stats: dict = {}
    neg = mine_negatives(RUN, POS, MiningConfig(rank_min=2, rank_max=6, num_negatives=10), stats=stats)
    assert neg["q1"] == ["d2", "d4", "d5", "d6"]  # ranks 2..6 minus the positive, rank order
    assert stats["skipped"] == {
        "positive": 1,
        "rank_window": (1 + 4) + 1,
        "margin": 0,
    }  # q1: ranks 1, 7-10; q2: rank 1
    assert "q3" not in neg and stats["queries_without_positive"] == 1  # grade 0 is not a positive
    assert neg["q2"] == ["d2"]  # window starts at rank 2
    assert stats["queries_short"] == 2


def test_number_and_sampling():
    top = mine_negatives(RUN, POS, MiningConfig(rank_min=1, rank_max=10, num_negatives=3))
    assert top["q1"] == ["d1", "d2", "d4"]
    rnd = mine_negatives(
        RUN, POS, MiningConfig(rank_min=1, rank_max=10, num_negatives=3, sampling="random", seed=1)
    )
    assert len(rnd["q1"]) == 3 and "d3" not in rnd["q1"]
    assert rnd == mine_negatives(
        RUN, POS, MiningConfig(rank_min=1, rank_max=10, num_negatives=3, sampling="random", seed=1)
    )  # seeded


def test_random_share():
    pool = [f"d{i}" for i in range(1, 11)] + [f"r{i}" for i in range(50)]
    stats: dict = {}
    cfg = MiningConfig(rank_min=1, rank_max=3, num_negatives=4, random_share=0.5, seed=0)
    neg = mine_negatives(RUN, {"q1": {"d3": 1}}, cfg, corpus_ids=pool, stats=stats)["q1"]
    assert neg[:2] == ["d1", "d2"]  # hard first
    assert len(neg) == 4 and len(set(neg)) == 4 and "d3" not in neg[2:]
    assert stats["hard"] == 2 and stats["random"] == 2


def test_margin_relative_to_positive_score():
    run = {"q": {"a": 10.0, "p": 9.0, "b": 8.9, "c": 7.0, "d": 3.0}}
    stats: dict = {}
    neg = mine_negatives(run, {"q": {"p": 1}}, MiningConfig(rank_min=1, rank_max=10, margin=0.5), stats=stats)
    assert neg["q"] == ["c", "d"]  # a (above the positive) and b (within 0.5) are skipped
    assert stats["skipped"]["margin"] == 2
    neg = mine_negatives(run, {"q": {"p": 1}}, MiningConfig(rank_min=1, rank_max=10, relative_margin=0.5))
    assert neg["q"] == ["d"]  # 3.0 < 9 * 0.5
    stats = {}
    mine_negatives(run, {"q": {"zz": 1}}, MiningConfig(rank_min=1, margin=0.5), stats=stats)
    assert stats["queries_margin_unchecked"] == 1  # positive not retrieved: counted, not guessed


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match="rank_max"):
        MiningConfig(rank_min=5, rank_max=2)


def test_cli_mine(tmp_path):
    write_run(tmp_path / "r.trec", RUN)
    write_qrels(tmp_path / "q.tsv", {"q1": {"d3": 3}})
    rc = main(
        [
            "retrieve",
            "mine",
            "--run",
            str(tmp_path / "r.trec"),
            "--qrels",
            str(tmp_path / "q.tsv"),
            "--out",
            str(tmp_path / "neg.jsonl"),
            "--rank-max",
            "5",
            "--num-negatives",
            "2",
            "--source",
            "bm25",
        ]
    )
    assert rc == 0
    rows = [r for _, r in iter_jsonl(tmp_path / "neg.jsonl")]
    assert [(r["doc_id"], r["rank"], r["source"]) for r in rows] == [("d2", 2, "bm25"), ("d4", 4, "bm25")]
    assert {r["query_id"] for r in rows} == {"q1"} and rows[0]["score"] == RUN["q1"]["d2"]
