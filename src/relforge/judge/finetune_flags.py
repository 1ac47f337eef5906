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

#: help panel of the flags added for the settings the command had no flag for
ADVANCED = "Advanced settings"

#: how a flag value maps onto its field: as is; 0 = None; ``--no-X`` (the field is ``not`` the value);
#: a comma separated list (empty = None); target modules (``all-linear`` or comma separated names)
Kind = Literal["plain", "zero_none", "negated", "csv", "modules"]


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one config field."""

    decl: str  # typer's declaration: "--epochs" or "--cache-frozen/--no-cache-frozen"
    field: str
    help: str
    kind: Kind = "plain"
    model: type[BaseModel] = FinetuneConfig
    panel: str | None = None

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
        if self.kind in ("csv", "modules") and isinstance(value, list):
            return ",".join(value)
        return value

    def from_cli(self, value: Any) -> Any:
        if self.kind == "zero_none":
            return value or None
        if self.kind == "negated":
            return not value
        if self.kind == "csv":
            items = [x.strip() for x in (value or "").split(",") if x.strip()]
            return items or None
        if self.kind == "modules" and value != "all-linear":
            return [x.strip() for x in value.split(",") if x.strip()]
        return value


def _adv(decl: str, field: str, help: str, kind: Kind = "plain", model: type[BaseModel] = FinetuneConfig):
    return Flag(decl, field, help, kind, model, ADVANCED)


_FLAGS = [
    # ---- the flags the command has always had (help texts unchanged) ----
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
    # ---- the settings that had no flag ----
    _adv("--max-seq-len", "max_seq_len", "Longest example in tokens; longer ones are skipped and counted."),
    _adv(
        "--val-queries",
        "val_queries",
        "Validation query ids, comma separated (overrides --val-fraction; with --folds K>1 only the "
        "final adapter uses them).",
        "csv",
    ),
    _adv("--max-val-pairs", "max_val_pairs", "Cap on validation pairs (0 = all).", "zero_none"),
    _adv(
        "--test-queries",
        "test_queries",
        "Query ids held out of training and of the epoch choice, comma separated, scored once with the "
        "chosen epoch (with --folds K>1 only the final adapter uses them).",
        "csv",
    ),
    _adv("--lora-dropout", "lora_dropout", "LoRA dropout."),
    _adv(
        "--target-modules",
        "target_modules",
        "PEFT target modules: all-linear or comma separated module names.",
        "modules",
    ),
    _adv(
        "--cache-frozen/--no-cache-frozen",
        "cache_frozen",
        "Compute the frozen bottom layers once per example (with --lora-layers N).",
    ),
    _adv("--weight-decay", "weight_decay", "AdamW weight decay."),
    _adv("--warmup-ratio", "warmup_ratio", "Share of the training steps with linear learning-rate warmup."),
    _adv("--max-grad-norm", "max_grad_norm", "Gradient clipping norm."),
    _adv("--eval-batch-size", "eval_batch_size", "Validation (and judge check) batch size."),
    _adv("--bf16/--no-bf16", "bf16", "bf16 autocast (default: on when a CUDA GPU supports it)."),
    _adv(
        "--gradient-checkpointing/--no-gradient-checkpointing",
        "gradient_checkpointing",
        "Gradient checkpointing (default: on with a GPU).",
    ),
    _adv("--threads", "threads", "torch CPU threads (0 = torch default).", "zero_none"),
    _adv("--adapter-dtype", "adapter_dtype", "float16 or float32: dtype of the saved LoRA weights."),
    _adv(
        "--threshold-metric",
        "threshold_metric",
        "With --folds K>1: qwk or macro_f1, what the grade cut points (fitted on training folds) maximise.",
        model=CVConfig,
    ),
    _adv(
        "--cosine-model",
        "cosine_model",
        "With --folds K>1: embedding model of the cosine baseline scored on the same folds.",
        model=CVConfig,
    ),
]

#: the flags by command parameter name
FLAGS: dict[str, Flag] = {f.param: f for f in _FLAGS}


def option(param: str) -> Any:
    """The typer option of parameter ``param`` of ``relforge judge finetune`` (default from the model)."""
    f = FLAGS[param]
    return typer.Option(f.default(), f.decl, help=f.help, rich_help_panel=f.panel)


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


def stage_flags() -> tuple[dict[str, str], dict[str, Any]]:
    """``(parameter -> dotted field, parameter -> converter)`` of the flags, for
    :func:`relforge.cli_config.stage_config` over :class:`FinetuneCommandConfig` (CV fields under ``cv.``;
    ``--seed`` sets ``seed``, which ``cv.seed`` follows)."""
    fields = {p: (f"cv.{f.field}" if f.model is CVConfig else f.field) for p, f in FLAGS.items()}
    return fields, {p: f.from_cli for p, f in FLAGS.items()}
