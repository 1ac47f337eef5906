"""The model side: loading the base, attaching LoRA (top layers only), the decoder-layer window, saving."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from relforge.errors import UsageError
from relforge.judge.finetune_config import FinetuneConfig


def load_base(spec: str, *, qlora: bool = False, device: str = "cpu") -> tuple[Any, Any, str]:
    """Load a base causal LM + tokenizer for fine-tuning from an LLM spec.

    Args:
        spec: ``smollm2``, ``hf:smollm2``, ``hf:<dir|file.gguf|hub id>`` or a plain path / hub id.
        qlora: load the weights in 4 bit (bitsandbytes, CUDA only).
        device: ``cpu`` or ``cuda``.

    Returns:
        (model, tokenizer, resolved path or id).
    """
    from transformers import AutoTokenizer

    from relforge.models import resolve_model, split_gguf

    if spec.startswith(("openai:", "llamacpp:")):
        raise UsageError(
            f"--llm {spec!r}: fine-tuning needs local weights; use smollm2 or hf:<dir|file.gguf|hub id>"
        )
    name = spec[3:] if spec.startswith("hf:") else spec
    resolved = resolve_model(name)
    path, gguf_file = split_gguf(resolved)
    if gguf_file and not qlora:  # the LLM layer's loader: converted once to a cached plain HF folder
        from relforge.llm.hf import load_gguf

        model, tok, _ = load_gguf(resolved)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model.float().to(device), tok, resolved
    kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = _load_weights(spec, path, kw, qlora)
    if not qlora:
        model.to(device)
    return model, tok, resolved


def _load_weights(spec: str, path: str, kw: dict[str, Any], qlora: bool) -> Any:
    """``AutoModelForCausalLM`` in fp32 (or 4 bit with ``qlora``); a dequantised GGUF becomes a plain model."""
    import torch
    from transformers import AutoModelForCausalLM

    mkw: dict[str, Any] = dict(kw)
    if qlora:
        from transformers import BitsAndBytesConfig

        mkw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        mkw["device_map"] = {"": 0}
    else:
        mkw["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **mkw)
    except OSError as e:
        raise UsageError(f"cannot load base model {spec!r} from {path}: {e}") from None
    if "gguf_file" in kw:  # dequantised GGUF: a plain fp32 model from here on (saving/merging needs this)
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def decoder(model: Any) -> Any:
    """The causal LM's inner decoder (``model.model`` for Llama-like models) holding ``layers``."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "norm"):
        return None
    return inner


@contextlib.contextmanager
def layer_window(lm: Any, start: int, stop: int | None, final_norm: bool):
    """Temporarily keep only decoder layers ``[start:stop]`` (and optionally drop the final norm)."""
    import torch

    dec = decoder(lm)
    layers, norm = dec.layers, dec.norm
    dec.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        dec.norm = torch.nn.Identity()
    try:
        yield
    finally:
        dec.layers, dec.norm = layers, norm


def device_settings(cfg: FinetuneConfig) -> tuple[str, bool, bool]:
    """(device, bf16, gradient checkpointing) for these settings on this machine."""
    import torch

    use_cuda = torch.cuda.is_available()
    device = "cuda" if use_cuda else "cpu"
    if cfg.qlora:
        import importlib.util

        if not use_cuda or importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError(
                "qlora needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); unset --qlora"
            )
    bf16 = cfg.bf16 if cfg.bf16 is not None else (use_cuda and torch.cuda.is_bf16_supported())
    grad_ckpt = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else use_cuda
    return device, bf16, grad_ckpt


def lora_targets(cfg: FinetuneConfig, dec: Any, start: int) -> tuple[Any, dict[str, Any]]:
    """PEFT target modules and extra LoRA kwargs (``layers_to_transform`` when only the top layers get LoRA)."""
    import torch

    lora_kw: dict[str, Any] = {}
    targets = cfg.target_modules
    if start > 0:
        lora_kw["layers_to_transform"] = list(range(start, len(dec.layers)))
        if targets == "all-linear":  # PEFT wants names with layers_to_transform: every linear of a layer
            targets = sorted(
                {
                    n.split(".")[-1]
                    for n, mod in dec.layers[start].named_modules()
                    if isinstance(mod, torch.nn.Linear) or type(mod).__name__.startswith("Linear")
                }
            )
    return targets, lora_kw


def load_lora_model(
    base: str, cfg: FinetuneConfig, device: str, grad_ckpt: bool
) -> tuple[Any, Any, str, int, float]:
    """Load the base and attach LoRA: (peft model, tokenizer, resolved base, first LoRA layer, load seconds)."""
    from peft import LoraConfig, get_peft_model

    t0 = time.time()
    model, tok, resolved = load_base(base, qlora=cfg.qlora, device=device)
    load_s = time.time() - t0
    tok.padding_side = "left"
    dec = decoder(model)
    n_layers = len(dec.layers) if dec is not None else None
    start = 0
    if cfg.lora_layers is not None and n_layers is not None and cfg.lora_layers < n_layers:
        start = n_layers - cfg.lora_layers
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=grad_ckpt)
    targets, lora_kw = lora_targets(cfg, dec, start)
    peft_cfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **lora_kw,
    )
    model = get_peft_model(model, peft_cfg)
    lm = model.base_model.model  # the causal LM with LoRA layers injected in place
    if grad_ckpt and not cfg.qlora:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    return model, tok, resolved, start, load_s


def lora_state(model: Any) -> dict[str, Any]:
    """A CPU copy of the LoRA weights."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items() if "lora_" in k}


def save_adapter(model: Any, out: Path, base: str, adapter_dtype: str) -> None:
    """The PEFT adapter folder files, the base named by its spec, weights cast to ``adapter_dtype``."""
    import torch

    model.save_pretrained(out)
    record_base_spec(out / "adapter_config.json", base)
    if adapter_dtype == "float16":
        cast_safetensors(out / "adapter_model.safetensors", torch.float16)


def record_base_spec(adapter_config: Path, spec: str) -> None:
    """Name the base model by its spec in PEFT's ``adapter_config.json``, not by the folder it was loaded from.

    For a GGUF base (SmolLM2) that folder is this machine's conversion cache, which no other machine has.
    """
    cfg = json.loads(adapter_config.read_text())
    cfg["base_model_name_or_path"] = spec[3:] if spec.startswith("hf:") else spec
    adapter_config.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def cast_safetensors(path: Path, dtype: Any) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.to(dtype) for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def write_merged(model: Any, tok: Any, out: Path) -> Path:
    """``OUT/merged``: the base with the LoRA weights merged in, and its tokenizer."""
    import shutil

    merged_dir = out / "merged"
    if merged_dir.exists():
        shutil.rmtree(merged_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tok.save_pretrained(merged_dir)
    return merged_dir
