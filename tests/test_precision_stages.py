"""precision (auto|fp32|bf16|int8) of the dense encoder, reranking, training and the pipeline: it reaches the
model (param dtype and a forward hook on the matmuls), enters the dense cache key, fp32 reproduces the
default numbers exactly, auto degrades to fp32 on a CPU without bf16 (simulated)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import relforge.precision as precision_mod
from relforge.errors import UsageError
from relforge.types import Document, Query

DOCS = [
    Document(f"d{i}", f"{t} is a disease; treatment of {t} " * (1 + i % 3), title=t.title())
    for i, t in enumerate(
        ["gout", "asthma", "anemia", "glaucoma", "psoriasis", "measles", "rickets", "rabies"]
    )
]
QUERIES = {f"q{i}": Query(f"q{i}", f"how is {d.title.lower()} treated?") for i, d in enumerate(DOCS[:4])}


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


def _linear_dtypes(module, fn):
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        for m in module.modules()
        if type(m) is torch.nn.Linear
    ]
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return set(seen)


def test_dense_precision_reaches_the_encoder_and_the_cache_key(tmp_path):
    from relforge.models import resolve_model
    from relforge.retrieve.common import corpus_fingerprint
    from relforge.retrieve.dense import encode_corpus, encode_texts, load_encoder

    bf = load_encoder("minilm", 64, "bf16")
    assert {p.dtype for p in bf.parameters()} == {torch.bfloat16}
    assert _linear_dtypes(bf, lambda: encode_texts(bf, ["a test text"])) == {torch.bfloat16}
    fp = load_encoder("minilm", 64)
    assert {p.dtype for p in fp.parameters()} == {torch.float32} and fp is not bf
    files = {}
    embs = {}
    for p in ("fp32", "bf16", "int8"):
        ids, embs[p] = encode_corpus(DOCS, max_seq_length=64, cache_dir=tmp_path, progress=False, precision=p)
        files[p] = {f.name for f in tmp_path.glob("*.npy")} - set().union(*[v for k, v in files.items()])
        (name,) = files[p]
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["precision"] == p and meta["docs"] == len(DOCS)
        assert embs[p].dtype == np.float32 and np.allclose(np.linalg.norm(embs[p], axis=1), 1, atol=1e-3)
    # fp32 keeps the cache key of relforge before `precision` (old caches stay valid)
    ident = resolve_model("minilm")
    old = hashlib.sha256(f"{ident}\n64\n{corpus_fingerprint(DOCS)}".encode()).hexdigest()[:16]
    assert files["fp32"] == {f"model-{old}.npy"}
    for p in ("bf16", "int8"):  # close to fp32, not equal
        cos = (embs[p] * embs["fp32"]).sum(1)
        assert 0.97 < cos.min() and cos.max() < 1 - 1e-7


def test_dense_fp32_reproduces_the_default_exactly_and_auto_follows_the_cpu(no_bf16_cpu):
    from relforge.retrieve import RetrieveConfig, dense_search, retrieve
    from relforge.retrieve.dense import encoder_plan

    default = dense_search(DOCS, QUERIES, 5, max_seq_length=64, progress=False)
    assert dense_search(DOCS, QUERIES, 5, max_seq_length=64, progress=False, precision="fp32") == default
    assert encoder_plan("auto").resolved == "fp32"  # no AVX-512 BF16 / AMX: auto is fp32
    cfg = RetrieveConfig(method="dense", top_k=5, max_seq_length=64, precision="auto")
    assert retrieve(DOCS, QUERIES, cfg) == default


def test_auto_is_bf16_on_a_bf16_cpu(bf16_cpu):
    from relforge.retrieve.dense import encoder_plan
    from relforge.train.rerank import rerank_plan

    assert encoder_plan("auto").resolved == "bf16"
    assert rerank_plan("cross", "auto", "auto") == ("torch", precision_mod.plan_precision("auto"))


def test_rerank_plan_table_and_conflicts():
    from relforge.train.rerank import rerank_plan

    assert [(b, p.resolved) for b, p in [rerank_plan("cross"), rerank_plan("bi")]] == [
        ("onnx", "fp32"),
        ("torch", "fp32"),
    ]
    assert rerank_plan("cross", "onnx-int8")[1].resolved == "int8"  # today's int8 backend, recorded as such
    assert rerank_plan("bi", "auto", "int8")[0] == "onnx-int8"
    assert rerank_plan("cross", "torch", "int8")[0] == "torch"  # torch dynamic quantisation
    assert rerank_plan("cross", "auto", "bf16")[0] == "torch"
    with pytest.raises(UsageError, match="cannot run on backend 'onnx'"):
        rerank_plan("cross", "onnx", "bf16")
    with pytest.raises(UsageError, match="auto, fp32, bf16, fp16, int8"):
        rerank_plan("cross", "auto", "fp8")


def test_rerank_precisions_on_a_saved_cross_encoder(tmp_path):
    from relforge.train.rerank import _torch_precision, load_cross_encoder, rerank

    folder = tmp_path / "ce"
    load_cross_encoder("minilm", 64).save(str(folder))  # a fixed head: every load scores the same
    run = {q: {d.id: 1.0 for d in DOCS} for q in QUERIES}
    corpus = {d.id: d for d in DOCS}
    ref = rerank(str(folder), corpus, QUERIES, run, top_k=8, backend="torch")
    assert rerank(str(folder), corpus, QUERIES, run, top_k=8, backend="torch", precision="fp32") == ref
    got = {p: rerank(str(folder), corpus, QUERIES, run, top_k=8, precision=p) for p in ("bf16", "int8")}
    flat = [ref[q][d] for q in ref for d in ref[q]]
    for p, r in got.items():
        other = [r[q][d] for q in ref for d in ref[q]]
        assert np.corrcoef(flat, other)[0, 1] > 0.9 and flat != other, p
    # bf16 reaches the model: cast when relforge loads it, autocast (caller's weights untouched) otherwise
    ce = load_cross_encoder(str(folder))
    cast, plan = _torch_precision(ce, precision_mod.plan_precision("bf16"), owned=True)
    assert {p.dtype for p in cast.model.parameters()} == {torch.bfloat16} and not plan.autocast
    mine = load_cross_encoder(str(folder))
    seen = _linear_dtypes(
        mine.model,
        lambda: rerank("", corpus, QUERIES, run, top_k=2, backend="torch", model=mine, precision="bf16"),
    )
    assert seen == {torch.bfloat16} and {p.dtype for p in mine.model.parameters()} == {torch.float32}


def test_rerank_bi_encoder_int8_and_bf16():
    from relforge.train.rerank import rerank

    run = {q: {d.id: 1.0 for d in DOCS} for q in QUERIES}
    corpus = {d.id: d for d in DOCS}
    ref = rerank("minilm", corpus, QUERIES, run, top_k=8, kind="bi", max_length=64)
    for p in ("bf16", "int8"):
        r = rerank("minilm", corpus, QUERIES, run, top_k=8, kind="bi", max_length=64, precision=p)
        assert max(abs(r[q][d] - ref[q][d]) for q in ref for d in ref[q]) < 0.05, p
        assert all(max(r[q], key=r[q].get) == max(ref[q], key=ref[q].get) for q in ref), p


def test_train_precision_flags_and_bf16_autocast_on_cpu(tmp_path):
    from relforge.dataset import GroupConfig, build_groups
    from relforge.train import TrainConfig, train_cross_encoder
    from relforge.train.trainer import _precision, precision_plan

    assert _precision(TrainConfig()) == {"bf16": False, "fp16": False}  # auto on CPU: fp32, as before
    assert _precision(TrainConfig(precision="bf16")) == {"bf16": True, "fp16": False, "use_cpu": True}
    assert precision_plan(TrainConfig(precision="bf16")).metadata()["autocast"] is True
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="int8")
    corpus = {d.id: d for d in DOCS}
    qrels = {q: {f"d{q[1:]}": 1} for q in QUERIES}
    run = {q: {d.id: 1.0 for d in DOCS} for q in QUERIES}
    ds, _ = build_groups(QUERIES, qrels, run, corpus, None, GroupConfig(group_size=3, sampling="random"))
    seen: list[torch.dtype] = []

    def hook(m, i, o):
        if type(m) is torch.nn.Linear and torch.is_grad_enabled():
            seen.append(o.dtype)

    h = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        cfg = TrainConfig(precision="bf16", max_length=32, batch_groups=2, max_steps=2, logging_steps=1)
        summary = train_cross_encoder(ds, tmp_path / "m", cfg)
    finally:
        h.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the training matmuls ran in bf16
    assert summary["precision"]["precision"] == "bf16" and summary["precision"]["dtype"] == "float32"
    assert all(np.isfinite(p["loss"]) for p in summary["loss_curve"])
    from sentence_transformers import CrossEncoder

    saved = CrossEncoder(str(tmp_path / "m"))
    assert {p.dtype for p in saved.model.parameters()} == {torch.float32}  # fp32 master weights saved


def test_pipeline_precision_top_level_and_per_stage():
    from relforge.config import parse_config

    cfg = parse_config({"precision": "bf16", "retrieve": {"precision": "fp32"}})
    assert (cfg.retrieve.precision, cfg.rerank.precision, cfg.train.precision) == ("fp32", "bf16", "bf16")
    assert cfg.llm_options("judge")["precision"] == "bf16"
    cfg = parse_config({"precision": "int8", "judge": {"precision": "bf16"}, "llm": {"options": {"x": 1}}})
    assert cfg.train.precision == "auto" and cfg.rerank.precision == "int8"  # training never runs int8
    assert cfg.llm_options("judge") == {"x": 1, "precision": "bf16"}
    assert cfg.llm_options("generate") == {"x": 1, "precision": "int8"}
    plain = parse_config({})
    assert plain.llm_options("judge") == plain.llm.options and plain.rerank.precision == "fp32"
    remote = parse_config({"precision": "bf16", "llm": {"spec": "openai:http://127.0.0.1:1/v1#m"}})
    assert "precision" not in remote.llm_options("judge")  # a server's precision is its own
