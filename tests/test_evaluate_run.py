"""relforge.evaluate.run.run (the one entry point of `relforge evaluate` and the evaluate stage), the
comparison pairs, and the typed records of the extra collections and the ablation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relforge.evaluate import EvalConfig, EvalResult, evaluate
from relforge.evaluate.run import EvalInputs, EvalOutputs, EvalSummary, comparison_pairs, run

FIX = Path(__file__).parent / "fixtures" / "eval"
RUNS = {"bm25": FIX / "bm25.trec", "dense": FIX / "dense.trec", "plain": FIX / "reranker.trec"}


def test_run_writes_the_result_and_summarises_it(tmp_path):
    cfg = EvalConfig(measures=["nDCG@10", "MRR@10"], permutation_rounds=500, seed=3)
    shown = []
    summary = run(
        cfg,
        EvalInputs(qrels=FIX / "qrels.trec", runs=RUNS, pairs=[("plain", "dense")]),
        tmp_path / "eval",
        show=shown.append,
    )
    res = EvalResult.from_json(tmp_path / "eval" / "metrics.json")
    direct = evaluate(FIX / "qrels.trec", RUNS, **cfg.model_dump(), pairs=[("plain", "dense")])
    assert res.aggregates == direct.aggregates and res.runs == ["bm25", "dense", "plain"]
    assert [(c["run"], c["versus"]) for c in res.pairwise] == [("plain", "dense")]
    assert res.settings["permutation_rounds"] == 500 and res.baseline == "bm25"
    assert (tmp_path / "eval" / "metrics.csv").read_text().startswith("run,n_queries,nDCG@10,")
    assert len(shown) == 1 and shown[0].aggregates == direct.aggregates
    assert summary.measure == "nDCG@10"
    assert summary.scores == {r: round(direct.aggregates[r]["nDCG@10"], 4) for r in RUNS}
    assert summary.counts() == {f"{r}:nDCG@10": v for r, v in summary.scores.items()}
    assert EvalSummary.model_validate_json(summary.model_dump_json()) == summary


def test_run_writes_only_the_outputs_named(tmp_path):
    out = EvalOutputs(per_query_csv=tmp_path / "pq.csv")
    run(
        EvalConfig(permutation_rounds=100, baseline="dense"),
        EvalInputs(qrels=FIX / "qrels.tsv", runs=RUNS),
        out,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pq.csv"]
    assert out.files() == [tmp_path / "pq.csv"]
    assert (tmp_path / "pq.csv").read_text().splitlines()[
        0
    ] == "run,query_id,nDCG@10,MRR@10,MAP@100,R@100,P@10"


def test_comparison_pairs():
    assert comparison_pairs(["bm25", "backbone", "plain", "judged", "soft"]) == [
        ("judged", "plain"),
        ("soft", "plain"),
        ("plain", "backbone"),
        ("judged", "backbone"),
        ("soft", "backbone"),
    ]
    assert comparison_pairs(["bm25", "judged"]) == []


def test_extra_index_and_ablation_round_trip(tmp_path):
    from relforge.evaluate.ablation import AblationResult, nested_subsets
    from relforge.evaluate.extra import ExtraEntry, ExtraIndex

    entry = ExtraEntry(
        metrics="eval/extra/x/metrics.json",
        source="sample:liveqa-med",
        split="test",
        mode="pool",
        first_stage="hybrid",
        top_k=34,
        queries=48,
        documents=1001,
        description="out of domain – ü",
    )
    ExtraIndex({"x": entry}).write(tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text(encoding="utf-8")
    assert "– ü" in text and text.endswith("}\n")  # written like the pipeline's JSON: UTF-8, indent 2
    assert ExtraIndex.read(tmp_path / "s.json").root["x"] == entry
    rows = [
        {
            "size": 8,
            "variant": "plain",
            "requested_size": 8,
            "train_seconds": 1.5,
            "nDCG@10": 0.5,
            "p_vs_bm25": None,
        },
        {
            "size": 20,
            "variant": "plain",
            "requested_size": 99,
            "source": "train/plain (full set)",
            "nDCG@10": 0.6,
        },
    ]
    AblationResult(rows=rows, reference={"BM25": 0.4}, variants=["plain"], seed=0).write(tmp_path / "a.json")
    back = json.loads((tmp_path / "a.json").read_text())
    assert back["rows"] == rows and list(back["rows"][0]) == list(rows[0])  # extra keys kept, in order
    assert AblationResult.read(tmp_path / "a.json").rows[1].source == "train/plain (full set)"
    sub = nested_subsets(20, [8, 99], seed=0)
    assert set(sub[8]) <= set(sub[99]) and len(sub[99]) == 20


def test_extra_first_stages_rank_exactly_the_pool():
    from relforge.evaluate.extra import rank_pools

    runs = {"a": {"q": {"d1": 2.0, "zz": 5.0}}, "b": {}}
    rank_pools(runs, {"q": {"d1": 1, "d2": 0, "d3": 2}})
    assert runs["a"]["q"] == {"d1": 2.0, "d2": pytest.approx(1.0), "d3": pytest.approx(0.999)}
    assert list(runs["b"]["q"]) == ["d1", "d2", "d3"]


@pytest.mark.parametrize("precision, dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_extra_first_stages_encode_in_the_retrieve_precision(tmp_path, precision, dtype):
    """evaluate.extra's dense (and so hybrid) first stage encodes in ``retrieve.precision``, as the
    in-domain retrieve stage does: the embeddings' cache record says which precision and dtype encoded."""
    import json

    from relforge.config import parse_config
    from relforge.evaluate.extra import first_stages
    from relforge.types import Document, Query

    texts = ["iron deficiency anemia", "flu fever cough", "knee surgery", "gout diet", "migraine aura"]
    corpus = {f"d{i}": Document(f"d{i}", t) for i, t in enumerate(texts)}
    queries = {"q1": Query("q1", "what causes anemia"), "q2": Query("q2", "symptoms of flu")}
    cfg = parse_config({"precision": precision, "retrieve": {"top_k": 3}})
    assert cfg.retrieve.precision == precision
    runs = first_stages(corpus, queries, {}, "full", cfg.retrieve, tmp_path)
    assert set(runs) == {"bm25", "dense", "hybrid"} and all(len(r) == 3 for r in runs["dense"].values())
    (meta,) = [json.loads(p.read_text()) for p in (tmp_path / "embeddings").glob("*.npy.json")]
    assert (meta["precision"], meta["dtype"], meta["docs"]) == (precision, dtype, 5)
