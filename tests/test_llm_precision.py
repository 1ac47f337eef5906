"""precision (auto|fp32|bf16|int8) of the local transformers backend: it reaches the model (dtype asserted),
enters cache keys and describe(), auto degrades to fp32 on a CPU without bf16 (simulated), int8 works with
a LoRA adapter merged, fp32 reproduces the numbers of the default load, and `relforge llm try --precision`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import relforge.precision as precision_mod
from relforge.errors import UsageError
from relforge.llm import load_llm
from relforge.llm.base import GenParams
from relforge.llm.config import LLMConfig
from relforge.llm.hf import HFBackend, _fingerprint
from relforge.precision import (
    apply_precision,
    int8_linear_names,
    model_precision,
    plan_precision,
    resolve_precision,
)

CHATS = [[{"role": "user", "content": t}] for t in ("hi", "what is asthma and how is it treated")]
GRADES = ["0", "1", "2", "3"]


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "fma"}))


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


def test_auto_resolves_by_cpu_flags(no_bf16_cpu):
    assert resolve_precision("auto", "cpu") == "fp32"
    assert plan_precision("auto").metadata() == {
        "precision": "fp32",
        "precision_requested": "auto",
        "dtype": "float32",
        "autocast": False,
    }
    assert resolve_precision("bfloat16") == "bf16" and resolve_precision("int8") == "int8"
    with pytest.raises(UsageError, match="auto, fp32, bf16, fp16, int8"):
        resolve_precision("fp8")
    with pytest.raises(UsageError, match="CPU only"):
        resolve_precision("int8", "cuda:0")
    with pytest.raises(UsageError, match="slow on CPU"):
        resolve_precision("fp16", "cpu")


def test_auto_picks_bf16_on_a_bf16_cpu(bf16_cpu):
    assert resolve_precision("auto", "cpu") == "bf16"
    assert plan_precision("auto", autocast=True).context() is not None


def test_auto_degrades_to_fp32_in_the_loaded_model(tiny_llm_dir, no_bf16_cpu):
    b = HFBackend.load(tiny_llm_dir, precision="auto", progress=False)
    assert {p.dtype for p in b.model.parameters()} == {torch.float32}
    assert b.describe()["precision"] == "fp32" and b.describe()["precision_requested"] == "auto"


@pytest.mark.parametrize(
    ("prec", "autocast", "weights", "compute"),
    [
        ("fp32", None, torch.float32, torch.float32),
        ("bf16", None, torch.bfloat16, torch.bfloat16),  # bf16 weights (the default)
        ("bf16", True, torch.float32, torch.bfloat16),  # fp32 weights under bf16 autocast
    ],
)
def test_precision_reaches_the_model(tiny_llm_dir, prec, autocast, weights, compute):
    b = HFBackend.load(tiny_llm_dir, precision=prec, autocast=autocast, progress=False)
    assert {p.dtype for p in b.model.parameters()} == {weights}
    seen = []
    hook = b.model.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype)
    )
    try:
        probs = b.score_choices(CHATS, GRADES)
    finally:
        hook.remove()
    assert seen and set(seen) == {compute}  # what the matmuls really ran in
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in probs)
    assert b.describe()["precision"] == prec and b.describe()["autocast"] == (weights != compute)


def test_int8_quantises_linears_but_not_lm_head(tiny_llm_dir):
    b = HFBackend.load(tiny_llm_dir, precision="int8", progress=False)
    kinds = {name: m._get_name() for name, m in b.model.named_modules()}
    assert kinds["model.layers.0.self_attn.q_proj"] == "DynamicQuantizedLinear"
    assert kinds["model.layers.1.mlp.down_proj"] == "DynamicQuantizedLinear"
    assert kinds["lm_head"] == "Linear"
    assert model_precision(b.model) == "int8" and b.describe()["dtype"] == "float32"
    ref = HFBackend.load(tiny_llm_dir, precision="fp32", progress=False).score_choices(CHATS, GRADES)
    got = b.score_choices(CHATS, GRADES)
    assert max(abs(g[k] - r[k]) for g, r in zip(got, ref, strict=True) for k in GRADES) < 0.05


def test_cache_keys_differ_by_precision_and_fp32_keeps_todays(tiny_llm_dir, tmp_path):
    ids = {
        p: HFBackend.load(tiny_llm_dir, precision=p, progress=False).cache_id
        for p in ("fp32", "bf16", "int8")
    }
    assert len(set(ids.values())) == 3
    # fp32 keeps the key format of relforge before `precision` (old caches stay valid), and equals the
    # default load's, whose numbers it reproduces exactly
    assert ids["fp32"] == f"hf:{os.path.abspath(tiny_llm_dir)}|{_fingerprint(tiny_llm_dir)}|float32"
    default = HFBackend.load(tiny_llm_dir, progress=False)
    assert default.cache_id == ids["fp32"]
    fp32 = HFBackend.load(tiny_llm_dir, precision="fp32", progress=False)
    assert fp32.score_choices(CHATS, GRADES) == default.score_choices(CHATS, GRADES)
    # a bf16 judgment is not an fp32 one: the cache does not serve one for the other
    cache = tmp_path / "c.sqlite"
    a = load_llm(tiny_llm_dir, cache=cache, precision="fp32", progress=False)
    a.score_choices(CHATS, GRADES)
    b = load_llm(tiny_llm_dir, cache=cache, precision="bf16", progress=False)
    b.score_choices(CHATS, GRADES)
    assert (b.stats.hits, b.stats.misses) == (0, 2)
    c = load_llm(tiny_llm_dir, cache=cache, precision="fp32", progress=False)
    c.score_choices(CHATS, GRADES)
    assert (c.stats.hits, c.stats.misses) == (2, 0)


def _lora_adapter(tiny_llm_dir: str, out: Path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-zero delta, so merging changes the outputs
    model.save_pretrained(out)
    return str(out)


def test_int8_with_a_lora_adapter(tiny_llm_dir, tmp_path):
    adapter = _lora_adapter(tiny_llm_dir, tmp_path / "lora")
    plain = HFBackend.load(tiny_llm_dir, precision="fp32", progress=False).score_choices(CHATS, GRADES)
    fp32 = HFBackend.load(tiny_llm_dir, adapter=adapter, precision="fp32", progress=False)
    int8 = HFBackend.load(tiny_llm_dir, adapter=adapter, precision="int8", progress=False)
    ref, got = fp32.score_choices(CHATS, GRADES), int8.score_choices(CHATS, GRADES)
    assert (
        max(abs(r[k] - p[k]) for r, p in zip(ref, plain, strict=True) for k in GRADES) > 1e-3
    )  # adapter acts
    assert max(abs(g[k] - r[k]) for g, r in zip(got, ref, strict=True) for k in GRADES) < 0.05
    assert "lora=" in int8.cache_id and "precision=int8" in int8.cache_id
    # an unmerged PEFT model (finetuning) quantises only its base Linears, never the LoRA ones
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), adapter)
    names = int8_linear_names(peft)
    assert names and not any("lora_" in n for n in names)
    assert any(n.endswith("q_proj.base_layer") for n in names)
    quantised, plan = apply_precision(peft, "int8")
    assert plan.resolved == "int8"
    assert dict(quantised.named_modules())[names[0]]._get_name() == "DynamicQuantizedLinear"
    lora_a = [m for n, m in quantised.named_modules() if n.endswith("lora_A.default")]
    assert lora_a and all(type(m) is torch.nn.Linear for m in lora_a)


def test_llmconfig_passes_precision_and_the_old_dtype(tiny_llm_dir):
    b = LLMConfig(llm=tiny_llm_dir, precision="bf16", no_cache=True, progress=False).load()
    assert b.describe()["precision"] == "bf16"
    old = LLMConfig(llm=tiny_llm_dir, dtype="bfloat16", no_cache=True, progress=False).load()
    assert old.describe()["precision"] == "bf16"


def test_cli_llm_try_precision(tiny_llm_dir, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        "RELFORGE_CACHE": str(tmp_path / "c.sqlite"),
    }
    cmd = [
        sys.executable,
        "-m",
        "relforge.cli",
        "llm",
        "try",
        "hello",
        "--llm",
        tiny_llm_dir,
        "--max-new-tokens",
        "2",
    ]
    r = subprocess.run([*cmd, "--precision", "int8"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "completion_tokens=2" in r.stderr
    r = subprocess.run([*cmd, "--precision", "fp8"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "precision" in r.stderr and "Traceback" not in r.stderr


def test_bf16_cpu_fast_path_scores_with_gqa_attention_and_leaves_fp32_alone(tiny_llm_dir):
    """bf16 on CPU: lm_head gets a contiguous input (no per-row weight copy), scoring calls switch to
    relforge's grouped-query matmul attention and switch back (generation keeps the model's own), and the cache key says so; fp32 untouched."""
    fp32 = HFBackend.load(tiny_llm_dir, precision="fp32", progress=False)
    bf16 = HFBackend.load(tiny_llm_dir, precision="bf16", progress=False)
    assert fp32._score_attn == "" and not fp32.model.lm_head._forward_pre_hooks
    assert bf16._score_attn == "relforge_gqa" and bf16.cache_id.endswith("|score-attn=relforge_gqa")
    own = bf16.model.config._attn_implementation
    assert own != "relforge_gqa"
    seen: list[str] = []
    hook = bf16.model.lm_head.register_forward_pre_hook(
        lambda mod, args: seen.append(f"{bf16.model.config._attn_implementation}:{args[0].is_contiguous()}")
    )
    ref = fp32.score_choices(CHATS, GRADES)
    got = bf16.score_choices(CHATS, GRADES)
    assert seen and all(s == "relforge_gqa:True" for s in seen), seen
    assert bf16.model.config._attn_implementation == own  # restored after the call
    assert max(abs(g[k] - r[k]) for g, r in zip(got, ref, strict=True) for k in GRADES) < 0.05
    seen.clear()
    bf16.generate([CHATS[0]], GenParams(max_new_tokens=2))
    assert seen and all(s.startswith(f"{own}:") for s in seen), seen
    hook.remove()


@pytest.mark.parametrize(
    ("dtype", "mask_dtype"), [("float32",) * 2, ("bfloat16",) * 2, ("bfloat16", "float32")]
)
def test_gqa_attention_equals_transformers_eager(dtype, mask_dtype):
    """relforge's grouped-query attention is eager attention without the key/value copies: same output on
    random heads (3 query heads per kv head, a left-padded row, a causal mask with a cached prefix, a
    query position whose keys are all masked; an fp32 mask over bf16 scores is bf16 autocast's case)."""
    import torch
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from relforge.llm.cpu_attention import gqa_attention

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    b, kvh, g, q, k, d = 2, 2, 3, 5, 9, 16
    query = torch.randn(b, q, kvh * g, d).transpose(1, 2).to(dt)  # non-contiguous, as the model's
    key, value = torch.randn(b, kvh, k, d).to(dt), torch.randn(b, kvh, k, d).to(dt)
    allowed = torch.ones(b, 1, q, k, dtype=torch.bool).tril(k - q)  # causal after a 4-token prefix
    allowed[1, :, :, 4:6] = False  # row 1 is left-padded after the prefix
    allowed[1, :, 0, :] = False  # a padding position that may attend to nothing
    mdt = getattr(torch, mask_dtype)
    mask = torch.zeros(b, 1, q, k, dtype=mdt).masked_fill(~allowed, torch.finfo(mdt).min)

    class Module(torch.nn.Module):
        num_key_value_groups = g

    want, _ = eager_attention_forward(Module().eval(), query, key, value, mask, scaling=d**-0.5)
    got, weights = gqa_attention(Module().eval(), query, key, value, mask, scaling=d**-0.5)
    assert weights is None and got.shape == want.shape == (b, q, kvh * g, d) and got.dtype == dt
    assert not got.isnan().any()
    tol = 1e-5 if dtype == "float32" else 2e-2
    assert torch.allclose(got.float(), want.float(), atol=tol, rtol=tol), (
        (got.float() - want.float()).abs().max()
    )
    # a wrong head grouping (kv head j serving query heads j, j+kvh, ...) would not match
    shuffled = query.reshape(b, g, kvh, q, d).transpose(1, 2).reshape(b, kvh * g, q, d)
    wrong, _ = gqa_attention(Module().eval(), shuffled, key, value, mask, scaling=d**-0.5)
    assert not torch.allclose(wrong.float(), want.float(), atol=tol, rtol=tol)
