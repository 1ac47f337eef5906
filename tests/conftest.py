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
    from tests.tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_gguf)
