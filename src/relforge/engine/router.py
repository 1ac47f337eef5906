"""Several OpenAI-compatible endpoints behind one ``ray.data.llm`` HTTP processor.

``HttpRequestProcessorConfig`` takes ONE url. relforge hands it a placeholder url (``relforge-pool:...``)
and a ``session_factory`` returning an :class:`EndpointRouter`: an aiohttp session look-alike that sends
each request to the next endpoint round robin, skipping endpoints that refused a connection (or answered
502/503/504) for ``down_seconds``. When an endpoint dies mid-run its requests fail over to the others
inside the same call; when every endpoint is down the error reaches the processor, whose own retries
(``max_retries``, exponential backoff) try the pool again. So a dead endpoint costs retries, never pairs.

Requests start when ``post`` is called, so a batch's requests are in flight together (in flight at most:
actors x ``batch_size``). Each Ray actor gets its own copy of the factory (pickled), so the round robin and the down list are per
actor; actors start at different offsets so load spreads from the first request.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

PLACEHOLDER = "http://relforge-pool.invalid"
FAILOVER_STATUS = {502, 503, 504}


class RouterFactory:
    """Picklable ``session_factory`` for ``HttpRequestProcessorConfig``.

    Args:
        bases: endpoint base URLs (``http://host:port/v1``, already normalised and without credentials).
        timeout: seconds per request.
        down_seconds: how long an endpoint that failed is skipped.
    """

    def __init__(self, bases: list[str], timeout: float = 120.0, down_seconds: float = 30.0):
        if not bases:
            raise ValueError("RouterFactory needs at least one endpoint")
        self.bases = list(bases)
        self.timeout = float(timeout)
        self.down_seconds = float(down_seconds)
        self._next: int | None = None
        self._down: dict[int, float] = {}
        self.sent: dict[str, int] = {}
        self.failovers = 0

    def __getstate__(self) -> dict:
        return {"bases": self.bases, "timeout": self.timeout, "down_seconds": self.down_seconds}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["bases"], state["timeout"], state["down_seconds"])

    def __call__(self) -> EndpointRouter:
        if self._next is None:  # first use in this actor: a spread-out start
            self._next = (os.getpid() + random.randrange(len(self.bases))) % len(self.bases)
        return EndpointRouter(self)

    def order(self) -> list[int]:
        """Endpoint indices to try, round robin from the next one; endpoints marked down go last."""
        n = len(self.bases)
        start = self._next or 0
        self._next = (start + 1) % n
        idx = [(start + k) % n for k in range(n)]
        now = time.monotonic()
        up = [i for i in idx if self._down.get(i, 0.0) <= now]
        return up + [i for i in idx if i not in up]

    def mark_down(self, i: int) -> None:
        self._down[i] = time.monotonic() + self.down_seconds


class EndpointRouter:
    """What ``HttpRequestUDF`` uses of an ``aiohttp.ClientSession``: ``async with``, ``post(url, ...)``."""

    def __init__(self, factory: RouterFactory):
        self.f = factory
        self._session: Any = None

    async def __aenter__(self) -> EndpointRouter:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.f.timeout))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.close()

    def post(self, url: str, headers: dict | None = None, data: Any = None) -> asyncio.Future:
        """Start the request NOW and return its future. ``HttpRequestUDF`` creates every request of a batch
        first and awaits them one by one afterwards: with aiohttp's lazy ``session.post`` they would run one
        after another; started here, a batch's requests are in flight together (``batch_size`` per actor)."""
        return asyncio.ensure_future(self._post(url, headers, data))

    async def _post(self, url: str, headers: dict | None, data: Any) -> Any:
        """POST to ``<endpoint><path of url>``; fail over on connection errors and 502/503/504."""
        import aiohttp

        path = url[len(PLACEHOLDER) :] if url.startswith(PLACEHOLDER) else url
        last: BaseException | None = None
        order = self.f.order()
        for k, i in enumerate(order):
            target = self.f.bases[i] + path
            try:
                resp = await self._session.post(target, headers=headers, data=data)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                last = e
                self.f.mark_down(i)
                self.f.failovers += 1
                continue
            if resp.status in FAILOVER_STATUS and k < len(order) - 1:
                resp.release()
                self.f.mark_down(i)
                self.f.failovers += 1
                continue
            self.f.sent[self.f.bases[i]] = self.f.sent.get(self.f.bases[i], 0) + 1
            return resp
        assert last is not None
        raise last
