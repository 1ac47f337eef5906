"""A persistent SQLite cache for LLM calls and the :class:`CachedLLM` wrapper around any backend.

Every finished call is committed on its own (WAL journal), so a job killed with SIGKILL or Ctrl-C
loses only the calls that were still running; rerunning the same job recomputes nothing that finished.

The key of a call is the SHA-256 of a canonical JSON holding the backend identity (backend, model,
adapter and their fingerprints, see ``cache_id``), the call kind (``generate`` / ``score``), the exact
chat (list of messages) and the generation parameters or the list of choices. API keys are never part
of a backend identity, hence never part of a key.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from relforge.errors import RelforgeError
from relforge.llm.base import CacheStats, Chat, Completion, GenParams

CACHE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_calls (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    result TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
)
"""


def relforge_home() -> Path:
    """``$RELFORGE_HOME`` or ``~/.cache/relforge``: where converted models and the default cache live."""
    env = os.environ.get("RELFORGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "relforge"


def default_cache_path() -> Path:
    """``$RELFORGE_CACHE`` (a file, or a folder that gets ``llm-cache.sqlite``) or
    ``<relforge_home()>/llm-cache.sqlite``."""
    env = os.environ.get("RELFORGE_CACHE")
    if env:
        p = Path(env).expanduser()
        return p / "llm-cache.sqlite" if p.is_dir() else p
    return relforge_home() / "llm-cache.sqlite"


def call_key(backend_id: str, kind: str, chat: Chat, payload: Any) -> str:
    """The cache key of one call: SHA-256 of the canonical JSON of everything that decides the output.

    Args:
        backend_id: backend + model + adapter identity (``cache_id`` of a backend).
        kind: ``"generate"`` or ``"score"``.
        chat: the exact list of messages.
        payload: generation parameters (dict) or the list of choices.

    Returns:
        A 64-character hex digest.
    """
    blob = json.dumps(
        {"v": CACHE_VERSION, "backend": backend_id, "kind": kind, "chat": chat, "payload": payload},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


#: fault injection for the crash tests: ``KIND:N`` SIGKILLs this process right after its N-th stored call
#: of that kind (a real kill at a reproducible point; a timed kill races a fast stage on a loaded box)
FAULT_ENV = "RELFORGE_FAULT_KILL_AFTER_CALLS"


def _fault_from_env() -> list | None:
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    kind, _, n = spec.rpartition(":")
    if not kind or not n.isdigit() or int(n) < 1:
        raise RelforgeError(f"${FAULT_ENV}={spec!r}: expected KIND:N with N >= 1, e.g. generate:3")
    return [kind, int(n)]


class LLMCache:
    """SQLite (WAL) store of finished LLM calls. Safe to share between threads and processes.

    Args:
        path: the database file; parent folders are created.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL: durable across process crashes
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as e:
            raise RelforgeError(
                f"cannot open the LLM cache {self.path}: {e}. Delete the file, point RELFORGE_CACHE "
                f"elsewhere, or pass --no-cache."
            ) from e
        self._lock = threading.Lock()
        self._fault = _fault_from_env()

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, int, int]]:
        """Return ``{key: (result_json, prompt_tokens, completion_tokens)}`` for the keys present."""
        found: dict[str, tuple[str, int, int]] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = "SELECT key, result, prompt_tokens, completion_tokens FROM llm_calls WHERE key IN (%s)"
                for k, r, pt, ct in self._conn.execute(q % ",".join("?" * len(chunk)), chunk):
                    found[k] = (r, pt, ct)
        return found

    def put(self, key: str, kind: str, model: str, result: str, prompt_tokens: int, completion_tokens: int):
        """Store one finished call and commit it at once."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, kind, model, result, int(prompt_tokens), int(completion_tokens), time.time()),
            )
            self._conn.commit()
            if self._fault is not None and kind == self._fault[0]:
                self._fault[1] -= 1
                if self._fault[1] <= 0:  # fault injection: die like a crash, right after a stored call
                    os.kill(os.getpid(), signal.SIGKILL)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _call_with_results(method: Callable[..., list], chats: list[Chat], on_result, arg) -> list:
    """Call ``method(chats, arg, on_result=...)``; for a backend without ``on_result`` support, call it
    in chunks of its ``batch_size`` and report each chunk as it finishes."""
    if on_result is None:
        return method(chats, arg)
    if "on_result" in inspect.signature(method).parameters:
        return method(chats, arg, on_result=on_result)
    step = max(1, int(getattr(method.__self__, "batch_size", 8)))
    out: list = []
    for start in range(0, len(chats), step):
        part = method(chats[start : start + step], arg)
        for j, r in enumerate(part):
            pt = getattr(r, "prompt_tokens", 0)
            on_result(start + j, r, pt, getattr(r, "completion_tokens", 0))
        out.extend(part)
    return out


class _Memo:
    """Small facts about a backend kept in the cache beside the calls (e.g. which scoring method a server
    supports), so a rerun does not ask again."""

    def __init__(self, cache: LLMCache):
        self.cache = cache

    def _key(self, key: str) -> str:
        return call_key("memo", "memo", [], key)

    def get(self, key: str) -> str | None:
        k = self._key(key)
        found = self.cache.get_many([k])
        return found[k][0] if k in found else None

    def put(self, key: str, value: str) -> None:
        self.cache.put(self._key(key), "memo", "memo", value, 0, 0)


class CachedLLM:
    """Wrap any backend with an :class:`LLMCache`: hits are read back, misses computed and committed
    one by one as they finish. ``cache=None`` passes every call through (stats still counted).

    Attributes:
        llm: the wrapped backend.
        cache: the :class:`LLMCache` or None.
    """

    def __init__(self, llm: Any, cache: LLMCache | None):
        self.llm = llm
        self.cache = cache
        self.name: str = llm.name
        self.cache_id: str = getattr(llm, "cache_id", llm.name)
        self._hits = 0
        self._misses = 0
        self._saved_prompt = 0
        self._saved_completion = 0

    def __getattr__(self, item):  # tokenizer, model, batch_size... of the wrapped backend
        if item == "llm":
            raise AttributeError(item)
        return getattr(self.llm, item)

    @property
    def stats(self) -> CacheStats:
        """Hits and misses of this wrapper; tokens actually computed by the backend."""
        inner = getattr(self.llm, "stats", None)
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            prompt_tokens=inner.prompt_tokens if inner else 0,
            completion_tokens=inner.completion_tokens if inner else 0,
            extra={
                **(inner.extra if inner else {}),
                "cache_path": str(self.cache.path) if self.cache else None,
                "saved_prompt_tokens": self._saved_prompt,
                "saved_completion_tokens": self._saved_completion,
            },
        )

    def _memo(self) -> _Memo | None:
        return _Memo(self.cache) if self.cache is not None else None

    def _run(
        self,
        kind: str,
        chats: list[Chat],
        payload: Any,
        compute: Callable[..., list],
        encode: Callable[[Any], str],
        decode: Callable[[str], Any],
        usable: Callable[[Any], bool],
        backend_id: str | None = None,
    ) -> list:
        backend_id = backend_id or self.cache_id
        if self.cache is None:
            out = compute(chats, None)
            self._misses += len(chats)
            return out
        keys = [call_key(backend_id, kind, c, payload) for c in chats]
        found = self.cache.get_many(keys)
        results: list[Any] = [None] * len(chats)
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                r, pt, ct = found[k]
                results[i] = decode(r)
                self._hits += 1
                self._saved_prompt += pt
                self._saved_completion += ct
            else:
                todo.setdefault(k, []).append(i)  # identical calls inside one job are computed once
        if not todo:
            return results
        miss_keys = list(todo)
        miss_chats = [chats[todo[k][0]] for k in miss_keys]

        def on_result(j: int, result: Any, prompt_tokens: int, completion_tokens: int) -> None:
            k = miss_keys[j]
            if usable(result):
                self.cache.put(k, kind, backend_id, encode(result), prompt_tokens, completion_tokens)

        computed = compute(miss_chats, on_result)
        self._misses += len(miss_keys)
        for k, r in zip(miss_keys, computed, strict=False):
            for i in todo[k]:
                results[i] = r
        return results

    def generate(self, chats: list[Chat], params: GenParams | None = None) -> list[Completion]:
        """Like the backend's ``generate``; cached completions come back with ``cached=True``."""
        params = params or GenParams()

        def decode(s: str) -> Completion:
            c = Completion(**json.loads(s))
            c.cached = True
            return c

        def encode(c: Completion) -> str:
            d = asdict(c)
            d["cached"] = False
            return json.dumps(d, ensure_ascii=False)

        return self._run(
            "generate",
            chats,
            params.key(),
            lambda cs, cb: _call_with_results(self.llm.generate, cs, cb, params),
            encode,
            decode,
            lambda c: c.finish_reason != "error",
        )

    def score_choices(self, chats: list[Chat], choices: list[str]) -> list[dict[str, float]]:
        """Like the backend's ``score_choices``; empty results (unscorable items) are not cached. A backend
        whose scores depend on a method chosen per server (``score_cache_id``) keys them by that method."""
        score_id = getattr(self.llm, "score_cache_id", None)
        backend_id = score_id(list(choices), self._memo()) if callable(score_id) else self.cache_id
        return self._run(
            "score",
            chats,
            list(choices),
            lambda cs, cb: _call_with_results(self.llm.score_choices, cs, cb, choices),
            lambda r: json.dumps(r, ensure_ascii=False),
            json.loads,
            bool,
            backend_id,
        )

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        close = getattr(self.llm, "close", None)
        if close:
            close()
