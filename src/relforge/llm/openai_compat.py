"""Backend for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, Ollama, llama.cpp server,
TGI, OpenAI, ``relforge llm serve``).

Requests run concurrently (asyncio + httpx, at most ``concurrency`` in flight), each with a timeout,
retried with exponential backoff (and ``Retry-After``) on 429, 5xx, timeouts and connection errors. The
API key is read from ``$RELFORGE_API_KEY`` or ``$OPENAI_API_KEY`` only: it is sent as a bearer header and
is never logged, printed or part of a cache key.

``score_choices`` has three methods (``score_method``; ``auto`` picks the first the server supports, probed
once per server, model and choice list and remembered in the LLM cache):

- ``token_logprobs``: one request per chat asking for the log-probs of the choices' own tokens (vLLM's
  ``logprob_token_ids``, token ids from the server's ``/tokenize``): exact, single-token choices only;
- ``prompt_logprobs``: one request per (chat, choice) with the choice appended as the start of the assistant
  reply (``continue_final_message``) and ``prompt_logprobs``: exact for any choice, n requests per chat;
- ``top_logprobs``: the first answer token's ``top_logprobs`` (any OpenAI-compatible server): **approximate**,
  a choice outside the server's top-k gets probability 0; counted in ``stats.extra["approx"]`` and flagged
  by :meth:`OpenAIBackend.describe`.

A server that returns no log-probs at all gets a clear error naming the fallback (``--mode generate``).

Credentials in the base URL never reach outputs or cache keys (:mod:`relforge.llm.secrets`); ``user:pass@``
is not sent; each retry prints a warning line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from relforge.errors import RelforgeError, UsageError
from relforge.llm._util import check_chat, check_choices, logsumexp, probs_from_top_logprobs
from relforge.llm.base import CacheStats, Chat, Completion, GenParams
from relforge.llm.secrets import (
    has_userinfo,
    redact_text,
    redact_url,
    scrub,
    secret_values,
    strip_userinfo,
    url_identity,
)
from relforge.progress import progress, warn

API_KEY_ENVS = ("RELFORGE_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}

OnResult = Callable[[int, Any, int, int], None]
SCORE_METHODS = ("auto", "token_logprobs", "prompt_logprobs", "top_logprobs")
EXACT_METHODS = ("token_logprobs", "prompt_logprobs")
PROBE_CHAT: Chat = [{"role": "user", "content": "Answer with one character."}]


class _RedactHttpxLogs(logging.Filter):
    """httpx logs request URLs at INFO: redact credentials in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = ()
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _RedactHttpxLogs) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactHttpxLogs())


class NoLogprobsError(RelforgeError):
    """The server answered without ``logprobs``: probability scoring is impossible there."""


def normalize_base_url(base_url: str) -> str:
    """Strip a trailing slash of the path; a bare ``http://host:port`` gets ``/v1``. The query is kept."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"openai base URL {redact_url(base_url)!r} is not an http(s) URL; use e.g. "
            f"openai:http://127.0.0.1:8000/v1#my-model"
        )
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _endpoint(base_url: str, path: str) -> str:
    """``base + path`` with the base's query kept at the end (``http://h/v1?k=1`` + ``/chat/completions``)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + path, parts.query, ""))


def _server_root(base_url: str) -> str:
    """The base URL without its ``/v1`` (vLLM serves ``/tokenize`` at the root)."""
    parts = urlsplit(base_url)
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class _ProbeRejected(Exception):
    """A probe request was answered 4xx: the server does not support that feature."""


class OpenAIBackend:
    """Client of an OpenAI-compatible chat completions server.

    Args:
        base_url: server URL up to ``/v1`` (``http://127.0.0.1:8000/v1``); credentials in it are redacted
            from every output and cache key, ``user:pass@`` is not sent (see :mod:`relforge.llm.secrets`).
        model: model name sent in each request.
        concurrency: maximum requests in flight.
        timeout: seconds per request (connect + read).
        max_retries: retries after the first attempt on 429/5xx/timeouts/connection errors; each retry
            prints a warning line (status, attempt, wait) on stderr.
        backoff: first retry delay in seconds, doubled at each retry (with jitter), capped by ``max_backoff``.
        top_logprobs: how many alternatives to ask for in the ``top_logprobs`` method (OpenAI allows 20).
        score_method: ``auto | token_logprobs | prompt_logprobs | top_logprobs`` (module docstring).
        progress: progress for calls with many requests (bar on a terminal, plain lines in a log).
        batch_size: unused by the HTTP client (kept for a uniform ``load_llm`` signature).
        api_key_env: name of an extra environment variable holding the key, tried before
            ``RELFORGE_API_KEY`` and ``OPENAI_API_KEY`` (the key itself is never passed in code or config).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        top_logprobs: int = 20,
        score_method: str = "auto",
        progress: bool = True,
        batch_size: int = 8,
        api_key_env: str | None = None,
    ):
        if not model:
            raise UsageError(f"openai spec needs a model after '#': openai:{redact_url(base_url)}#<model>")
        if concurrency < 1:
            raise UsageError(f"concurrency must be >= 1, got {concurrency}")
        if score_method not in SCORE_METHODS:
            raise UsageError(f"score_method {score_method!r} is not one of {', '.join(SCORE_METHODS)}")
        url = normalize_base_url(base_url)
        self._secrets = secret_values(url)
        if has_userinfo(url):
            warn(
                f"credentials in the base URL {redact_url(url)} are not sent (they would go out as Basic auth); "
                f"put the key in ${' or $'.join(API_KEY_ENVS)} instead"
            )
            url = strip_userinfo(url)
        self.base_url = url  # what is requested: no userinfo, query kept
        self.display_url = redact_url(url)
        self.model = model
        self.name = f"openai:{self.display_url}#{model}"
        self.cache_id = f"openai:{url_identity(url)}#{model}"
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.top_logprobs = int(top_logprobs)
        self.score_method = score_method
        self.progress = progress
        self.batch_size = batch_size
        self.stats = CacheStats(
            extra={
                "retries": 0,
                "unscorable": 0,
                "approx": {"items": 0, "items_with_missing_choices": 0, "missing_choices": 0},
            }
        )
        self.key_envs = ((api_key_env,) if api_key_env else ()) + API_KEY_ENVS
        self._resolved: dict[tuple[str, ...], tuple[str, dict[str, int]]] = {}

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend({self.display_url!r}, {self.model!r}, concurrency={self.concurrency})"

    def describe(self) -> dict[str, Any]:
        """What outputs record: ``backend``, ``model`` (redacted spec), ``score_method`` (resolved if known)
        and ``exact`` (False for the approximate ``top_logprobs`` path)."""
        methods = sorted({m for m, _ in self._resolved.values()}) or [self.score_method]
        return {
            "backend": "openai",
            "model": self.name,
            "score_method": "+".join(methods),
            "exact": None if methods == ["auto"] else all(m in EXACT_METHODS for m in methods),
            "approx": dict(self.stats.extra["approx"]),
        }

    def _clean(self, text: Any) -> str:
        """Text fit to show: URLs redacted and this backend's URL secrets scrubbed (servers echo them)."""
        return scrub(text, self._secrets)

    def _api_key(self) -> str | None:
        for env in self.key_envs:
            if os.environ.get(env):
                return os.environ[env]
        return None

    # ------------------------------------------------------------------ HTTP
    def _client(self):
        import httpx

        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), headers=headers, limits=limits)

    def _raise_for(self, r, url: str) -> None:
        if r.status_code in (401, 403):
            have = [e for e in self.key_envs if os.environ.get(e)]
            hint = f"the key in ${have[0]} was rejected" if have else "no API key is set"
            raise RelforgeError(
                f"HTTP {r.status_code} from {redact_url(url)}: {hint}. Put the key in the environment variable "
                f"{' or '.join(self.key_envs)}; relforge never reads keys from configs or flags."
            )
        raise RelforgeError(
            f"HTTP {r.status_code} from {redact_url(url)} for model {self.model!r}: {self._clean(r.text[:300])}"
        )

    async def _post(self, client, payload: dict, url: str | None = None, *, probe: bool = False) -> dict:
        """POST with retries. ``probe=True``: a 4xx other than 401/403/408/409/425/429 raises
        :class:`_ProbeRejected` (the feature is unsupported) instead of an error."""
        import httpx

        url = url or _endpoint(self.base_url, "/chat/completions")
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                r = await client.post(url, json=payload)
            except httpx.TimeoutException:
                problem = f"request timed out after {self.timeout:g} s (setting: timeout)"
            except httpx.TransportError as e:
                problem = f"connection failed ({type(e).__name__}: {self._clean(e)})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError as e:
                        raise RelforgeError(
                            f"{redact_url(url)} returned a non-JSON body: {self._clean(r.text[:200])!r}"
                        ) from e
                if probe and 400 <= r.status_code < 500 and r.status_code not in RETRY_STATUS | {401, 403}:
                    raise _ProbeRejected(f"HTTP {r.status_code}: {self._clean(r.text[:200])}")
                if r.status_code not in RETRY_STATUS:
                    self._raise_for(r, url)
                problem = f"HTTP {r.status_code}: {self._clean(r.text[:120])}"
                try:
                    retry_after = float(r.headers.get("retry-after", ""))
                except ValueError:
                    retry_after = None
            if attempt == self.max_retries:
                raise RelforgeError(
                    f"{redact_url(url)}: {problem}; gave up after {attempt + 1} attempts (settings: max_retries="
                    f"{self.max_retries}, timeout={self.timeout:g}, concurrency={self.concurrency})"
                )
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (1 + 0.25 * random.random())
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            self.stats.extra["retries"] += 1
            warn(
                f"{self.display_url} ({self.model}): {problem}; retry {attempt + 1}/{self.max_retries} "
                f"in {delay:.1f} s"
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _run_async(
        self, items: list[list[dict]], parse, on_result: OnResult | None, label: str
    ) -> list:
        """Send every payload of every item (at most ``concurrency`` in flight); ``parse(i, responses)``
        turns item ``i``'s responses into ``(result, prompt_tokens, completion_tokens)``."""
        results: list[Any] = [None] * len(items)
        sem = asyncio.Semaphore(self.concurrency)
        with progress(len(items), label, enabled=self.progress, min_total=self.concurrency + 1) as advance:
            async with self._client() as client:

                async def send(payload: dict) -> dict:
                    async with sem:
                        return await self._post(client, payload)

                async def one(i: int) -> None:
                    datas = await asyncio.gather(*(send(p) for p in items[i]))
                    res, pt, ct = parse(i, list(datas))
                    results[i] = res
                    self.stats.misses += 1
                    self.stats.prompt_tokens += pt
                    self.stats.completion_tokens += ct
                    if on_result:
                        on_result(i, res, pt, ct)
                    advance()

                tasks = [asyncio.ensure_future(one(i)) for i in range(len(items))]
                try:
                    await asyncio.gather(*tasks)
                except BaseException:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise
        return results

    def _sync(self, coro_fn, *args):
        """Run ``coro_fn(*args)`` to completion, also from inside a running event loop (a notebook)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_fn(*args))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: asyncio.run(coro_fn(*args))).result()

    def _run(self, items: list[list[dict]], parse, on_result: OnResult | None, label: str) -> list:
        if not items:
            return []
        return self._sync(self._run_async, items, parse, on_result, label)

    # ------------------------------------------------------------------ LLM interface
    def generate(
        self, chats: list[Chat], params: GenParams | None = None, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """One chat completion per chat (see :meth:`relforge.llm.hf.HFBackend.generate`)."""
        params = params or GenParams()
        for c in chats:
            check_chat(c)
        items = [[self.generate_payload(c, params)] for c in chats]

        def parse(i: int, datas: list[dict]):
            comp = self.parse_completion(datas[0])
            return comp, comp.prompt_tokens, comp.completion_tokens

        return self._run(items, parse, on_result, "generate")

    def generate_payload(self, chat: Chat, params: GenParams) -> dict:
        """The request body of one completion (the Ray engine sends the same body)."""
        p: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "max_tokens": int(params.max_new_tokens),
            "temperature": float(params.temperature),
            "top_p": float(params.top_p),
            "seed": int(params.seed),
        }
        if params.stop:
            p["stop"] = list(params.stop)
        return p

    def parse_completion(self, data: dict) -> Completion:
        """A :class:`Completion` from a chat completions response."""
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise RelforgeError(f"{self.display_url}: unexpected response shape: {str(data)[:200]}") from e
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        usage = data.get("usage") or {}
        return Completion(
            text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), reason
        )

    # ------------------------------------------------------------------ scoring
    def _score_payload(self, chat: Chat, **extra: Any) -> dict:
        return {"model": self.model, "messages": chat, "max_tokens": 1, "temperature": 0.0, **extra}

    def _token_payload(self, chat: Chat, ids: dict[str, int]) -> dict:
        return self._score_payload(
            chat,
            logprobs=True,
            top_logprobs=len(ids),
            logprob_token_ids=sorted(set(ids.values())),
            return_tokens_as_token_ids=True,
        )

    def _prompt_payload(self, chat: Chat, choice: str) -> dict:
        return self._score_payload(
            [*chat, {"role": "assistant", "content": choice}],
            continue_final_message=True,
            add_generation_prompt=False,
            prompt_logprobs=0,
            return_token_ids=True,
        )

    async def _tokenize(self, client, text: str) -> list[int]:
        url = _endpoint(_server_root(self.base_url), "/tokenize")
        data = await self._post(
            client, {"model": self.model, "prompt": text, "add_special_tokens": False}, url, probe=True
        )
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise _ProbeRejected(f"/tokenize answered {str(data)[:120]}")
        return tokens

    async def _probe(self, choices: list[str]) -> tuple[str, dict[str, int]]:
        """The best method this server supports for ``choices`` (one or two small requests)."""
        async with self._client() as client:
            try:
                toks = {c: await self._tokenize(client, c) for c in choices}
                if all(len(t) == 1 for t in toks.values()):
                    ids = {c: t[0] for c, t in toks.items()}
                    data = await self._post(client, self._token_payload(PROBE_CHAT, ids), probe=True)
                    if _token_logprobs(data, ids) is not None:
                        return "token_logprobs", ids
            except _ProbeRejected:
                pass
            try:
                data = await self._post(client, self._prompt_payload(PROBE_CHAT, choices[0]), probe=True)
                if _continuation_logprob(data, choices[0]) is not None:
                    return "prompt_logprobs", {}
            except _ProbeRejected:
                pass
        return "top_logprobs", {}

    def resolve_score_method(self, choices: list[str], memo: Any = None) -> str:
        """The method ``score_choices(chats, choices)`` uses: ``score_method`` unless ``auto``, else probed
        once and remembered (in ``memo``, a ``get(key) -> str | None`` / ``put(key, str)`` store such as the
        LLM cache, so a rerun sends no probe)."""
        choices = check_choices(choices)
        key = tuple(choices)
        if key in self._resolved:
            return self._resolved[key][0]
        if self.score_method == "token_logprobs":
            found = (self.score_method, self._sync(self._token_ids, choices))
        elif self.score_method != "auto":
            found = (self.score_method, {})
        else:
            mkey = f"{self.cache_id}|score-method|{json.dumps(choices)}"
            stored = memo.get(mkey) if memo is not None else None
            if stored:
                found = tuple(json.loads(stored))
            else:
                found = self._sync(self._probe, choices)
                if memo is not None:
                    memo.put(mkey, json.dumps(list(found)))
            if found[0] == "top_logprobs":
                warn(
                    f"{self.display_url} ({self.model}) supports neither logprob_token_ids nor prompt_logprobs: "
                    f"probabilities come from the top-{self.top_logprobs} log-probs and are APPROXIMATE (a grade "
                    f"outside them gets 0; counted). vLLM servers give exact ones."
                )
        self._resolved[key] = found  # type: ignore[assignment]
        return found[0]

    async def _token_ids(self, choices: list[str]) -> dict[str, int]:
        async with self._client() as client:
            try:
                toks = {c: await self._tokenize(client, c) for c in choices}
            except _ProbeRejected as e:
                raise UsageError(
                    f"score_method token_logprobs needs the server's /tokenize ({e}); use prompt_logprobs or auto"
                ) from e
        bad = [c for c, t in toks.items() if len(t) != 1]
        if bad:
            raise UsageError(
                f"score_method token_logprobs needs single-token choices; {bad} are several tokens on the server; "
                f"use prompt_logprobs or auto"
            )
        return {c: t[0] for c, t in toks.items()}

    def score_cache_id(self, choices: list[str], memo: Any = None) -> str:
        """Cache identity of score calls: exact methods get their own keys (``|score=<method>``); the
        ``top_logprobs`` method keeps the plain :attr:`cache_id`."""
        method = self.resolve_score_method(choices, memo)
        return self.cache_id if method == "top_logprobs" else f"{self.cache_id}|score={method}"

    def score_choices(
        self, chats: list[Chat], choices: list[str], *, on_result: OnResult | None = None
    ) -> list[dict[str, float]]:
        """Probability of each choice as the reply, normalised over the choices (method: module docstring).

        An item that cannot be scored (the ``top_logprobs`` method with no choice in the top list) comes back
        as ``{}`` (counted in ``stats.extra["unscorable"]``, never cached).

        Raises:
            NoLogprobsError: the server returns no logprobs; use generate mode instead.
        """
        choices = check_choices(choices)
        for c in chats:
            check_chat(c)
        self.resolve_score_method(choices)
        items = [self.score_payloads(c, choices) for c in chats]

        def parse(i: int, datas: list[dict]):
            usage = datas[0].get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            return self.parse_score(datas, choices), *tokens

        return self._run(items, parse, on_result, "score")

    def score_payloads(self, chat: Chat, choices: list[str]) -> list[dict]:
        """The request bodies that score ``chat`` over ``choices`` with the resolved method (one, or one per
        choice for ``prompt_logprobs``); :meth:`parse_score` turns their responses into probabilities. The
        Ray engine sends these same bodies, so both engines read probabilities the same way."""
        method = self.resolve_score_method(choices)
        ids = self._resolved[tuple(choices)][1]
        if method == "token_logprobs":
            return [self._token_payload(chat, ids)]
        if method == "prompt_logprobs":
            return [self._prompt_payload(chat, ch) for ch in choices]
        return [self._score_payload(chat, logprobs=True, top_logprobs=self.top_logprobs)]

    def parse_score(self, datas: list[dict], choices: list[str]) -> dict[str, float]:
        """Probabilities over ``choices`` from the responses to :meth:`score_payloads` (same order)."""
        method, ids = self._resolved[tuple(choices)]
        if method == "token_logprobs":
            lps = _token_logprobs(datas[0], ids)
            if lps is None:
                raise self._no_logprobs("logprob_token_ids")
            return _normalise(lps)
        if method == "prompt_logprobs":
            lps = {}
            for ch, d in zip(choices, datas, strict=True):
                lp = _continuation_logprob(d, ch)
                if lp is None:
                    raise self._no_logprobs("prompt_logprobs")
                lps[ch] = lp
            return _normalise(lps)
        return self._parse_top(datas[0], choices)

    def _no_logprobs(self, what: str) -> NoLogprobsError:
        return NoLogprobsError(
            f"{self.name} returned no {what}, so score_choices (probability judging) cannot run this way on "
            f"this server. Use score_method top_logprobs or auto, generate mode (`relforge judge --mode "
            f"generate`, judge_pairs(..., mode='generate')), or a server with logprobs (vLLM, llama.cpp server, "
            f"`relforge llm serve`)."
        )

    def _parse_top(self, data: dict, choices: list[str]) -> dict[str, float]:
        try:
            lp = data["choices"][0].get("logprobs") or {}
            first = (lp.get("content") or [None])[0]
        except (KeyError, IndexError, TypeError, AttributeError):
            first = None
        if not first or not first.get("top_logprobs"):
            raise self._no_logprobs("logprobs/top_logprobs")
        top = [(t.get("token", ""), t.get("logprob")) for t in first["top_logprobs"]]
        probs = probs_from_top_logprobs(top, choices)
        seen = {t.strip() for t, _ in top}
        missing = sum(1 for c in choices if c not in seen)
        approx = self.stats.extra["approx"]
        approx["items"] += 1
        approx["missing_choices"] += missing
        approx["items_with_missing_choices"] += bool(missing)
        if not probs:
            self.stats.extra["unscorable"] += 1
        return probs


def _normalise(logprobs: dict[str, float]) -> dict[str, float]:
    z = logsumexp(list(logprobs.values()))
    return {c: math.exp(v - z) for c, v in logprobs.items()}


def _token_logprobs(data: dict, ids: dict[str, int]) -> dict[str, float] | None:
    """Log-probs of the choices' token ids at the first answer position (``logprob_token_ids`` with
    ``return_tokens_as_token_ids``); None unless every choice is there."""
    try:
        first = data["choices"][0]["logprobs"]["content"][0]
        top = first.get("top_logprobs") or []
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    by_id: dict[int, float] = {}
    for t in top:
        tok = str(t.get("token", ""))
        if tok.startswith("token_id:") and t.get("logprob") is not None:
            by_id[int(tok.split(":", 1)[1])] = float(t["logprob"])
    if not all(i in by_id for i in ids.values()):
        return None
    return {c: by_id[i] for c, i in ids.items()}


def _continuation_logprob(data: dict, choice: str) -> float | None:
    """Sum of the ``prompt_logprobs`` of the prompt's last tokens that spell ``choice`` (the assistant reply
    prefilled with ``continue_final_message``); None when the response has none or they do not spell it."""
    plp = data.get("prompt_logprobs") if isinstance(data, dict) else None
    ids = data.get("prompt_token_ids") if isinstance(data, dict) else None
    if not isinstance(plp, list) or not plp:
        return None
    text, total = "", 0.0
    for pos in range(len(plp) - 1, 0, -1):
        entry = plp[pos]
        if not isinstance(entry, dict) or not entry:
            return None
        tid = str(ids[pos]) if isinstance(ids, list) and len(ids) == len(plp) else None
        lp = entry.get(tid) if tid is not None else None
        if lp is None:  # without the token ids, the entry with rank of the actual token comes first
            lp = next(iter(entry.values()))
        text = str(lp.get("decoded_token", "")) + text
        total += float(lp["logprob"])
        if text.strip() == choice:
            return total
        if len(text.strip()) > len(choice):
            return None
    return None
