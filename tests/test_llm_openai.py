"""OpenAI-compatible client against a REAL HTTP server on 127.0.0.1 (relforge.llm.serve over the tiny HF
model): equality with the local backend, bounded concurrency, retries on 500 (printed), timeouts, 401, a
server without logprobs, the cache in front of it, and the three scoring methods (exact vs approximate)."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest

from relforge.errors import RelforgeError
from relforge.llm import GenParams, load_llm
from relforge.llm.hf import HFBackend
from relforge.llm.openai_compat import NoLogprobsError
from relforge.llm.serve import LLMServer

CHATS = [[{"role": "user", "content": f"question number {i} " * (1 + i % 3)}] for i in range(6)]


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)


VLLM_EXTENSIONS = ("logprob_token_ids", "prompt_logprobs", "continue_final_message", "return_token_ids")


class Faults:
    """ASGI middleware adding what real servers do to clients: slowness, 500s, missing logprobs, and a
    strict OpenAI endpoint (no /tokenize, 400 on vLLM's extra fields). Counts chat requests."""

    def __init__(self, app):
        self.app = app
        self.requests = self.in_flight = self.max_in_flight = self.fail_first = self.tokenize = 0
        self.delay = self.slow_first = 0.0
        self.strip_logprobs = self.openai_strict = False
        self.headers: list[dict] = []

    async def _body(self, receive) -> bytes:
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        return body

    async def __call__(self, scope, receive, send):
        from starlette.responses import JSONResponse

        if scope["type"] == "http" and scope["path"] == "/tokenize":
            self.tokenize += 1
            if self.openai_strict:
                return await JSONResponse({"error": "no route"}, 404)(scope, receive, send)
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            return await self.app(scope, receive, send)
        self.requests += 1
        n = self.requests
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if n <= self.fail_first:
                return await JSONResponse({"error": {"message": "boom"}}, 500)(scope, receive, send)
            await asyncio.sleep(self.slow_first if n == 1 else self.delay)
            body = json.loads(await self._body(receive))
            if self.openai_strict and any(k in body for k in VLLM_EXTENSIONS):
                return await JSONResponse({"error": {"message": "Unrecognized request argument"}}, 400)(
                    scope, receive, send
                )
            if self.strip_logprobs:  # a server that ignores every log-prob field
                body.pop("logprobs", None)
                body.pop("prompt_logprobs", None)
            raw = json.dumps(body).encode()
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1


@pytest.fixture
def server(tiny):
    """The Faults layer of a running server (its counters and switches), with the server's ``url``."""
    srv = LLMServer(tiny, port=0, model_name="tiny", middleware=Faults)
    with srv.running():
        srv.app.url = srv.url
        yield srv.app


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
    probs = client(server, score_method="top_logprobs").score_choices(CHATS[:1], choices)[0]
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert all(abs(probs[s] - math.exp(lp - z)) < 1e-6 for s, lp in picks)
    # auto (exact here) scores the choice strings themselves, like the local backend
    exact = c.score_choices(CHATS[:1], choices)[0]
    local = tiny.score_choices(CHATS[:1], choices)[0]
    assert all(abs(exact[s] - local[s]) < 1e-6 for s in choices)
    # top_logprobs: a choice outside the top list gets 0; none of the choices in it -> {} (counted, not
    # guessed) and the missing choices are counted
    approx = client(server, score_method="top_logprobs")
    assert approx.score_choices(CHATS[:1], ["zzzqqq"]) == [{}]
    assert approx.stats.extra["unscorable"] == 1
    assert approx.llm.describe()["exact"] is False
    assert approx.stats.extra["approx"] == {"items": 1, "items_with_missing_choices": 1, "missing_choices": 1}


GRADES = ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("method", "choices"),
    [("token_logprobs", GRADES), ("prompt_logprobs", GRADES), ("prompt_logprobs", ["yes", "no way"])],
)
def test_exact_score_methods_equal_local_backend(server, tiny, method, choices):
    """Grades far outside the top-20 (the tiny model never ranks digits high) still get their exact
    probability: the issue-20 failure (0 for every grade outside the top-k) is gone."""
    ref = tiny.score_choices(CHATS, choices)
    c = client(server, score_method=method)
    got = c.score_choices(CHATS, choices)
    for g, r in zip(got, ref, strict=True):
        assert set(g) == set(choices)
        assert max(abs(g[k] - r[k]) for k in choices) < 1e-6
    assert c.llm.describe()["exact"] is True and c.llm.describe()["score_method"] == method
    per_chat = 1 if method == "token_logprobs" else len(choices)
    assert server.requests == per_chat * len(CHATS)
    top = client(server, score_method="top_logprobs").score_choices(CHATS, choices)
    assert any(len(t) < len(choices) or 0.0 in t.values() for t in top)  # what the exact paths fix


def test_auto_probes_once_and_remembers_in_the_cache(server, tiny, tmp_path, capsys):
    cache = tmp_path / "c.sqlite"
    c = client(server, cache=cache)
    assert c.score_choices(CHATS[:2], GRADES) and c.llm.describe()["score_method"] == "token_logprobs"
    probes = server.tokenize
    assert probes == len(GRADES)
    # a rerun reads the method from the cache: no probe, no request (every call cached)
    server.requests = 0
    again = client(server, cache=cache)
    assert again.score_choices(CHATS[:2], GRADES) and server.tokenize == probes and server.requests == 0
    # exact scores are keyed apart from approximate ones
    assert again.llm.score_cache_id(GRADES) == again.cache_id + "|score=token_logprobs"
    assert client(server, score_method="top_logprobs").llm.score_cache_id(GRADES) == again.cache_id


def test_auto_on_a_plain_openai_endpoint_is_approximate_and_says_so(server, capsys):
    server.openai_strict = True  # no /tokenize, 400 on vLLM's extra fields
    c = client(server)
    out = c.score_choices(CHATS, GRADES)
    assert c.llm.describe()["score_method"] == "top_logprobs" and c.llm.describe()["exact"] is False
    assert "APPROXIMATE" in capsys.readouterr().err
    assert c.stats.extra["approx"]["items"] == len(CHATS)
    assert c.stats.extra["approx"]["missing_choices"] >= sum(len(GRADES) - len(o) for o in out)


def test_bounded_concurrency(server):
    server.delay = 0.3
    c = client(server, concurrency=3)
    t = time.perf_counter()
    out = c.generate(CHATS, GenParams(max_new_tokens=2))
    assert len(out) == 6 and server.requests == 6
    assert server.max_in_flight == 3
    assert time.perf_counter() - t < 6 * 0.3  # really concurrent


def test_retries_500_with_backoff_each_printed(server, capsys):
    server.fail_first = 2
    c = client(server, backoff=0.01, max_retries=3)  # progress off: retries are printed all the same
    assert c.generate(CHATS[:1], GenParams(max_new_tokens=2))[0].completion_tokens == 2
    assert server.requests == 3 and c.llm.stats.extra["retries"] == 2
    err = capsys.readouterr().err
    assert err.count("warning: ") == 2
    assert "HTTP 500" in err and "retry 1/3 in 0.0" in err and "retry 2/3 in" in err
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
