"""Reranking a run with a cross-encoder (torch or ONNX Runtime) or a bi-encoder.

The fast path: every (query, doc) pair is tokenized once, pairs are sorted by token length and
batched so padding is minimal, and the CrossEncoder's inner Hugging Face model runs in ONNX Runtime
(exported by hand with ``torch.onnx.export(opset_version=17, dynamo=False)`` — the
sentence-transformers ONNX extra breaks this stack). The export is cached beside the model
(``<model>/onnx/``) or in ``$RELFORGE_CACHE/onnx/<fingerprint>/`` and checked against torch logits
(max abs difference <= 1e-4) when it is made.

``backend="onnx-int8"`` adds dynamic int8 quantisation of the export's MatMul weights (per channel;
the classifier head stays fp32), cached as ``model-int8.onnx`` beside the fp32 file. It is faster
but no longer exact: ``benchmarks/rerank.py`` measures its speed and its nDCG@10 change in one run.

``precision`` (:mod:`relforge.precision`) picks the numeric path for both kinds: ``fp32`` (default: the
``backend`` as given, today's scores exactly), ``bf16`` (torch, bfloat16 weights), ``int8`` (ONNX Runtime
with int8 weights: ``onnx-int8``; bi-encoders through :class:`relforge.train.onnx_bi.OnnxBiEncoder`) or
``auto`` (bf16 on a CPU with AVX-512 BF16 / AMX, else fp32). :func:`rerank_plan` says what a setting runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relforge.errors import DataError, RelforgeError, UsageError
from relforge.precision import PrecisionPlan, apply_precision, plan_precision
from relforge.types import DOC_FIELDS, Document, Query, Run, sorted_ranking

KINDS = ("cross", "bi")
BACKENDS = ("auto", "onnx", "onnx-int8", "torch")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4


def _check_choice(name: str, value: str, allowed: Iterable[str], setting: str) -> None:
    if value not in allowed:
        raise UsageError(f"{name} {value!r} is not one of {', '.join(allowed)} (set {setting})")


def load_cross_encoder(model: str, max_length: int | None = None):
    """A CrossEncoder from a folder, a named default (``minilm``) or a hub id (num_labels=1)."""
    from sentence_transformers import CrossEncoder

    from relforge.models import resolve_model

    path = resolve_model(model)
    kw: dict[str, Any] = {"num_labels": 1}
    if max_length is not None:
        kw["max_length"] = max_length
    try:
        return CrossEncoder(path, **kw)
    except OSError as e:
        from relforge.errors import ModelNotFoundError

        raise ModelNotFoundError(f"cannot load cross-encoder {model!r}: {e}") from None


# --------------------------------------------------------------------------- tokenization


def encode_sorted(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> tuple[list[dict], np.ndarray]:
    """Tokenize all pairs once, sort by token length (longest first) and return the un-padded
    encodings in that order plus the permutation (``order[i]`` = index of the i-th sorted pair)."""
    if not pairs:
        return [], np.zeros(0, dtype=np.int64)
    from relforge.textcut import cut_chars

    docs = [cut_chars(d, max_length)[0] for _, d in pairs]  # characters first, then tokens
    queries = [cut_chars(q, max_length)[0] for q, _ in pairs]
    enc = tokenizer(queries, docs, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    keys = list(enc.keys())
    return [{k: enc[k][i] for k in keys} for i in order], order


def _batches(tokenizer, encoded: list[dict], batch_size: int):
    for start in range(0, len(encoded), batch_size):
        yield tokenizer.pad(encoded[start : start + batch_size], padding=True, return_tensors="np")


def _unsort(scores: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores)
    out[order] = scores
    return out


def torch_logits(
    model, pairs: list[tuple[str, str]], batch_size: int = 32, plan: PrecisionPlan | None = None
) -> np.ndarray:
    """Raw logits of a CrossEncoder for ``pairs`` with torch (length-sorted batches), inside the
    precision plan's context (autocast plans)."""
    import contextlib

    import torch

    hf = model.model
    hf.eval()
    encoded, order = encode_sorted(model.tokenizer, pairs, model.max_length)
    names = set(_input_names(hf))
    out = []
    ctx = plan.context() if plan is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        for batch in _batches(model.tokenizer, encoded, batch_size):
            feed = {k: torch.from_numpy(v).to(hf.device) for k, v in batch.items() if k in names}
            out.append(hf(**feed).logits[:, 0].float().cpu().numpy())
    return _unsort(np.concatenate(out) if out else np.zeros(0, np.float32), order)


def _input_names(hf) -> list[str]:
    import inspect

    params = inspect.signature(hf.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]


# --------------------------------------------------------------------------- ONNX


def _fingerprint(folder: Path) -> str | None:
    """Hash of config + weights of a saved cross-encoder, or None when the folder is not one
    (e.g. a sentence-transformers bi-encoder, whose classifier head is new at every load)."""
    cfg = folder / "config.json"
    weights = [p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.exists()]
    if not cfg.exists() or not weights:
        return None
    arch = json.loads(cfg.read_text()).get("architectures") or []
    if not any("ForSequenceClassification" in a for a in arch):
        return None
    return hash_files([cfg, weights[0]])


def hash_files(files: list[Path]) -> str:
    """First 16 hex digits of the sha256 of the files' bytes, in order (an export's cache fingerprint)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    return Path(os.environ.get("RELFORGE_CACHE", "~/.cache/relforge")).expanduser() / "onnx"


def export_onnx(model, path: str | Path) -> Path:
    """Export a CrossEncoder's inner HF model to ONNX (opset 17, dynamic batch and length) and check
    that ONNX Runtime reproduces the torch logits within 1e-4."""
    import torch

    hf = model.model.eval()
    names = _input_names(hf)
    path = Path(path)
    probe = [("what is the probe query", "a probe document with a few more words in it"), ("short", "pair")]
    batch = model.tokenizer([q for q, _ in probe], [d for _, d in probe], padding=True, return_tensors="pt")
    got = export_traced(hf, names, batch, path, "logits", {0: "batch"})[:, 0]
    with torch.no_grad():
        want = hf(**{n: batch[n] for n in names}).logits[:, 0].float().numpy()
    diff = float(np.abs(got - want).max())
    if diff > ONNX_TOLERANCE:
        path.unlink(missing_ok=True)
        raise RelforgeError(
            f"ONNX export of the reranker differs from torch by {diff:.2e} (> {ONNX_TOLERANCE}); "
            "use --backend torch"
        )
    return path


def export_traced(
    hf, names: list[str], batch, path: Path, attr: str, output_axes: dict[int, str], output: str | None = None
):
    """Trace ``hf(**inputs).<attr>`` to ONNX at ``path`` as the graph output ``output`` (default ``attr``;
    opset :data:`ONNX_OPSET`, dynamic batch and length, written atomically) and return ONNX Runtime's
    output on ``batch`` (for the caller's check against torch)."""
    output = output or attr
    import torch

    class _Out(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return getattr(self.inner(**dict(zip(names, args, strict=True))), attr)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes[output] = output_axes
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python bools in HF masking code
        torch.onnx.export(
            _Out(hf).eval(),
            tuple(batch[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)
    hf.eval()  # the exporter restores the wrapper's mode recursively: keep the model in eval mode
    return _session(path).run([output], {n: batch[n].numpy() for n in names})[0]


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(os.environ.get("RELFORGE_ORT_THREADS", "0"))
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxCrossEncoder:
    """A CrossEncoder's scoring head-to-tail in ONNX Runtime, with length-sorted batches.

    Args:
        model: a loaded CrossEncoder (its tokenizer and max length are used; it is exported once).
        source: the folder it was loaded from (the export is cached there, or under
            ``$RELFORGE_CACHE/onnx/<fingerprint>/`` when the folder is read-only).
    """

    def __init__(self, model, source: str | None = None, quantize: str | None = None):
        if quantize not in (None, "int8"):
            raise UsageError(f"quantize {quantize!r} is not one of None, 'int8'")
        self.tokenizer = model.tokenizer
        self.max_length = model.max_length
        self.names = _input_names(model.model)
        self.path = self._export_cached(model, source)
        if quantize == "int8":
            self.path = quantize_int8(self.path)
        self.session = _session(self.path)

    @staticmethod
    def _export_cached(model, source: str | None) -> Path:
        folder = Path(source) if source and Path(source).is_dir() else None
        fp = _fingerprint(folder) if folder else None
        if fp is None:  # not a saved cross-encoder: export to a throwaway folder
            return export_onnx(model, Path(tempfile.mkdtemp(prefix="relforge-onnx-")) / "model.onnx")
        candidates = [folder / "onnx", _cache_root() / fp]
        for cand in candidates:
            meta = cand / "relforge-onnx.json"
            if meta.exists() and (cand / "model.onnx").exists():
                if json.loads(meta.read_text()).get("fingerprint") == fp:
                    return cand / "model.onnx"
        for cand in candidates:
            try:
                cand.mkdir(parents=True, exist_ok=True)
                path = export_onnx(model, cand / "model.onnx")
                (cand / "relforge-onnx.json").write_text(
                    json.dumps(
                        {"fingerprint": fp, "opset": ONNX_OPSET, "inputs": model_names(model)}, indent=2
                    )
                )
                return path
            except PermissionError:
                continue
        raise RelforgeError(
            f"cannot write the ONNX export to {candidates[0]} nor {candidates[1]}; "
            "set RELFORGE_CACHE to a writable folder"
        )

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """Raw logits for ``pairs`` (the same numbers as the torch model's, within 1e-4)."""
        encoded, order = encode_sorted(self.tokenizer, pairs, self.max_length)
        out = [
            self.session.run(["logits"], {n: b[n].astype(np.int64) for n in self.names})[0][:, 0]
            for b in _batches(self.tokenizer, encoded, batch_size)
        ]
        return _unsort(np.concatenate(out) if out else np.zeros(0, np.float32), order)


def quantize_int8(path: Path) -> Path:
    """``model-int8.onnx`` beside ``path``: dynamic int8 quantisation of the MatMul weights (per
    channel), the classifier head left in fp32; made once, written atomically, reused after."""
    out = path.with_name(f"{path.stem}-int8.onnx")
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(path), load_external_data=False).graph
    head = [n.name for n in graph.node if n.op_type == "MatMul" and "classifier" in n.name]
    tmp = out.with_name(f".{out.name}.tmp")
    quantize_dynamic(
        str(path),
        str(tmp),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=head,
    )
    os.replace(tmp, out)
    return out


def model_names(model) -> list[str]:
    return _input_names(model.model)


# --------------------------------------------------------------------------- rerank


def rerank_plan(
    kind: str, backend: str = "auto", precision: str | None = "fp32"
) -> tuple[str, PrecisionPlan]:
    """``(backend, plan)`` a reranking setting runs: the concrete backend (``onnx | onnx-int8 | torch``) and
    the resolved precision (``fp32 | bf16 | int8``), for the run's metadata.

    ``precision`` fp32 keeps ``backend`` as given (``auto`` = onnx for cross, torch for bi; an explicit
    ``onnx-int8`` is then recorded as int8); bf16 runs on torch; int8 on ONNX Runtime (``onnx-int8``), or
    torch dynamic quantisation with ``backend="torch"``.
    """
    _check_choice("kind", kind, KINDS, "kind / --kind")
    _check_choice("backend", backend, BACKENDS, "backend / --backend")
    plan = plan_precision(precision or "fp32", "cpu")
    p = plan.resolved
    if p == "fp32":
        if backend == "auto":
            backend = "onnx" if kind == "cross" else "torch"
        if backend == "onnx-int8":
            plan = plan_precision("int8", "cpu")
        return backend, plan
    allowed = {"bf16": ("auto", "torch"), "int8": ("auto", "onnx-int8", "torch")}[p]
    if backend not in allowed:
        raise UsageError(
            f"precision {precision!r} ({p}) cannot run on backend {backend!r}; use --backend "
            f"{' or '.join(allowed)} (or --precision fp32)"
        )
    return (
        "onnx-int8" if p == "int8" and backend == "auto" else "torch" if backend == "auto" else backend
    ), plan


def rerank(
    model_dir: str,
    corpus: Mapping[str, Document],
    queries: Mapping[str, Query],
    run: Run,
    top_k: int = 100,
    kind: str = "cross",
    backend: str = "auto",
    batch_size: int = 32,
    max_length: int | None = None,
    model: Any = None,
    precision: str | None = "fp32",
    doc_fields: Sequence[str] = DOC_FIELDS,
) -> Run:
    """Rerank each query's top ``top_k`` documents of ``run``.

    Args:
        model_dir: a trained model folder, a named default (``minilm``) or a hub id.
        corpus: ``{docid: Document}``; document text = :func:`relforge.types.doc_text` with ``doc_fields``
            (the layout the model was trained on: ``groups.doc_fields``).
        queries: ``{qid: Query}``.
        run: the first-stage run; only its top ``top_k`` per query (relforge's tie policy) are kept.
        top_k: depth to rerank.
        kind: ``cross`` (CrossEncoder logits) or ``bi`` (SentenceTransformer cosine).
        backend: ``onnx`` (cross only, exact), ``onnx-int8`` (cross only, int8 weights: faster,
            approximate), ``torch``, or ``auto`` (onnx for cross, torch for bi).
        batch_size: pairs per forward pass.
        max_length: token limit of (query, doc) pairs; default the model's.
        model: an already loaded model to use instead of loading ``model_dir`` (torch backend; with bf16
            it runs under autocast rather than being cast, so the caller's model is left as it is).
        precision: ``fp32`` (default, exact), ``bf16``, ``int8`` or ``auto``; see :func:`rerank_plan`.

    Returns:
        The reranked run (top ``top_k`` per query, scores from the model).
    """
    from relforge.types import doc_text

    backend, plan = rerank_plan(kind, backend, precision)
    if top_k < 1:
        raise UsageError(f"top_k must be >= 1, got {top_k} (set --top-k)")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size} (set --batch-size)")
    lists: dict[str, list[str]] = {}
    for qid, scores in run.items():
        if qid not in queries:
            raise DataError(f"the run names query {qid!r}, which is not in the queries")
        lists[qid] = [d for d, _ in sorted_ranking(scores)[:top_k]]
        for d in lists[qid]:
            if d not in corpus:
                raise DataError(f"the run names document {d!r} (query {qid!r}), which is not in the corpus")
    if kind == "bi":
        enc = _bi_encoder(model if model is not None else model_dir, backend, plan, max_length)
        return _rerank_bi(enc, corpus, queries, lists, batch_size, plan, doc_fields)
    pairs = [(queries[q].text, doc_text(corpus[d], doc_fields)) for q, ds in lists.items() for d in ds]
    ce = model if model is not None else load_cross_encoder(model_dir, max_length)
    if backend.startswith("onnx"):
        from relforge.models import resolve_model

        scores = OnnxCrossEncoder(
            ce,
            resolve_model(model_dir) if model is None else None,
            quantize="int8" if backend == "onnx-int8" else None,
        ).predict(pairs, batch_size)
    else:
        ce, plan = _torch_precision(ce, plan, owned=model is None, skip=("classifier",))
        scores = torch_logits(ce, pairs, batch_size, plan)
    out: Run = {}
    i = 0
    for qid, ds in lists.items():
        out[qid] = {d: float(s) for d, s in zip(ds, scores[i : i + len(ds)], strict=True)}
        i += len(ds)
    return out


def _torch_precision(model, plan: PrecisionPlan, *, owned: bool, skip: tuple[str, ...] = ()):
    """Put a torch model into ``plan``: cast (bf16) or quantise (int8) a model loaded here (``owned``); a
    caller's model is never changed: bf16 runs it under autocast, int8 is refused."""
    if plan.resolved == "fp32":
        return model, plan
    if owned:
        return apply_precision(model, plan, skip=skip)
    if plan.resolved == "int8":
        raise UsageError(
            "precision int8 quantises the model in place: pass a model folder, not a loaded model"
        )
    return model, plan_precision(plan.requested, plan.device, autocast=True)


def _bi_encoder(model, backend: str, plan: PrecisionPlan, max_length: int | None):
    """The bi-encoder to rerank with: a SentenceTransformer (torch, in ``plan``) or an OnnxBiEncoder."""
    owned = isinstance(model, str)
    source = None
    if owned:
        from sentence_transformers import SentenceTransformer

        from relforge.models import resolve_model

        source = resolve_model(model)
        model = SentenceTransformer(source)
    if max_length is not None:
        model.max_seq_length = max_length
    if backend.startswith("onnx"):
        from relforge.train.onnx_bi import OnnxBiEncoder

        return OnnxBiEncoder(model, source, quantize="int8" if backend == "onnx-int8" else None)
    model, plan = _torch_precision(model, plan, owned=owned)
    return model, plan


def _rerank_bi(enc, corpus, queries, lists, batch_size, plan: PrecisionPlan, doc_fields=DOC_FIELDS) -> Run:
    from relforge.types import doc_text

    qids = list(lists)
    dids = sorted({d for ds in lists.values() for d in ds})
    qtexts = [queries[q].text for q in qids]
    dtexts = [doc_text(corpus[d], doc_fields) for d in dids]
    if isinstance(enc, tuple):  # (SentenceTransformer, plan) on torch
        st, plan = enc
        qv, dv = _st_encode(st, qtexts, batch_size, plan), _st_encode(st, dtexts, batch_size, plan)
    else:
        qv, dv = enc.encode(qtexts, batch_size), enc.encode(dtexts, batch_size)
    didx = {d: i for i, d in enumerate(dids)}
    out: Run = {}
    for qi, qid in enumerate(qids):
        idx = [didx[d] for d in lists[qid]]
        sims = dv[idx] @ qv[qi]
        out[qid] = {d: float(s) for d, s in zip(lists[qid], sims, strict=True)}
    return out


def _st_encode(st, texts: list[str], batch_size: int, plan: PrecisionPlan) -> np.ndarray:
    if plan.resolved == "fp32":  # exactly the numbers of relforge before precision existed
        return st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    from relforge.retrieve.dense import _normalized

    with plan.context():
        out = st.encode(texts, batch_size=batch_size, convert_to_tensor=True)
    return _normalized(out.float().cpu().numpy())
