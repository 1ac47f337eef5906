"""Backend for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, Ollama, llama.cpp server,
TGI, OpenAI, ``relforge llm serve``).

Requests run concurrently (asyncio + httpx, at most ``concurrency`` in flight), each with a timeout,
retried with exponential backoff (and ``Retry-After``) on 429, 5xx, timeouts and connection errors. The
API key is read from ``$RELFORGE_API_KEY`` or ``$OPENAI_API_KEY`` only: it is sent as a bearer header and
is never logged, printed or part of a cache key.

``score_choices`` asks for one token with ``logprobs`` and ``top_logprobs``; a server that does not return
them gets a clear error naming the fallback (judge in generate mode: ``--mode generate``).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from relforge.errors import RelforgeError, UsageError
from relforge.llm._util import check_chat, check_choices, probs_from_top_logprobs
from relforge.llm.base import CacheStats, Chat, Completion, GenParams
from relforge.llm.progress import progress_bar

API_KEY_ENVS = ("RELFORGE_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}

OnResult = Callable[[int, Any, int, int], None]


class NoLogprobsError(RelforgeError):
    """The server answered without ``logprobs``: probability scoring is impossible there."""


def normalize_base_url(base_url: str) -> str:
    """Strip a trailing slash; a bare ``http://host:port`` gets ``/v1`` appended."""
    url = base_url.rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(
            f"openai base URL {base_url!r} is not an http(s) URL; use e.g. openai:http://127.0.0.1:8000/v1#my-model"
        )
    if parsed.path in ("", "/"):
        url += "/v1"
    return url


class OpenAIBackend:
    """Client of an OpenAI-compatible chat completions server.

    Args:
        base_url: server URL up to ``/v1`` (``http://127.0.0.1:8000/v1``).
        model: model name sent in each request.
        concurrency: maximum requests in flight.
        timeout: seconds per request (connect + read).
        max_retries: retries after the first attempt on 429/5xx/timeouts/connection errors.
        backoff: first retry delay in seconds, doubled at each retry (with jitter), capped by ``max_backoff``.
        top_logprobs: how many alternatives to ask for in ``score_choices`` (OpenAI allows up to 20).
        progress: rich progress bar for calls with many requests.
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
        progress: bool = True,
        batch_size: int = 8,
        api_key_env: str | None = None,
    ):
        if not model:
            raise UsageError(f"openai spec needs a model after '#': openai:{base_url}#<model>")
        if concurrency < 1:
            raise UsageError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.name = f"openai:{self.base_url}#{model}"
        self.cache_id = self.name
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.top_logprobs = int(top_logprobs)
        self.progress = progress
        self.batch_size = batch_size
        self.stats = CacheStats(extra={"retries": 0, "unscorable": 0})
        self.key_envs = ((api_key_env,) if api_key_env else ()) + API_KEY_ENVS

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend({self.base_url!r}, {self.model!r}, concurrency={self.concurrency})"

    def _api_key(self) -> str | None:
        for env in self.key_envs:
            if os.environ.get(env):
                return os.environ[env]
        return None

    # ------------------------------------------------------------------ HTTP
    async def _post(self, client, payload: dict) -> dict:
        import httpx

        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                r = await client.post(url, json=payload)
            except httpx.TimeoutException:
                problem = f"request timed out after {self.timeout:g} s (setting: timeout)"
            except httpx.TransportError as e:
                problem = f"connection failed ({type(e).__name__}: {e})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError as e:
                        raise RelforgeError(f"{url} returned a non-JSON body: {r.text[:200]!r}") from e
                if r.status_code in (401, 403):
                    have = [e for e in self.key_envs if os.environ.get(e)]
                    hint = f"the key in ${have[0]} was rejected" if have else "no API key is set"
                    raise RelforgeError(
                        f"HTTP {r.status_code} from {url}: {hint}. Put the key in the environment variable "
                        f"{' or '.join(self.key_envs)}; relforge never reads keys from configs or flags."
                    )
                if r.status_code not in RETRY_STATUS:
                    raise RelforgeError(
                        f"HTTP {r.status_code} from {url} for model {self.model!r}: {r.text[:300]}"
                    )
                problem = f"HTTP {r.status_code}: {r.text[:120]}"
                try:
                    retry_after = float(r.headers.get("retry-after", ""))
                except ValueError:
                    retry_after = None
            if attempt == self.max_retries:
                raise RelforgeError(
                    f"{url}: {problem}; gave up after {attempt + 1} attempts (settings: max_retries="
                    f"{self.max_retries}, timeout={self.timeout:g}, concurrency={self.concurrency})"
                )
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (1 + 0.25 * random.random())
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            self.stats.extra["retries"] += 1
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _run_async(self, payloads: list[dict], parse, on_result: OnResult | None, label: str) -> list:
        import httpx

        results: list[Any] = [None] * len(payloads)
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        sem = asyncio.Semaphore(self.concurrency)
        with progress_bar(
            len(payloads), label, enabled=self.progress, min_total=self.concurrency + 1
        ) as advance:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), headers=headers, limits=limits
            ) as client:

                async def one(i: int) -> None:
                    async with sem:
                        data = await self._post(client, payloads[i])
                    res, pt, ct = parse(i, data)
                    results[i] = res
                    self.stats.misses += 1
                    self.stats.prompt_tokens += pt
                    self.stats.completion_tokens += ct
                    if on_result:
                        on_result(i, res, pt, ct)
                    advance()

                tasks = [asyncio.ensure_future(one(i)) for i in range(len(payloads))]
                try:
                    await asyncio.gather(*tasks)
                except BaseException:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise
        return results

    def _run(self, payloads: list[dict], parse, on_result: OnResult | None, label: str) -> list:
        if not payloads:
            return []
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        if not in_loop:
            return asyncio.run(self._run_async(payloads, parse, on_result, label))
        # called from inside an event loop (a notebook): run ours in a worker thread
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._run_async(payloads, parse, on_result, label)).result()

    # ------------------------------------------------------------------ LLM interface
    def generate(
        self, chats: list[Chat], params: GenParams | None = None, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """One chat completion per chat (see :meth:`relforge.llm.hf.HFBackend.generate`)."""
        params = params or GenParams()
        for c in chats:
            check_chat(c)
        payloads = []
        for c in chats:
            p: dict[str, Any] = {
                "model": self.model,
                "messages": c,
                "max_tokens": int(params.max_new_tokens),
                "temperature": float(params.temperature),
                "top_p": float(params.top_p),
                "seed": int(params.seed),
            }
            if params.stop:
                p["stop"] = list(params.stop)
            payloads.append(p)

        def parse(i: int, data: dict):
            try:
                choice = data["choices"][0]
                text = choice["message"].get("content") or ""
            except (KeyError, IndexError, TypeError, AttributeError) as e:
                raise RelforgeError(f"{self.base_url}: unexpected response shape: {str(data)[:200]}") from e
            reason = "length" if choice.get("finish_reason") == "length" else "stop"
            usage = data.get("usage") or {}
            comp = Completion(
                text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), reason
            )
            return comp, comp.prompt_tokens, comp.completion_tokens

        return self._run(payloads, parse, on_result, "generate")

    def score_choices(
        self, chats: list[Chat], choices: list[str], *, on_result: OnResult | None = None
    ) -> list[dict[str, float]]:
        """Choice probabilities from the ``top_logprobs`` of the first answer token.

        A server token matches a choice when equal after stripping whitespace; choices should therefore
        be single tokens on the server (``"0".."3"``, ``"yes"/"no"``). An item where no choice appears in
        the top list comes back as ``{}`` (counted in ``stats.extra["unscorable"]``, never cached).

        Raises:
            NoLogprobsError: the server returns no logprobs; use generate mode instead.
        """
        choices = check_choices(choices)
        for c in chats:
            check_chat(c)
        payloads = [
            {
                "model": self.model,
                "messages": c,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": self.top_logprobs,
            }
            for c in chats
        ]

        def parse(i: int, data: dict):
            try:
                lp = data["choices"][0].get("logprobs") or {}
                first = (lp.get("content") or [None])[0]
            except (KeyError, IndexError, TypeError, AttributeError):
                first = None
            if not first or not first.get("top_logprobs"):
                raise NoLogprobsError(
                    f"{self.name} returned no logprobs/top_logprobs, so score_choices (probability judging) "
                    f"cannot run on this server. Use generate mode instead (`relforge judge --mode generate`, "
                    f"judge_pairs(..., mode='generate')) or a server that supports logprobs (vLLM, llama.cpp "
                    f"server, `relforge llm serve`)."
                )
            top = [(t.get("token", ""), t.get("logprob")) for t in first["top_logprobs"]]
            probs = probs_from_top_logprobs(top, choices)
            if not probs:
                self.stats.extra["unscorable"] += 1
            usage = data.get("usage") or {}
            return probs, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)

        return self._run(payloads, parse, on_result, "score")
