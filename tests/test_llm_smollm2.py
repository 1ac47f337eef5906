"""The one test on the real packaged SmolLM2-135M-Instruct GGUF (converted once to a cached HF folder under
$RELFORGE_HOME/models, so only the first run pays the ~15-30 s dequantisation)."""

from __future__ import annotations

import math

from relforge.llm import GenParams, load_llm
from relforge.llm.hf import converted_gguf_dir


def test_smollm2_generates_and_prefers_yes(smollm2_gguf):
    llm = load_llm("smollm2", cache=None, progress=False)
    assert llm.name == "hf:smollm2"
    assert (converted_gguf_dir(smollm2_gguf) / "relforge-converted.json").is_file()
    out = llm.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]], GenParams(max_new_tokens=8)
    )[0]
    assert out.text.strip() and 0 < out.completion_tokens <= 8 and out.finish_reason in ("stop", "length")
    assert out.prompt_tokens > 10
    probs = llm.score_choices(
        [[{"role": "user", "content": "Is Paris in France? Answer yes or no."}]], ["yes", "no"]
    )[0]
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert probs["yes"] > probs["no"]


def test_unconverted_gguf_is_a_plain_fp32_model(smollm2_gguf):
    """A GGUF loaded without the converted folder (first run, or convert=False) must accept
    `.float()` and dtype moves: fine-tuning calls them on a fresh machine."""
    import torch

    from relforge.llm.hf import load_gguf

    model, _, out = load_gguf(smollm2_gguf, convert=False)
    assert out is None
    assert model.float().dtype == torch.float32
    assert not model.is_quantized
