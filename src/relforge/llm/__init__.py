"""relforge.llm: one small interface to local and remote LLMs, cached and resumable.

>>> from relforge.llm import load_llm, GenParams
>>> llm = load_llm("smollm2")                      # packaged SmolLM2 GGUF via transformers
>>> llm.generate([[{"role": "user", "content": "Hi"}]], GenParams(max_new_tokens=16))
>>> llm.score_choices([[{"role": "user", "content": "Is Paris in France? Answer yes or no."}]], ["yes", "no"])
>>> llm.stats                                      # hits, misses, prompt/completion tokens
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from relforge.errors import RelforgeError, UsageError
from relforge.llm.base import LLM, CacheStats, Chat, Completion, GenParams, Message
from relforge.llm.cache import CachedLLM, LLMCache, default_cache_path
from relforge.llm.secrets import check_no_secrets, redact_spec, redact_text
from relforge.models import NAMED_MODELS

__all__ = [
    "LLM",
    "CacheStats",
    "CachedLLM",
    "Chat",
    "Completion",
    "DEFAULT",
    "GenParams",
    "LLMCache",
    "Message",
    "SCHEMES",
    "check_no_secrets",
    "default_cache_path",
    "load_llm",
    "parse_spec",
    "redact_spec",
    "redact_text",
]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``cache=DEFAULT`` means ``$RELFORGE_CACHE`` or ``~/.cache/relforge/llm-cache.sqlite``
DEFAULT: Any = _Default()


def _load_hf(rest: str, adapter: str | None, batch_size: int, kw: dict):
    from relforge.llm.hf import HFBackend

    if not rest:
        raise UsageError("hf: spec needs a model: hf:<hub id | local dir | dir/file.gguf | smollm2>")
    return HFBackend.load(rest, adapter=adapter, batch_size=batch_size, **kw)


def _load_openai(rest: str, adapter: str | None, batch_size: int, kw: dict):
    from relforge.llm.openai_compat import OpenAIBackend

    base_url, sep, model = rest.rpartition("#")
    if not sep or not base_url or not model:
        raise UsageError(
            f"openai spec {redact_spec('openai:' + rest)!r} must look like openai:<base_url>#<model>, "
            f"e.g. openai:http://127.0.0.1:8000/v1#qwen2.5-1.5b"
        )
    if adapter:
        raise UsageError("adapter= is not supported for openai: backends; load the adapter in the server")
    return OpenAIBackend(base_url, model, batch_size=batch_size, **kw)


def _load_llamacpp(rest: str, adapter: str | None, batch_size: int, kw: dict):
    from relforge.llm.llamacpp import LlamaCppBackend

    if adapter:
        raise UsageError("adapter= is not supported for llamacpp: backends; merge it and convert to GGUF")
    return LlamaCppBackend(rest, batch_size=batch_size, **kw)


#: spec scheme -> loader(rest, adapter, batch_size, kwargs)
SCHEMES: dict[str, Callable[..., Any]] = {"hf": _load_hf, "openai": _load_openai, "llamacpp": _load_llamacpp}

_EXAMPLES = {
    "hf": "hf:smollm2, hf:./my-model, hf:models/x.gguf",
    "openai": "openai:http://127.0.0.1:8000/v1#model-name",
    "llamacpp": "llamacpp:models/x.gguf",
}


def _valid_schemes() -> str:
    return "; ".join(f"{s}: ({_EXAMPLES.get(s, s + ':...')})" for s in SCHEMES)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split an LLM spec into ``(scheme, rest)``; bare named models and existing paths mean ``hf``."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"empty LLM spec; valid schemes: {_valid_schemes()}")
    spec = spec.strip()
    scheme, sep, rest = spec.partition(":")
    if sep and scheme.lower() in SCHEMES:
        return scheme.lower(), rest
    if spec.lower() in NAMED_MODELS or os.path.exists(spec):
        return "hf", spec
    raise UsageError(
        f"unknown LLM spec {redact_spec(spec)!r} (setting: --llm / llm). Valid schemes: {_valid_schemes()}; "
        f"bare names allowed: {', '.join(NAMED_MODELS)}."
    )


def load_llm(
    spec: str,
    *,
    adapter: str | None = None,
    cache: Any = DEFAULT,
    batch_size: int = 8,
    **kw: Any,
) -> CachedLLM:
    """Load an LLM from a spec string, wrapped in the persistent call cache.

    Args:
        spec: ``hf:<hub id | local dir | dir/file.gguf>``, ``smollm2`` / ``hf:smollm2``,
            ``openai:<base_url>#<model>`` or ``llamacpp:<file.gguf>``.
        adapter: PEFT LoRA adapter folder (hf only).
        cache: ``DEFAULT`` (``$RELFORGE_CACHE`` or ``~/.cache/relforge/llm-cache.sqlite``), a path, an
            :class:`LLMCache`, or None/False for no cache (``--no-cache``).
        batch_size: chats per forward pass (hf).
        **kw: backend options: hf (``precision``, ``chat_template``, ``prefix_sharing``, ``dtype``,
            ``device``, ``progress``), openai (``concurrency``, ``timeout``, ``max_retries``, ``backoff``,
            ``top_logprobs``, ``score_method``, ``api_key_env``, ``progress``), llamacpp (``n_ctx``,
            ``n_threads``). Secret-looking options (``api_key``, ``token``...) are refused: keys come from
            the environment (:func:`relforge.llm.secrets.check_no_secrets`).

    Returns:
        A :class:`CachedLLM` (``.generate``, ``.score_choices``, ``.stats``, ``.llm`` = the backend).
    """
    scheme, rest = parse_spec(spec)
    check_no_secrets(kw, "LLM options")
    try:
        backend = SCHEMES[scheme](rest, adapter, batch_size, kw)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise UsageError(f"option not supported by the {scheme}: backend: {e}") from e
    except RelforgeError as e:  # no backend error may echo credentials of the spec
        e.args = (redact_text(e.args[0]),) + e.args[1:] if e.args else e.args
        raise
    if cache is None or cache is False:
        store = None
    elif isinstance(cache, LLMCache):
        store = cache
    else:
        store = LLMCache(default_cache_path() if cache is DEFAULT else cache)
    return CachedLLM(backend, store)
