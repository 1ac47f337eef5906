"""The flags of ``relforge judge finetune``: one per :class:`FinetuneConfig` / :class:`CVConfig` field.

Each flag names the field it sets; its default is read from the model (``model_fields[...]``), so the
defaults live only in :mod:`relforge.judge.finetune_config`. :func:`finetune_config` and
:func:`cv_config` turn the parsed flag values back into the config objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from relforge.judge.finetune_config import CVConfig, FinetuneConfig

#: how a flag value maps onto its field: as is; 0 = None; ``--no-X`` (the field is ``not`` the value)
Kind = Literal["plain", "zero_none", "negated"]


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one config field."""

    decl: str  # typer's declaration, e.g. "--epochs"
    field: str
    help: str
    kind: Kind = "plain"
    model: type[BaseModel] = FinetuneConfig

    @property
    def param(self) -> str:
        """The command's parameter name (``no_judge_check`` for the negated ``judge_check``)."""
        return f"no_{self.field}" if self.kind == "negated" else self.field

    def default(self) -> Any:
        """The model's default, as the flag spells it."""
        return self.to_cli(self.model.model_fields[self.field].default)

    def to_cli(self, value: Any) -> Any:
        if self.kind == "zero_none":
            return 0 if value is None else value
        if self.kind == "negated":
            return not value
        return value

    def from_cli(self, value: Any) -> Any:
        if self.kind == "zero_none":
            return value or None
        if self.kind == "negated":
            return not value
        return value


_FLAGS = [
    Flag("--epochs", "epochs", "Training epochs (best one by val tau_b is kept)."),
    Flag("--max-doc-tokens", "max_doc_tokens", "Document truncation (tokens)."),
    Flag("--lr", "lr", "Learning rate."),
    Flag("--lora-r", "lora_r", "LoRA rank."),
    Flag("--lora-alpha", "lora_alpha", "LoRA alpha."),
    Flag("--lora-layers", "lora_layers", "LoRA on the top N layers only (0 = all layers).", "zero_none"),
    Flag("--balance", "balance", "none, downsample, upsample or weights."),
    Flag("--max-per-class", "max_per_class", "Cap on training pairs per grade (0 = no cap).", "zero_none"),
    Flag("--loss", "loss", "choices (CE over grade labels) or lm (completion CE)."),
    Flag("--val-fraction", "val_fraction", "Share of queries held out."),
    Flag("--query-field", "query_field", "Query text field or metadata key."),
    Flag("--template", "template", "Judge template id or YAML path."),
    Flag("--batch-size", "batch_size", "Training batch size."),
    Flag("--grad-accum", "grad_accum", "Gradient accumulation steps."),
    Flag("--seed", "seed", "Split, sampling and init seed."),
    Flag("--merge", "merge", "Also write a merged full model to OUT/merged."),
    Flag("--qlora", "qlora", "4-bit base model (CUDA + bitsandbytes)."),
    Flag("--no-judge-check", "judge_check", "Skip the final `relforge judge` check.", "negated"),
    Flag(
        "--folds",
        "folds",
        "K-fold CV by query into OUT/cv/ (cv.json, cv.png, MiniLM cosine beside); 1 = single split only.",
        model=CVConfig,
    ),
    Flag(
        "--no-final-adapter",
        "final_adapter",
        "With --folds K>1: skip the final all-data adapter in OUT.",
        "negated",
        CVConfig,
    ),
]

#: the flags by command parameter name
FLAGS: dict[str, Flag] = {f.param: f for f in _FLAGS}


def option(param: str) -> Any:
    """The typer option of parameter ``param`` of ``relforge judge finetune`` (default from the model)."""
    f = FLAGS[param]
    return typer.Option(f.default(), f.decl, help=f.help)


def unflagged(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` that no flag sets."""
    flagged = {f.field for f in _FLAGS if f.model is model}
    return [name for name in model.model_fields if name not in flagged]


def _settings(model: type[BaseModel], values: dict[str, Any], **fixed: Any) -> Any:
    """``model`` from the parsed flag values; a bad value is a usage error naming the setting."""
    from relforge.errors import UsageError

    data = {f.field: f.from_cli(values[f.param]) for f in _FLAGS if f.model is model}
    try:
        return model(**(data | fixed))
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(
            f"invalid setting {'.'.join(str(x) for x in err['loc'])}={err.get('input')!r}: {err['msg']}"
        ) from None


def finetune_config(values: dict[str, Any]) -> FinetuneConfig:
    """The :class:`FinetuneConfig` the flags ask for (``values``: the command's parameters by name)."""
    return _settings(FinetuneConfig, values)


def cv_config(values: dict[str, Any]) -> CVConfig:
    """The :class:`CVConfig` the flags ask for (the folds share ``--seed``)."""
    return _settings(CVConfig, values, seed=values["seed"])
