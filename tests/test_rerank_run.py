"""relforge.train.rerank_run: `relforge rerank`'s and the rerank stage's one entry point, on the packaged
MiniLM as a bi-encoder (small, local)."""

from __future__ import annotations

import pytest

from relforge.data import read_run, write_corpus, write_queries, write_run
from relforge.train.config import RerankConfig
from relforge.train.rerank_run import Reranker, RerankInputs, rerank_with, run, run_systems
from relforge.types import Document, Query

TOPICS = ["gout", "asthma", "anemia", "glaucoma", "measles"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    docs = [Document(t, f"{t} is a disease with many causes.", title=t.title()) for t in TOPICS]
    queries = [Query(f"q-{t}", f"what causes {t}?") for t in TOPICS]
    write_corpus(root / "corpus.jsonl", docs)
    write_queries(root / "queries.jsonl", queries)
    # a first stage that ranks every document, the query's own one last
    first = {q.id: {d.id: (0.0 if q.id == f"q-{d.id}" else 1.0) for d in docs} for q in queries}
    write_run(root / "first.trec", first)
    return root, RerankInputs(
        corpus=root / "corpus.jsonl", queries=root / "queries.jsonl", run=root / "first.trec"
    )


def test_run_reranks_the_top_k_and_writes_a_run(files):
    root, inputs = files
    cfg = RerankConfig(top_k=5, batch_size=4)
    s = run(cfg, inputs, root / "out.trec", model="minilm", kind="bi")
    got = read_run(root / "out.trec")
    assert (s.queries, s.pairs, s.lines) == (5, 25, 25) and s.pairs_per_s > 0
    assert (s.backend, s.precision) == ("torch", "fp32")
    # MiniLM puts each query's own document first, whatever the first stage said
    assert all(max(docs, key=docs.get) == q.removeprefix("q-") for q, docs in got.items())
    assert {line.split()[-1] for line in (root / "out.trec").read_text().splitlines()} == {"relforge-bi"}
    short = run(
        cfg.model_copy(update={"top_k": 2}), inputs, root / "top2.trec", model="minilm", kind="bi", tag="x"
    )
    assert short.pairs == 10 and all(len(d) == 2 for d in read_run(root / "top2.trec").values())


def test_run_systems_reuses_a_same_model_run(files):
    root, inputs = files
    cfg = RerankConfig(top_k=3)
    systems = [
        Reranker(name="backbone", model="minilm", kind="bi", backend="auto"),
        Reranker(name="plain", model="minilm", kind="bi", same_as="backbone"),
    ]
    outs = {s.name: root / f"{s.name}.trec" for s in systems}
    s = run_systems(cfg, inputs, outs, systems)
    assert s.queries == {"backbone": 5, "plain": 5} and list(s.pairs_per_s) == ["backbone"]
    assert s.same_as_backbone == ["plain"] and s.backend == "auto"
    assert s.precision["plain"] == {
        "backend": "torch",
        "precision": "fp32",
        "precision_requested": "fp32",
        "dtype": "float32",
        "autocast": False,
    }
    assert read_run(outs["plain"]) == read_run(outs["backbone"])
    assert (root / "plain.trec").read_text().split()[-1] == "plain"  # each run tagged with its system


def test_rerank_with_overrides(files):
    from relforge.data import read_corpus, read_queries

    root, inputs = files
    corpus, queries, first = read_corpus(inputs.corpus), read_queries(inputs.queries), read_run(inputs.run)
    out = rerank_with(RerankConfig(top_k=4), "minilm", "bi", corpus, queries, first, top_k=1)
    assert all(len(d) == 1 for d in out.values())
