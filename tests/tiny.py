"""Tiny random models with real tokenizers, shared by the test fixtures and the benchmarks that need a
fast stand-in model (never a hub download)."""

from __future__ import annotations

import os
from pathlib import Path


def save_tiny_llama(folder: str | Path, gguf: str) -> str:
    """A 2-layer random Llama with the tokenizer and chat template of the GGUF ``gguf`` (SmolLM2's),
    saved as an HF folder; returns the folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
