"""Optional llama.cpp backend (``llamacpp:<file.gguf>``) through ``llama-cpp-python``.

Install with ``pip install 'relforge[llamacpp]'`` (it compiles llama.cpp: 6-14 min on 2 cores).
Generation uses the GGUF's own chat template (``create_chat_completion``); ``score_choices`` reads the
``top_logprobs`` of the first answer token, like the OpenAI-compatible backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from relforge.errors import ModelNotFoundError
from relforge.llm._util import check_chat, check_choices, probs_from_top_logprobs
from relforge.llm.base import CacheStats, Chat, Completion, GenParams
from relforge.llm.progress import progress_bar
from relforge.models import NAMED_MODELS, resolve_model

OnResult = Callable[[int, Any, int, int], None]
INSTALL_HINT = "pip install 'relforge[llamacpp]'"


def import_llama_cpp():
    """Import ``llama_cpp`` or raise ImportError naming the extra to install."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(
            f"the llamacpp: backend needs llama-cpp-python, which is not installed: {INSTALL_HINT} "
            f"(it compiles llama.cpp, 6-14 min on 2 cores). The hf: backend reads GGUF files without it."
        ) from e
    return llama_cpp


class LlamaCppBackend:
    """A GGUF model run by llama.cpp.

    Args:
        model: ``.gguf`` path or a named model (``smollm2``).
        n_ctx: context window.
        n_threads: CPU threads (default: all cores).
        top_logprobs: alternatives read by ``score_choices``.
        progress: rich progress bar for long calls.
        batch_size: unused (llama.cpp runs one chat at a time here).
    """

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        top_logprobs: int = 20,
        progress: bool = True,
        batch_size: int = 8,
    ):
        llama_cpp = import_llama_cpp()
        path = resolve_model(model)
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False
        )
        named = model.lower() in NAMED_MODELS
        self.name = f"llamacpp:{model.lower() if named else os.path.abspath(path)}"
        st = os.stat(path)
        self.cache_id = f"{self.name}|{st.st_size}-{st.st_mtime_ns}|llama_cpp={llama_cpp.__version__}"
        self.top_logprobs = top_logprobs
        self.progress = progress
        self.batch_size = batch_size
        self.stats = CacheStats()

    def generate(
        self, chats: list[Chat], params: GenParams | None = None, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """One completion per chat, sequentially."""
        params = params or GenParams()
        out: list[Completion] = []
        with progress_bar(len(chats), "generate", enabled=self.progress) as advance:
            for i, chat in enumerate(chats):
                check_chat(chat)
                r = self.llm.create_chat_completion(
                    messages=chat,
                    max_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop=list(params.stop) or None,
                    seed=params.seed,
                )
                ch, usage = r["choices"][0], r.get("usage") or {}
                reason = "length" if ch.get("finish_reason") == "length" else "stop"
                comp = Completion(
                    ch["message"].get("content") or "",
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                    reason,
                )
                self.stats.misses += 1
                self.stats.prompt_tokens += comp.prompt_tokens
                self.stats.completion_tokens += comp.completion_tokens
                if on_result:
                    on_result(i, comp, comp.prompt_tokens, comp.completion_tokens)
                out.append(comp)
                advance()
        return out

    def score_choices(
        self, chats: list[Chat], choices: list[str], *, on_result: OnResult | None = None
    ) -> list[dict[str, float]]:
        """Choice probabilities from the first answer token's ``top_logprobs`` (``{}`` if none match)."""
        choices = check_choices(choices)
        out: list[dict[str, float]] = []
        with progress_bar(len(chats), "score", enabled=self.progress) as advance:
            for i, chat in enumerate(chats):
                check_chat(chat)
                r = self.llm.create_chat_completion(
                    messages=chat,
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=self.top_logprobs,
                )
                first = r["choices"][0]["logprobs"]["content"][0]
                top = [(t["token"], t["logprob"]) for t in first["top_logprobs"]]
                probs = probs_from_top_logprobs(top, choices)
                pt = int((r.get("usage") or {}).get("prompt_tokens", 0))
                self.stats.misses += 1
                self.stats.prompt_tokens += pt
                if on_result:
                    on_result(i, probs, pt, 0)
                out.append(probs)
                advance()
        return out
