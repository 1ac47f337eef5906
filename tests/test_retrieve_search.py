"""BM25 / dense / RRF on tiny hand-made corpora with exact expected ids."""

from __future__ import annotations

import pytest

from relforge.cli import main
from relforge.data import read_run, write_corpus, write_queries
from relforge.retrieve import bm25_search, build_bm25_index, dense_search, rrf
from relforge.types import Document, Query

DOCS = [
    Document("d0", "a cat is a feline and likes to purr"),
    Document("d1", "dogs bark loudly at the mailman"),
    Document("d2", "the cat sat on the mat next to the dog"),
    Document("d3", "fish swim in the deep blue sea"),
]


def test_bm25_exact_ids():
    run = bm25_search(DOCS, {"q1": "cat purr", "q2": "dogs bark", "q3": "unrelated zebra"}, top_k=10)
    assert list(run["q1"]) == ["d0", "d2"]  # only docs sharing a term, best first
    assert run["q1"]["d0"] > run["q1"]["d2"] > 0
    assert next(iter(sorted(run["q2"], key=run["q2"].get, reverse=True))) == "d1"
    assert run["q3"] == {}  # no shared term: no arbitrary zero-score docs


def test_bm25_top_k_clamped_and_query_forms():
    a = bm25_search({d.id: d for d in DOCS}, [Query("q", "the cat")], top_k=1)
    b = bm25_search(DOCS, {"q": Query("q", "the cat")}, top_k=1)
    assert a == b and len(a["q"]) == 1


def test_bm25_index_save_reload_identical(tmp_path):
    qs = {"q1": "cat on a mat", "q2": "sea fish", "q3": "dog"}
    first = bm25_search(DOCS, qs, top_k=3, index_dir=tmp_path / "idx")
    _, _, reused = build_bm25_index(DOCS, tmp_path / "idx")
    assert reused
    assert bm25_search(DOCS, qs, top_k=3, index_dir=tmp_path / "idx") == first
    changed = [*DOCS[:3], Document("d3", "cats cats cats")]
    _, _, reused = build_bm25_index(changed, tmp_path / "idx")
    assert not reused  # another corpus never reuses a stale index
    assert "d3" in bm25_search(changed, {"q": "cats"}, top_k=3, index_dir=tmp_path / "idx")["q"]


def test_dense_minilm_obvious_pair_first(tmp_path):
    docs = [
        Document("flu", "Influenza is a viral infection causing fever, cough and body aches."),
        Document("car", "Change the engine oil of your car every ten thousand kilometres."),
        Document("bake", "Knead the bread dough and let it rise for one hour before baking."),
    ]
    qs = {"q1": "how often should I replace motor oil", "q2": "symptoms of the flu virus"}
    run = dense_search(docs, qs, top_k=2, cache_dir=tmp_path, progress=False)
    assert max(run["q1"], key=run["q1"].get) == "car"
    assert max(run["q2"], key=run["q2"].get) == "flu"
    assert len(run["q1"]) == 2
    cached = list(tmp_path.glob("*.npy"))
    assert len(cached) == 1
    assert dense_search(docs, qs, top_k=2, cache_dir=tmp_path, progress=False) == run  # from the cache


def test_rrf_hand_values():
    a = {"q": {"x": 3.0, "y": 2.0, "z": 1.0}}
    b = {"q": {"y": 0.9, "w": 0.5}}
    fused = rrf([a, b], k=60)
    assert fused["q"]["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["q"]["x"] == pytest.approx(1 / 61)
    assert fused["q"]["w"] == pytest.approx(1 / 62)
    assert fused["q"]["z"] == pytest.approx(1 / 63)
    assert list(rrf({"a": a, "b": b}, k=60, top_k=2)["q"]) == ["y", "x"]
    # ties in an input run are ranked by doc id ascending (relforge's tie policy)
    assert rrf([{"q": {"b": 1.0, "a": 1.0}}], k=0)["q"] == {"a": 1.0, "b": 0.5}


def test_cli_retrieve_bm25_writes_trec(tmp_path):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    write_queries(tmp_path / "q.jsonl", [Query("q1", "cat purr"), Query("q2", "fish sea")])
    rc = main(
        [
            "retrieve",
            "--corpus",
            str(tmp_path / "c.jsonl"),
            "--queries",
            str(tmp_path / "q.jsonl"),
            "--method",
            "bm25",
            "--top-k",
            "1",
            "--out",
            str(tmp_path / "run.trec"),
        ]
    )
    assert rc == 0
    assert {q: list(s) for q, s in read_run(tmp_path / "run.trec").items()} == {"q1": ["d0"], "q2": ["d3"]}


def test_cli_retrieve_bad_method_and_missing_args(tmp_path):
    write_corpus(tmp_path / "c.jsonl", DOCS)
    write_queries(tmp_path / "q.jsonl", [Query("q1", "cat")])
    args = [
        "retrieve",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--out",
        str(tmp_path / "r.trec"),
    ]
    assert main([*args, "--method", "sparse"]) == 2
    assert main(["retrieve", "--corpus", str(tmp_path / "c.jsonl")]) == 2


def test_dense_cache_is_resumable_in_parts(tmp_path):
    import numpy as np

    from relforge.retrieve.dense import _cache_file, encode_corpus

    ids, full = encode_corpus(DOCS, cache_dir=tmp_path, chunk_size=2, progress=False)
    final = _cache_file(tmp_path, "minilm", DOCS)
    assert ids == [d.id for d in DOCS] and full.shape[0] == 4
    assert final.is_file() and not final.with_suffix(".parts").exists()  # parts merged and removed
    # simulate an interrupted run: only the first part was saved (marked with a recognisable value)
    final.unlink()
    parts = final.with_suffix(".parts")
    parts.mkdir()
    np.save(parts / f"{0:09d}.npy", np.full((2, full.shape[1]), 0.5, dtype=np.float32))
    _, resumed = encode_corpus(DOCS, cache_dir=tmp_path, chunk_size=2, progress=False)
    assert np.all(resumed[:2] == 0.5)  # the saved part was reused, not recomputed
    np.testing.assert_allclose(resumed[2:], full[2:], atol=1e-5)
