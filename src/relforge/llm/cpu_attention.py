"""Grouped-query attention for bf16 scoring on CPU, registered with transformers' attention interface.

transformers' eager attention first copies every key/value head ``num_key_value_groups`` times
(``repeat_kv``) and runs the softmax on an fp32 copy of the scores. For the judge's scoring calls (short
rows against a cached prompt prefix, bf16, CPU) those copies were ~20 % of the time (torch.profiler).
Here the query heads that share a key/value head are stacked instead, so the two matmuls broadcast over
the shared heads without copying them, and the softmax runs on the bf16 scores directly (PyTorch's CPU
kernel accumulates in fp32; the output is rounded to bf16 exactly where eager's ``.to(query.dtype)``
rounds it). Same maths as eager; outputs equal to bf16 rounding (tests/test_llm_precision.py). A row
whose keys are all masked (a left-padding position) gets uniform weights as in eager, never NaN: the mask
value is the dtype's most negative finite number, which the addition does not push to -inf.

Only decoder families whose attention is plain scaled dot product (no logit soft-capping, no attention
sinks) use it: see :data:`SUPPORTED_MODEL_TYPES`; other models keep transformers' eager attention.
"""

from __future__ import annotations

from typing import Any

NAME = "relforge_gqa"
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def gqa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float,
    dropout: float = 0.0,
    **_: Any,
) -> tuple[Any, None]:
    """``query`` (batch, heads, q, dim); ``key``/``value`` (batch, kv_heads, k, dim); additive float mask
    (batch, 1, q, k) as eager's. Returns (batch, q, heads, dim) like eager, and no attention weights."""
    import torch

    if dropout and getattr(module, "training", False):
        raise RuntimeError(f"{NAME} attention is for inference; training uses the model's own attention")
    b, h, q, d = query.shape
    kvh, k = key.shape[1], key.shape[2]
    g = h // kvh
    # head j*g + r uses key/value head j (repeat_kv's layout): stack the g query heads of each kv head
    stacked = (query * scaling).reshape(b, kvh, g * q, d)
    scores = torch.matmul(stacked, key.transpose(2, 3))
    if attention_mask is not None:
        mask = attention_mask[:, :, None, :, :k]
        if mask.dtype != scores.dtype:  # bf16 autocast over fp32 weights: fp32 min would round to -inf
            mask = mask.clamp(min=torch.finfo(scores.dtype).min).to(scores.dtype)
        scores = scores.view(b, kvh, g, q, k).add_(mask).view(b, kvh, g * q, k)
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, value)
    return out.view(b, h, q, d).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register the attention (and eager's additive mask for it) with transformers; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, gqa_attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME


def scoring_attention(model: Any) -> str:
    """The attention implementation bf16 CPU scoring should use for ``model``."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return register() if model_type in SUPPORTED_MODEL_TYPES else "eager"
