"""Numeric precision of local torch models: one setting, ``auto | fp32 | bf16 | fp16 | int8``, for every stage.

- ``fp32``: plain float32 weights and arithmetic (reproduces relforge's numbers before this setting).
- ``bf16``: bfloat16 arithmetic, as bf16 weights (default) or as ``torch.autocast`` over fp32 weights
  (``autocast=True``, training). On CPU it pays off only with AVX-512 BF16 or AMX; elsewhere it is emulated
  and slower, which is why ``auto`` does not pick it there.
- ``fp16``: float16 weights (GPU only; CPU fp16 matmuls are slow).
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` of the ``nn.Linear`` layers (int8 weights, activations
  quantised on the fly), CPU only. LoRA layers are never quantised (merge an adapter first, or they stay
  float); ``lm_head`` is kept in float by default (it runs on one position per step, so it costs little and
  keeps the logits close to fp32).
- ``auto``: bf16 on a GPU that supports it, else fp16 on GPU; bf16 on a CPU with AVX-512 BF16 / AMX; else fp32.

Stages call :func:`apply_precision` once on a loaded model and run inference inside
:meth:`PrecisionPlan.context` (a no-op except for ``autocast`` plans); :meth:`PrecisionPlan.metadata` goes
into artifacts and cache keys. Training uses :func:`plan_precision` with ``autocast=True`` (fp32 master
weights, bf16 matmuls).

>>> plan = plan_precision("auto", "cpu")          # bf16 on an AVX-512 BF16 CPU, fp32 otherwise
>>> model, plan = apply_precision(model, "auto")
>>> with plan.context():
...     logits = model(**batch).logits
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from relforge.errors import UsageError

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
#: the precision a config may ask for on a CPU-first stage (no fp16): pipeline YAML, preset, retrieve, rerank
PrecisionSetting = Literal["auto", "fp32", "bf16", "int8"]

#: CPU flags (``/proc/cpuinfo``) that make bf16 matmuls fast
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: torch dtype names accepted as aliases (the older ``dtype`` setting)
DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty when they cannot be read, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & BF16_CPU_FLAGS)


def normalize_precision(precision: str | None) -> str:
    """``"bfloat16"`` -> ``"bf16"`` etc.; UsageError naming the allowed values for anything unknown."""
    p = (precision or "auto").strip().lower()
    p = DTYPE_ALIASES.get(p, p)
    if p not in PRECISIONS:
        raise UsageError(
            f"precision {precision!r} is not one of {', '.join(PRECISIONS)} (setting: precision)"
        )
    return p


def _device_kind(device: Any) -> str:
    return str(device or "cpu").split(":")[0]


def resolve_precision(precision: str | None = "auto", device: Any = "cpu") -> str:
    """The concrete precision (``fp32 | bf16 | fp16 | int8``) for ``device``; ``auto`` picks what is fast there.

    Raises:
        UsageError: int8 on a GPU, fp16 on CPU (neither is fast there: use bf16 or fp32).
    """
    p = normalize_precision(precision)
    kind = _device_kind(device)
    if p == "auto":
        if kind == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if kind == "mps":
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if p == "int8" and kind != "cpu":
        raise UsageError(f"precision int8 (dynamic quantisation) runs on CPU only, not on {device}; use bf16")
    if p == "fp16" and kind == "cpu":
        raise UsageError("precision fp16 is slow on CPU; use bf16 (or auto) there")
    return p


@dataclass(frozen=True)
class PrecisionPlan:
    """A resolved precision: what the weights are and whether inference runs under autocast.

    Attributes:
        requested: the setting as given (``auto``...).
        resolved: ``fp32 | bf16 | fp16 | int8``.
        device: ``cpu``, ``cuda``...
        autocast: run inside ``torch.autocast(device, dtype)`` with fp32 weights (training) instead of
            casting the weights.
    """

    requested: str
    resolved: str
    device: str = "cpu"
    autocast: bool = False

    @property
    def dtype_name(self) -> str:
        """Torch dtype name of the weights (int8 models keep float32 for their non-quantised parts)."""
        return "float32" if self.autocast else _DTYPES[self.resolved]

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype_name)

    def context(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for autocast plans, else a no-op."""
        if not self.autocast or self.resolved not in ("bf16", "fp16"):
            return contextlib.nullcontext()
        import torch

        return torch.autocast(_device_kind(self.device), dtype=getattr(torch, _DTYPES[self.resolved]))

    def metadata(self) -> dict[str, Any]:
        """What artifacts record: ``{"precision", "precision_requested", "dtype", "autocast"}``."""
        return {
            "precision": self.resolved,
            "precision_requested": self.requested,
            "dtype": self.dtype_name,
            "autocast": self.autocast,
        }

    def key(self) -> str:
        """Short identity for cache keys: ``bf16``, ``bf16-autocast``, ``int8``..."""
        return self.resolved + ("-autocast" if self.autocast else "")


def plan_precision(
    precision: str | None = "auto", device: Any = "cpu", *, autocast: bool = False
) -> PrecisionPlan:
    """Resolve ``precision`` for ``device`` into a :class:`PrecisionPlan` (``autocast`` only for bf16/fp16)."""
    requested = normalize_precision(precision)
    resolved = resolve_precision(requested, device)
    return PrecisionPlan(requested, resolved, _device_kind(device), autocast and resolved in ("bf16", "fp16"))


def _is_lora_module(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def int8_linear_names(model: Any, skip: Iterable[str] = ("lm_head",)) -> list[str]:
    """Names of the ``nn.Linear`` modules :func:`quantize_int8` converts: not LoRA (``lora_A``/``lora_B``...),
    not named in ``skip`` (a name or its last component)."""
    import torch.nn as nn

    skip = set(skip)
    return [
        name
        for name, mod in model.named_modules()
        if type(mod) is nn.Linear
        and not _is_lora_module(name)
        and name not in skip
        and name.rsplit(".", 1)[-1] not in skip
    ]


def quantize_int8(model: Any, *, skip: Iterable[str] = ("lm_head",)) -> Any:
    """Dynamic int8 quantisation (``torch.ao.quantization.quantize_dynamic``) of the model's plain
    ``nn.Linear`` layers, in place; LoRA layers and ``skip`` stay float. Returns the model."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = int8_linear_names(model, skip)
    if not names:
        raise UsageError("precision int8: the model has no nn.Linear layers to quantise; use bf16 or fp32")
    if next(model.parameters()).dtype != torch.float32:
        model.float()
    with warnings.catch_warnings():  # torch >= 2.10 marks torch.ao quantisation as deprecated
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            model, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8, inplace=True
        )


def apply_precision(
    model: Any,
    precision: str | PrecisionPlan | None = "auto",
    *,
    device: Any = "cpu",
    autocast: bool = False,
    skip: Iterable[str] = ("lm_head",),
) -> tuple[Any, PrecisionPlan]:
    """Put a loaded torch model into a precision: cast (fp32/bf16/fp16) or quantise (int8), on ``device``.

    Args:
        model: an ``nn.Module`` (a transformers model, a PEFT model, a sentence-transformers model...).
        precision: the setting, or an already resolved :class:`PrecisionPlan`.
        device: where the model runs.
        autocast: keep fp32 weights and run bf16/fp16 matmuls under :meth:`PrecisionPlan.context` (training).
        skip: Linear names int8 leaves in float.

    Returns:
        ``(model, plan)``: the (possibly new) model and the plan whose ``context()`` inference runs in.
    """
    plan = (
        precision
        if isinstance(precision, PrecisionPlan)
        else plan_precision(precision, device, autocast=autocast)
    )
    model = model.to(str(device))
    if plan.resolved == "int8":
        model = quantize_int8(model, skip=skip)
    else:
        model = model.to(plan.torch_dtype)
    return model, plan


@contextlib.contextmanager
def inference_context(plan: PrecisionPlan) -> Iterator[None]:
    """``torch.inference_mode`` plus the plan's autocast (for stages that only run forward passes)."""
    import torch

    with torch.inference_mode(), plan.context():
        yield


def model_precision(model: Any) -> str:
    """What a model's weights are, observed: ``int8`` when any layer is dynamically quantised, else the
    dtype of its first floating parameter as a precision name (``fp32 | bf16 | fp16``)."""
    import torch

    for mod in model.modules():
        if "quantized" in type(mod).__module__:
            return "int8"
    for p in model.parameters():
        if p.is_floating_point():
            return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
                p.dtype, str(p.dtype)
            )
    return "fp32"
