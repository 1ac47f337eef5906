"""A sentence-transformers bi-encoder in ONNX Runtime (fp32 or dynamic int8), for dense encoding and reranking.

The inner Hugging Face model (``st[0].auto_model``) is exported by hand, as the cross-encoder is in
:mod:`relforge.train.rerank` (``torch.onnx.export(opset_version=17, dynamo=False)``: the
sentence-transformers ONNX extra breaks this stack), and checked against torch (pooled embeddings within
1e-4) when it is made. Pooling (``mean`` or ``cls``) and normalisation run in numpy; texts are tokenized
once and batched by length, so padding is minimal. ``quantize="int8"`` adds dynamic int8 quantisation of
the MatMul weights (per channel), cached as ``model-int8.onnx`` beside the fp32 export.

Exports of a saved model folder are cached in ``$RELFORGE_CACHE/onnx/bi-<fingerprint>/`` (the folder
itself may be read-only, e.g. a packaged model); in-memory models go to a throwaway folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from relforge.errors import RelforgeError, UsageError
from relforge.train.rerank import (
    ONNX_OPSET,
    ONNX_TOLERANCE,
    _cache_root,
    _input_names,
    _session,
    _unsort,
    export_traced,
    hash_files,
    quantize_int8,
)


def _layout(st) -> tuple[Any, str, bool]:
    """``(hf_model, pooling_mode, normalize)`` of a Transformer + Pooling(mean|cls) [+ Normalize] model."""
    mods = list(st)
    kinds = [type(m).__name__ for m in mods]
    pooling = getattr(mods[1], "pooling_mode", None) if len(mods) > 1 else None
    ok = (
        kinds[:2] == ["Transformer", "Pooling"]
        and kinds[2:] in ([], ["Normalize"])
        and pooling in ("mean", "cls")
        and hasattr(mods[0], "auto_model")
    )
    if not ok:
        raise UsageError(
            f"the ONNX bi-encoder path supports Transformer + Pooling(mean|cls) [+ Normalize] models; this one "
            f"is {kinds} (pooling {pooling!r}): use precision fp32/bf16 (torch) for it"
        )
    return mods[0].auto_model, pooling, kinds[2:] == ["Normalize"]


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    if mode == "cls":
        emb = hidden[:, 0]
    else:
        m = mask[..., None].astype(np.float32)
        emb = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    if normalize:
        emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    return emb.astype(np.float32)


def export_onnx_bi(st, path: str | Path) -> Path:
    """Export the bi-encoder's inner HF model (token embeddings, dynamic batch and length) and check that
    ONNX Runtime + numpy pooling reproduce ``st.encode`` within 1e-4."""
    hf, mode, normalize = _layout(st)
    hf.eval()
    names = _input_names(hf)

    probe = ["a probe document with a few more words in it", "short"]
    batch = st.tokenizer(probe, padding=True, truncation=True, return_tensors="pt")
    path = Path(path)
    hidden = export_traced(hf, names, batch, path, "last_hidden_state", {0: "batch", 1: "seq"}, "hidden")
    got = _pool(hidden, batch["attention_mask"].numpy(), mode, normalize)
    want = st.encode(probe, convert_to_tensor=True).float().cpu().numpy()
    diff = float(np.abs(got - want).max())
    if diff > ONNX_TOLERANCE:
        path.unlink(missing_ok=True)
        raise RelforgeError(
            f"ONNX export of the bi-encoder differs from torch by {diff:.2e} (> {ONNX_TOLERANCE}); "
            "use precision fp32 or bf16 (torch)"
        )
    return path


def _fingerprint_bi(folder: Path) -> str | None:
    """Hash of the config and weights of a saved sentence-transformers folder (None when it is not one)."""
    files = [folder / "modules.json", folder / "config.json"]
    weights = [p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.exists()]
    if not all(f.exists() for f in files) or not weights:
        return None
    return hash_files([*files, weights[0]])


class OnnxBiEncoder:
    """``encode(texts)`` of a sentence-transformers bi-encoder in ONNX Runtime (fp32, or int8 weights).

    Args:
        st: a loaded ``SentenceTransformer`` (its tokenizer and ``max_seq_length`` are used).
        source: the folder it was loaded from (the export is cached by its fingerprint), or None.
        quantize: None (fp32, exact within 1e-4) or ``"int8"`` (dynamic int8 MatMul weights).
    """

    def __init__(self, st, source: str | None = None, quantize: str | None = None):
        if quantize not in (None, "int8"):
            raise UsageError(f"quantize {quantize!r} is not one of None, 'int8'")
        hf, self.mode, self.normalize = _layout(st)
        self.tokenizer = st.tokenizer
        self.max_length = st.max_seq_length
        self.names = _input_names(hf)
        self.path = self._export_cached(st, source)
        if quantize == "int8":
            self.path = quantize_int8(self.path)
        self.quantize = quantize
        self.session = _session(self.path)

    @staticmethod
    def _export_cached(st, source: str | None) -> Path:
        folder = Path(source) if source and Path(source).is_dir() else None
        fp = _fingerprint_bi(folder) if folder else None
        if fp is None:
            return export_onnx_bi(st, Path(tempfile.mkdtemp(prefix="relforge-onnx-bi-")) / "model.onnx")
        cand = _cache_root() / f"bi-{fp}"
        meta = cand / "relforge-onnx.json"
        if meta.exists() and (cand / "model.onnx").exists():
            if json.loads(meta.read_text()).get("fingerprint") == fp:
                return cand / "model.onnx"
        path = export_onnx_bi(st, cand / "model.onnx")
        meta.write_text(json.dumps({"fingerprint": fp, "opset": ONNX_OPSET, "kind": "bi"}, indent=2))
        return path

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts`` (normalised when the model has a Normalize module), float32, input order."""
        if not texts:
            return np.zeros((0, 0), np.float32)
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        order = np.argsort(-np.array([len(ids) for ids in enc["input_ids"]]), kind="stable")
        keys = [k for k in enc.keys() if k in self.names]
        rows = [{k: enc[k][i] for k in keys} for i in order]
        out = []
        for start in range(0, len(rows), batch_size):
            b = self.tokenizer.pad(rows[start : start + batch_size], padding=True, return_tensors="np")
            feed = {n: b[n].astype(np.int64) for n in self.names}
            hidden = self.session.run(["hidden"], feed)[0]
            out.append(_pool(hidden, b["attention_mask"], self.mode, self.normalize))
        return _unsort(np.concatenate(out), order)
