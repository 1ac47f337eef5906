"""Shared fixtures. Tests never touch a model hub: everything is local or built here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():  # CI clones beside shared/ too; allow an override
    SHARED = Path(os.environ.get("RELFORGE_SHARED", str(SHARED)))
MEDQUAD_TAR = SHARED / "data" / "medquad" / "medquad-xml.tar.xz"
LIVEQA_DIR = SHARED / "data" / "liveqa-med-judged"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    from relforge.models import resolve_model

    return resolve_model("smollm2")


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, smollm2_gguf) -> str:
    """A 2-layer random Llama with SmolLM2's real tokenizer and chat template, saved as an HF folder.

    Fast enough for plumbing tests (load < 1 s); its outputs are random, so tests assert on shapes,
    probabilities summing to one, caching and reloading — never on quality.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    gguf_dir, gguf_file = os.path.dirname(smollm2_gguf), os.path.basename(smollm2_gguf)
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
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
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
