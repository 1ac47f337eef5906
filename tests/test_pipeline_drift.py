"""Settings that the pipeline once dropped on the floor reach the code that uses them, as in the stage CLIs:
``judge.reasoning`` (and ``reasoning_max_new_tokens``) reach the judge's prompt and reply length,
``retrieve.max_seq_length`` reaches the dense encoder."""

from __future__ import annotations

import sqlite3

import yaml

from relforge.cli import main
from relforge.data import read_corpus
from relforge.retrieve.dense import _cache_file
from test_pipeline_e2e import tiny_config


def test_pipeline_passes_reasoning_and_encoder_length(tmp_path, tiny_llm_dir):
    cfg = tiny_config(
        tiny_llm_dir,
        retrieve={"max_seq_length": 16},
        judge={"mode": "generate", "reasoning": True, "reasoning_max_new_tokens": 13, "max_new_tokens": 3},
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--to", "judge"]) == 0

    # the dense corpus embeddings were computed (and cached) with the configured 16-token limit
    docs = list(read_corpus(out / "data" / "corpus.jsonl").values())
    emb = out / "retrieve" / "cache" / "embeddings"
    assert _cache_file(emb, "minilm", docs, 16).exists()
    assert not _cache_file(emb, "minilm", docs, None).exists()

    # judge replies were given the reasoning length (13 new tokens), not max_new_tokens (3): only a
    # reasoning template gets reasoning_max_new_tokens. A random model never stops early.
    with sqlite3.connect(out / "llm-cache.sqlite") as c:
        lengths = {n for (n,) in c.execute("SELECT completion_tokens FROM llm_calls WHERE kind = 'generate'")}
    assert 13 in lengths and 3 not in lengths
