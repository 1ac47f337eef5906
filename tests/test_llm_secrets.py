"""Secrets (issue 15): credentials in a base URL never reach outputs, the cache or error messages, and are
not cache keys; user:pass@ is never sent as Basic auth; keys written in configs/options are refused at
validation; a real server on 127.0.0.1 sees what is (and is not) sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relforge.errors import EXIT_VALIDATION, RelforgeError, UsageError
from relforge.llm import GenParams, load_llm, parse_spec
from relforge.llm.config import LLMConfig
from relforge.llm.hf import HFBackend
from relforge.llm.secrets import (
    SecretInConfigError,
    check_no_secrets,
    find_secrets,
    is_secret_name,
    redact_spec,
    redact_text,
    url_identity,
)
from relforge.llm.serve import LLMServer

SECRETS = ("alice", "pa55word", "SECRETQ", "s1gnature")
CHATS = [[{"role": "user", "content": "hello"}]]


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("openai:http://127.0.0.1:8000/v1#m", "openai:http://127.0.0.1:8000/v1#m"),
        ("openai:http://alice:pa55word@h:1/v1#m", "openai:http://***@h:1/v1#m"),
        (
            "openai:https://h/v1?api_key=SECRETQ&api-version=2024#m",
            "openai:https://h/v1?api_key=***&api-version=2024#m",
        ),
        (
            "openai:https://h/v1?key=SECRETQ&sig=s1gnature&token=x#m",
            "openai:https://h/v1?key=***&sig=***&token=***#m",
        ),
        (
            "openai:https://h/v1?X-Amz-Security-Token=SECRETQ#m",
            "openai:https://h/v1?X-Amz-Security-Token=***#m",
        ),
        ("smollm2", "smollm2"),
        ("hf:./models/x.gguf", "hf:./models/x.gguf"),
    ],
)
def test_redact_spec(spec, shown):
    assert redact_spec(spec) == shown


def test_url_identity_drops_every_secret_and_keeps_the_rest():
    assert (
        url_identity("http://alice:pa55word@h:1/v1?api_key=SECRETQ&api-version=2024")
        == "http://h:1/v1?api-version=2024"
    )
    assert url_identity("http://h/v1?key=a") == url_identity("http://h/v1?key=b") == "http://h/v1"
    assert "pa55word" not in redact_text("HTTP 500 from http://alice:pa55word@h/v1: boom")


def test_redact_obj_for_written_configs():
    from relforge.llm.secrets import redact_obj

    cfg = {
        "llm": {"spec": "openai:http://alice:pa55word@h/v1#m", "batch_size": 8},
        "runs": ["http://h/?token=SECRETQ"],
    }
    out = redact_obj(cfg)
    assert out == {
        "llm": {"spec": "openai:http://***@h/v1#m", "batch_size": 8},
        "runs": ["http://h/?token=***"],
    }
    assert cfg["llm"]["spec"].startswith("openai:http://alice")  # a copy


def test_secret_names():
    for n in (
        "api_key",
        "API-KEY",
        "key",
        "token",
        "hf_token",
        "password",
        "sig",
        "client_secret",
        "Authorization",
    ):
        assert is_secret_name(n), n
    for n in ("api_key_env", "max_tokens", "tokenizer", "model", "api-version", "top_logprobs", "monkey"):
        assert not is_secret_name(n), n


def test_check_no_secrets_refuses_keys_in_options():
    check_no_secrets({"api_key_env": "MY_KEY", "concurrency": 4, "timeout": 30})  # fine
    opts = {"concurrency": 4, "api_key": "sk-live-123", "headers": {"Authorization": "Bearer sk-live-123"}}
    assert find_secrets(opts, "llm.options") == ["llm.options.api_key", "llm.options.headers.Authorization"]
    with pytest.raises(SecretInConfigError) as e:
        check_no_secrets(opts)
    msg = str(e.value)
    assert "llm.options.api_key" in msg and "RELFORGE_API_KEY" in msg and "sk-live" not in msg
    assert e.value.exit_code == EXIT_VALIDATION and isinstance(e.value, ValueError)


def test_llmconfig_and_load_llm_refuse_a_key(tiny_llm_dir):
    with pytest.raises(ValidationError) as e:
        LLMConfig(llm="openai:http://h/v1#m", api_key="sk-live-123")
    assert "RELFORGE_API_KEY" in str(e.value) and "sk-live-123" not in str(e.value)
    with pytest.raises(SecretInConfigError, match="LLM options.token"):
        load_llm(tiny_llm_dir, cache=None, token="sk-live-123")
    assert "pa55word" not in LLMConfig(llm="openai:http://alice:pa55word@h/v1#m").describe()["llm"]


def test_errors_naming_a_spec_are_redacted():
    with pytest.raises(UsageError) as e:
        parse_spec("opnai:http://alice:pa55word@h/v1#m")
    assert "pa55word" not in str(e.value)
    with pytest.raises(UsageError) as e:
        load_llm("openai:ftp://alice:pa55word@h/v1#m", cache=None)
    assert "pa55word" not in str(e.value)


class Capture:
    """ASGI middleware recording the query string and headers of chat requests; fails the first ``fail``."""

    def __init__(self, app):
        self.app, self.seen, self.fail = app, [], 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.seen.append(
                (scope["query_string"].decode(), {k.decode(): v.decode() for k, v in scope["headers"]})
            )
            if self.fail:
                self.fail -= 1
                from starlette.responses import JSONResponse

                return await JSONResponse({"error": "down for alice:pa55word"}, 503)(scope, receive, send)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, progress=False)


def test_credentials_in_the_url_go_nowhere_they_should_not(tiny, tmp_path, capsys, monkeypatch):
    from relforge.judge import JudgeTemplate, judge_pairs
    from relforge.types import Document, Query

    monkeypatch.delenv("RELFORGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = LLMServer(tiny, port=0, model_name="tiny", middleware=Capture)
    with srv.running():
        host = srv.url.split("//")[1]
        spec = f"openai:http://alice:pa55word@{host}?api_key=SECRETQ&sig=s1gnature#tiny"
        cache = tmp_path / "cache.sqlite"
        c = load_llm(spec, cache=cache, progress=False, backoff=0.01, max_retries=2)
        assert "not sent" in capsys.readouterr().err
        srv.app.fail = 1  # one 503: the retry warning must not show credentials either
        assert c.generate(CHATS, GenParams(max_new_tokens=2))[0].completion_tokens == 2
        judged = judge_pairs(
            c,
            JudgeTemplate.load(),
            {"q1": Query("q1", "what is asthma")},
            {"d1": Document("d1", "Asthma is a chronic disease of the airways.", "Asthma")},
            [("q1", "d1")],
            progress=False,
        )
        # no Basic auth went out; the query parameters did (some gateways authenticate that way)
        assert all("authorization" not in h for _, h in srv.app.seen)
        assert all("api_key=SECRETQ" in q for q, _ in srv.app.seen)
        # rotating the key in the query keeps the cache key: the calls are hits
        rotated = load_llm(spec.replace("SECRETQ", "OTHERKEY"), cache=cache, progress=False)
        rotated.generate(CHATS, GenParams(max_new_tokens=2))
        assert rotated.stats.hits == 1
        srv.app.fail = 5
        with pytest.raises(RelforgeError) as e:
            load_llm(spec, cache=None, progress=False, backoff=0.01, max_retries=1).generate(
                [[{"role": "user", "content": "other"}]]
            )
    shown = [c.name, c.cache_id, repr(c.llm), str(c.llm.describe()), judged[0].model, str(e.value)]
    shown.append(capsys.readouterr().err)
    shown.append(cache.read_bytes().decode("latin-1"))
    for text in shown:
        for s in SECRETS:
            assert s not in text, (s, text[:300])
    assert judged[0].model == f"openai:http://{host}?api_key=***&sig=***#tiny"
