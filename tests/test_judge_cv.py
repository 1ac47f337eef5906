"""K-fold CV of the judge (relforge.judge.cv) on a tiny random Llama with SmolLM2's real tokenizer."""

from __future__ import annotations

import json

import pytest

from relforge.errors import UsageError
from relforge.judge.cv import CVResult, assign_folds, run_cv
from relforge.judge.finetune_config import CVConfig, FinetuneConfig
from relforge.types import Document, Query


def _data(n_queries: int = 9, docs_per_query: int = 4):
    words = "fever cough insulin diabetes asthma migraine gluten vaccine dosage allergy".split()
    corpus, queries, qrels = {}, {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        queries[qid] = Query(qid, f"what helps {words[q % len(words)]} in adults?")
        qrels[qid] = {}
        for d in range(docs_per_query):
            did = f"d{q}-{d}"
            corpus[did] = Document(did, f"{words[(q + d) % len(words)]} " * 20, title=f"About {words[d]}")
            qrels[qid][did] = (q + d) % 4
    return corpus, queries, qrels


def _cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=2, max_doc_tokens=16, lora_layers=1, lora_r=2, lr=5e-2, batch_size=4, val_fraction=0.3)
    return FinetuneConfig(**(base | kw))


def test_folds_partition_queries_deterministically():
    qids = [f"q{i}" for i in range(23)]
    folds = assign_folds(qids + qids[:5], 5, seed=1)
    flat = [q for f in folds for q in f]
    assert sorted(flat) == sorted(qids) and len(flat) == len(set(flat))  # every query in exactly one fold
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert assign_folds(list(reversed(qids)), 5, seed=1) == folds
    assert assign_folds(qids, 5, seed=2) != folds
    with pytest.raises(UsageError, match="folds"):
        assign_folds(qids[:3], 5)


@pytest.fixture(scope="module")
def cv_run(tiny_llm_dir, tmp_path_factory):
    corpus, queries, qrels = _data()
    out = tmp_path_factory.mktemp("cv")
    res = run_cv(f"hf:{tiny_llm_dir}", corpus, queries, qrels, out, _cfg(), CVConfig(folds=3), progress=False)
    return out, res, (corpus, queries, qrels)


def test_cv_reports_held_out_folds_only_and_round_trips(cv_run):
    out, res, (_, _, qrels) = cv_run
    assert CVResult.load(out / "cv.json") == res
    assert (out / "cv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    llm, cos = res.judge("llm"), res.judge("minilm-cosine")
    for i, test_q in enumerate(res.fold_queries):
        meta = json.loads((out / f"fold-{i}" / "relforge.json").read_text())
        trained = set(meta["split"]["train_queries"]) | set(meta["split"]["val_queries"])
        assert not trained & set(test_q) and meta["test_queries"] == test_q  # reported fold never seen
        assert set(meta["split"]["val_queries"]) and set(meta["split"]["val_queries"]) <= trained
        n_test = sum(len(qrels[q]) for q in test_q)
        # the cosine baseline is scored on exactly the same held-out pairs
        assert llm.folds[i].n_pairs == cos.folds[i].n_pairs == n_test
        rows = [json.loads(x) for x in (out / f"fold-{i}" / "metrics.jsonl").read_text().splitlines()]
        dev_n = sum(len(qrels[q]) for q in meta["split"]["val_queries"])
        assert all(r["n"] == dev_n for r in rows)  # the epoch is chosen on the inner dev slice
        best = max((r for r in rows if r["epoch"] > 0), key=lambda r: r["kendall_tau_b"] or -2)
        assert llm.folds[i].best_epoch == best["epoch"]
    assert set(llm.mean) == set(cos.mean) and cos.mean["kendall_tau_b"] is not None


def test_reported_fold_labels_cannot_change_the_epoch_choice(cv_run, tiny_llm_dir, tmp_path):
    """Flip the reported fold's human grades: training, epoch choice and inner-dev numbers stay identical."""
    out, res, (corpus, queries, qrels) = cv_run
    test_q = res.fold_queries[0]
    flipped = {q: ({d: 3 - g for d, g in ds.items()} if q in test_q else ds) for q, ds in qrels.items()}
    from relforge.judge.finetune import finetune_judge

    cfg = _cfg(test_queries=test_q, judge_check=False)
    a = finetune_judge(
        f"hf:{tiny_llm_dir}", corpus, queries, flipped, tmp_path / "a", cfg, progress=False, hidden_cache={}
    )
    b = json.loads((out / "fold-0" / "relforge.json").read_text())
    assert a["best_epoch"] == b["best_epoch"]
    assert a["best"]["kendall_tau_b"] == pytest.approx(b["best"]["kendall_tau_b"], abs=1e-4)
    t_a, t_b = a["test"]["kendall_tau_b"], b["test"]["kendall_tau_b"]
    assert t_a == pytest.approx(-t_b, abs=1e-4)  # only the reported number moves (grades flipped)
