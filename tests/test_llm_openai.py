"""OpenAI-compatible client against a REAL HTTP server on 127.0.0.1 (relforge.llm.serve over the tiny HF
model): equality with the local backend, bounded concurrency, retries on 500, timeouts, 401, a server
without logprobs, and the cache in front of it."""

from __future__ import annotations

import math
import threading
import time

import pytest

from relforge.errors import RelforgeError
from relforge.llm import GenParams, load_llm
from relforge.llm.hf import HFBackend
from relforge.llm.openai_compat import NoLogprobsError
from relforge.llm.serve import ChatHandler, LLMServer

CHATS = [[{"role": "user", "content": f"question number {i} " * (1 + i % 3)}] for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)


class FaultyHandler(ChatHandler):
    """Adds what real servers do to clients: slowness, 500s, missing logprobs (set on the server)."""

    def handle_chat(self, body):
        s = self.server
        with s.count_lock:
            s.requests += 1
            n = s.requests
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
        try:
            if n <= s.fail_first:
                self.send_error_json(500, "boom", "server_error")
                return
            time.sleep(s.slow_first if n == 1 else s.delay)
            if s.strip_logprobs:
                body.pop("logprobs", None)
            super().handle_chat(body)
        finally:
            with s.count_lock:
                s.in_flight -= 1


@pytest.fixture
def server(tiny):
    srv = LLMServer(tiny, port=0, model_name="tiny", handler=FaultyHandler)
    srv.count_lock = threading.Lock()
    srv.requests = srv.in_flight = srv.max_in_flight = srv.fail_first = 0
    srv.delay = srv.slow_first = 0.0
    srv.strip_logprobs = False
    with srv.running():
        yield srv


def client(server, **kw):
    kw.setdefault("progress", False)
    return load_llm(f"openai:{server.url}#tiny", cache=kw.pop("cache", None), **kw)


def test_matches_local_backend(server, tiny):
    c = client(server)
    got = c.generate(CHATS[:2], GenParams(max_new_tokens=5))
    ref = tiny.generate(CHATS[:2], GenParams(max_new_tokens=5))
    assert [g.text for g in got] == [r.text for r in ref]
    assert [(g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in got] == [
        (r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in ref
    ]
    # choices = two of the server's top-20 next tokens (so they are in top_logprobs); the client must
    # normalise exactly their log-probs
    top = tiny.next_token_logprobs(CHATS[:1], 20)[0]
    stripped = [t.strip() for t, _, _ in top]
    picks = [
        (s, lp)
        for s, (_, _, lp) in zip(stripped, top, strict=False)
        if s.isalnum() and stripped.count(s) == 1
    ][:2]
    assert len(picks) == 2
    choices = [s for s, _ in picks]
    z = math.log(sum(math.exp(lp) for _, lp in picks))
    probs = c.score_choices(CHATS[:1], choices)[0]
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert all(abs(probs[s] - math.exp(lp - z)) < 1e-6 for s, lp in picks)
    # a choice outside the top list gets 0; none of the choices in it -> {} (counted, not guessed)
    assert c.score_choices(CHATS[:1], ["zzzqqq"]) == [{}]
    assert c.stats.extra["unscorable"] == 1


def test_bounded_concurrency(server):
    server.delay = 0.3
    c = client(server, concurrency=3)
    t = time.perf_counter()
    out = c.generate(CHATS, GenParams(max_new_tokens=2))
    assert len(out) == 6 and server.requests == 6
    assert server.max_in_flight == 3
    assert time.perf_counter() - t < 6 * 0.3  # really concurrent


def test_retries_500_with_backoff(server):
    server.fail_first = 2
    c = client(server, backoff=0.01, max_retries=3)
    assert c.generate(CHATS[:1], GenParams(max_new_tokens=2))[0].completion_tokens == 2
    assert server.requests == 3 and c.llm.stats.extra["retries"] == 2
    server.requests, server.fail_first = 0, 5
    with pytest.raises(RelforgeError, match="HTTP 500.*gave up after 2 attempts.*max_retries=1"):
        client(server, backoff=0.01, max_retries=1).generate(CHATS[:1])


def test_timeout_is_retried_then_reported(server):
    server.slow_first = 1.5
    c = client(server, timeout=0.5, backoff=0.01, max_retries=2)
    assert c.generate(CHATS[:1], GenParams(max_new_tokens=2))[0].completion_tokens == 2
    assert c.llm.stats.extra["retries"] == 1
    server.requests = 0
    with pytest.raises(RelforgeError, match=r"timed out after 0.5 s \(setting: timeout\)"):
        client(server, timeout=0.5, max_retries=0).generate(CHATS[:1])


def test_401_names_the_env_var_and_never_leaks_the_key(tiny, monkeypatch):
    monkeypatch.delenv("RELFORGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LLMServer(tiny, port=0, api_key="s3cret-value").running() as srv:
        c = load_llm(f"openai:{srv.url}#tiny", cache=None, progress=False)
        with pytest.raises(RelforgeError, match="HTTP 401.*no API key is set.*RELFORGE_API_KEY"):
            c.generate(CHATS[:1])
        monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
        with pytest.raises(RelforgeError, match=r"key in \$OPENAI_API_KEY was rejected") as e:
            c.generate(CHATS[:1])
        assert "wrong-key" not in str(e.value) and "wrong-key" not in repr(c.llm)
        monkeypatch.setenv("RELFORGE_API_KEY", "s3cret-value")
        assert c.generate(CHATS[:1], GenParams(max_new_tokens=1))[0].completion_tokens == 1
        assert "s3cret" not in c.cache_id


def test_server_without_logprobs_names_generate_fallback(server):
    server.strip_logprobs = True
    with pytest.raises(NoLogprobsError, match="--mode generate"):
        client(server).score_choices(CHATS[:1], ["0", "1"])


def test_cache_in_front_of_server(server, tmp_path):
    c = client(server, cache=tmp_path / "cache.sqlite")
    first = c.generate(CHATS, GenParams(max_new_tokens=3))
    assert server.requests == 6 and c.stats.misses == 6
    again = client(server, cache=tmp_path / "cache.sqlite")
    second = again.generate(CHATS, GenParams(max_new_tokens=3))
    assert server.requests == 6 and again.stats.hits == 6 and all(s.cached for s in second)
    assert [a.text for a in first] == [b.text for b in second]
