"""Everything about a pipeline config that can be checked before a run, without loading a model.

:func:`preflight` runs in ``relforge run --dry-run`` and before a real run writes anything: input
paths that do not exist (naming the config key that holds them), a missing adapter folder, LLM
options the backend does not take, unknown judge templates / generate prompts. All problems are
reported at once, one per line.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from relforge.config import PipelineConfig
from relforge.errors import MissingInputError, RelforgeError, UsageError


def _path_problem(value: str, key: str) -> str | None:
    if value.startswith("sample:"):
        from relforge.data.samples import sample_path

        try:
            sample_path(value.split(":", 1)[1])
        except RelforgeError as e:
            return f"{key}: {e}"
        return None
    if not Path(value).expanduser().exists():
        return f"{key}: {value!r} does not exist"
    return None


def _backend_params(scheme: str) -> set[str] | None:
    """Keyword options the backend of ``scheme`` accepts (None: it takes anything)."""
    if scheme == "hf":
        from relforge.llm.hf import HFBackend

        fns = [HFBackend.load, HFBackend.__init__]
    elif scheme == "openai":
        from relforge.llm.openai_compat import OpenAIBackend

        fns = [OpenAIBackend.__init__]
    elif scheme == "llamacpp":
        from relforge.llm.llamacpp import LlamaCppBackend

        fns = [LlamaCppBackend.__init__]
    else:
        return None
    names: set[str] = set()
    for fn in fns:
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD:
                names.add(p.name)
    names -= {"self", "cls", "model", "tokenizer", "base_url", "adapter", "batch_size"}
    return names


def _llm_problems(cfg: PipelineConfig) -> list[str]:
    from relforge.llm import parse_spec

    out: list[str] = []
    used = []
    if cfg.generate.enabled and not cfg.data.train_split:
        used.append(("generate.llm" if cfg.generate.llm else "llm.spec", cfg.llm_for("generate")))
    if cfg.judge.enabled and cfg.judge.preset is None:
        used.append(("judge.llm" if cfg.judge.llm else "llm.spec", cfg.llm_for("judge")))
    for key, spec in used:
        try:
            scheme, _ = parse_spec(spec)
        except UsageError as e:
            out.append(f"{key}: {e}")
            continue
        allowed = _backend_params(scheme)
        unknown = sorted(set(cfg.llm.options) - allowed) if allowed is not None else []
        if unknown:
            out.append(
                f"llm.options: {', '.join(unknown)} not supported by the {scheme}: backend ({key} {spec!r}); "
                f"allowed: {', '.join(sorted(allowed or ()))}"
            )
    return sorted(set(out), key=out.index)


def _template_problems(cfg: PipelineConfig) -> list[str]:
    out: list[str] = []
    if cfg.judge.enabled and cfg.judge.preset is None:
        from relforge.judge.prompt import JudgeTemplate

        try:
            JudgeTemplate.load(cfg.judge.template)
        except (RelforgeError, OSError, ValueError) as e:
            out.append(f"judge.template: {e}")
    if cfg.generate.enabled and not cfg.data.train_split:
        from relforge.generate.queries import load_prompt

        try:
            load_prompt(cfg.generate)
        except (RelforgeError, OSError, ValueError) as e:
            out.append(f"generate.prompt: {e}")
    return out


def problems(cfg: PipelineConfig) -> list[str]:
    """Every problem :func:`preflight` would raise, as ``key: message`` lines."""
    out: list[str] = []
    checks: list[tuple[bool, str, Any]] = [
        (True, "data.source", cfg.data.source),
        (
            cfg.judge.enabled and cfg.judge.agreement.enabled,
            "judge.agreement.human",
            cfg.judge.agreement.human,
        ),
        (cfg.judge_finetune.enabled, "judge_finetune.data", cfg.judge_finetune.data),
    ]
    adapter = cfg.judge.adapter
    if cfg.judge.enabled and adapter not in (None, "none", "auto", "shipped", "finetune"):
        checks.append((True, "judge.adapter", adapter))
    for on, key, value in checks:
        if on and isinstance(value, str):
            p = _path_problem(value, key)
            if p:
                out.append(p)
    return out + _preset_problems(cfg) + _llm_problems(cfg) + _template_problems(cfg)


def _preset_problems(cfg: PipelineConfig) -> list[str]:
    """``judge.preset``: the preset loads; nothing else would grade the pairs (a judge fine-tuned here)."""
    if not cfg.judge.enabled or cfg.judge.preset is None:
        return []
    from relforge.judge.preset import JudgePreset

    out: list[str] = []
    try:
        JudgePreset.load(cfg.judge.preset)
    except RelforgeError as e:
        out.append(f"judge.preset: {e}")
    if cfg.judge_finetune.enabled:
        out.append(
            "judge_finetune.enabled: the adapter it trains would not be used with judge.preset "
            f"{cfg.judge.preset!r}; disable judge_finetune or set judge.preset to null"
        )
    return out


def preflight(cfg: PipelineConfig, source: str = "config") -> None:
    """Raise one :class:`MissingInputError` / :class:`UsageError` listing every problem found."""
    found = problems(cfg)
    if not found:
        return
    text = "\n".join(f"{source}: {p}" for p in found)
    if any("does not exist" in p for p in found):
        raise MissingInputError(text)
    raise UsageError(text)
