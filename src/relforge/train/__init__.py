"""relforge.train: LCE cross-encoder / dense reranker training, and reranking (torch or ONNX Runtime).

Reranking lives in ``relforge.train.rerank`` (``from relforge.train.rerank import rerank``: the module and
the function share the name, so the package does not re-export the function). Names are imported lazily so ``relforge --help`` (which imports ``relforge.train.cli``) stays fast.
"""

from __future__ import annotations

import importlib

from relforge.train.config import TrainConfig

_LAZY = {
    "OnnxCrossEncoder": "relforge.train.rerank",
    "export_onnx": "relforge.train.rerank",
    "LOSSES": "relforge.train.trainer",
    "DevSet": "relforge.train.trainer",
    "check_loss": "relforge.train.trainer",
    "train_bi_encoder": "relforge.train.trainer",
    "train_cross_encoder": "relforge.train.trainer",
    "LCELoss": "relforge.train.losses",
}

__all__ = ["TrainConfig", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'relforge.train' has no attribute {name!r}")
