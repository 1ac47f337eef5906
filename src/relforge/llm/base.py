"""The one small interface every LLM stage goes through.

A chat is a list of ``{"role": ..., "content": ...}`` messages. Backends implement
:meth:`LLM.generate` (sampling / greedy decoding) and :meth:`LLM.score_choices` (prefill only:
the probability of each candidate label string as the next output, normalised over the choices).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
Chat = list[Message]


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def key(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    cached: bool = False


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    """What a backend offers. ``name`` identifies backend+model+adapter (used in cache keys and outputs)."""

    name: str

    def generate(self, chats: list[Chat], params: GenParams | None = None) -> list[Completion]: ...

    def score_choices(self, chats: list[Chat], choices: list[str]) -> list[dict[str, float]]: ...
