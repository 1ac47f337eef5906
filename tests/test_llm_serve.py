"""`relforge llm serve` as a server people expose: a REAL uvicorn server on 127.0.0.1 per behaviour.

Auth before the body, constant-time key check, 413/400 limits, 4xx for client errors, the unsafe-bind
warning, quiet logs under dropped connections (a real `relforge llm serve` subprocess), /tokenize."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from relforge.llm.hf import HFBackend
from relforge.llm.serve import LLMServer, is_loopback

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)


@pytest.fixture
def keyed(tiny):
    with LLMServer(tiny, port=0, api_key="k3y-value", max_body_bytes=4096, max_tokens=8).running() as srv:
        yield srv


@pytest.fixture
def open_server(tiny):
    with LLMServer(tiny, port=0, max_body_bytes=4096, max_tokens=8).running() as srv:
        yield srv


def addr(srv) -> tuple[str, int]:
    host, port = srv.bind().getsockname()[:2]
    return host, port


def raw_request(srv, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    """Send raw bytes, return what the server answers within ``wait`` seconds."""
    with socket.create_connection(addr(srv), timeout=wait) as s:
        s.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + _length(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def status_of(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1]) if resp else 0


def post(srv, body, **kw):
    return httpx.post(f"{srv.url}/chat/completions", json=body, timeout=30, **kw)


def test_auth_is_checked_before_the_body_is_read(keyed):
    # a huge declared body that never arrives: answered 401 at once, the server does not wait for it
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900000000\r\n\r\n"
    )
    t0 = time.perf_counter()
    resp = raw_request(keyed, head, wait=5)
    assert status_of(resp) == 401 and time.perf_counter() - t0 < 3
    assert b"invalid or missing API key" in resp
    # wrong key, right key
    assert post(keyed, {"messages": MSG}, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = post(keyed, {"messages": MSG, "max_tokens": 2}, headers={"Authorization": "Bearer k3y-value"})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    assert httpx.get(f"{keyed.url}/models").status_code == 401
    assert httpx.get(keyed.url.replace("/v1", "/health")).status_code == 200  # health stays open


def test_key_comparison_is_constant_time(keyed, monkeypatch):
    import relforge.llm.serve as serve

    calls = []
    real = serve.hmac.compare_digest
    monkeypatch.setattr(serve.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert post(keyed, {"messages": MSG}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert calls == [(b"Bearer nope", b"Bearer k3y-value")]


def test_body_size_cap_413_declared_and_chunked(open_server):
    big = {"messages": [{"role": "user", "content": "x" * 10000}]}
    r = post(open_server, big)
    assert r.status_code == 413 and "exceeds the limit of 4096" in r.json()["error"]["message"]

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(f"{open_server.url}/chat/completions", content=chunks(), timeout=30)  # no Content-Length
    assert r.status_code == 413
    # a declared size far beyond the cap is refused without reading it (and the server stays up)
    resp = raw_request(
        open_server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
    )
    assert status_of(resp) == 413
    assert post(open_server, {"messages": MSG, "max_tokens": 1}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"messages": "hi"}', 400, "messages"),
        (b'{"messages": []}', 400, "messages"),
        (b'{"messages": [{"role": "user"}]}', 400, "content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 9}', 400, "cap of 8"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', 400, "max_tokens"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 50}',
            400,
            "top_logprobs",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": 9}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": true}', 400, "stream"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', 400, "n"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "logprob_token_ids": [999999999]}',
            400,
            "vocabulary",
        ),
    ],
)
def test_client_errors_are_4xx_with_a_message(open_server, body, status, needle):
    r = httpx.post(f"{open_server.url}/chat/completions", content=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_routes_and_methods(open_server):
    assert httpx.get(f"{open_server.url}/chat/completions").status_code == 405
    assert httpx.post(f"{open_server.url}/nope", json={}).status_code == 404
    assert httpx.get(f"{open_server.url}/models").json()["data"][0]["id"] == open_server.model_name
    r = httpx.post(
        open_server.url.replace("/v1", "/tokenize"), json={"prompt": "3", "add_special_tokens": False}
    )
    assert r.status_code == 200 and r.json()["count"] == 1
    r = httpx.post(open_server.url.replace("/v1", "/tokenize"), json={"messages": MSG})
    assert r.json()["tokens"] == open_server.llm.encode_chat(MSG)
    # a prompt longer than the model's context is the client's problem: 400, not 500
    with LLMServer(open_server.llm, port=0, max_body_bytes=1 << 22).running() as big:
        r = post(big, {"messages": [{"role": "user", "content": "word " * 5000}], "max_tokens": 1})
        assert r.status_code == 400 and "exceeds the context" in r.json()["error"]["message"]
    assert open_server.counts[405] == 1 and open_server.counts[404] == 1


def test_logprobs_top_and_token_ids(open_server, tiny):
    r = post(
        open_server, {"messages": MSG, "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 5}
    )
    first = r.json()["choices"][0]["logprobs"]["content"][0]
    ref = tiny.next_token_logprobs([MSG], 5)[0]
    assert [t["token"] for t in first["top_logprobs"]] == [t for t, _, _ in ref]
    assert all(abs(a["logprob"] - b) < 1e-5 for a, (_, _, b) in zip(first["top_logprobs"], ref, strict=True))
    ids = [15, 16, 17]
    r = post(
        open_server,
        {
            "messages": MSG,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "logprob_token_ids": ids,
            "return_tokens_as_token_ids": True,
        },
    )
    got = r.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    vec = tiny.next_token_logprob_vectors([MSG])[0]
    assert [t["token"] for t in got] == [f"token_id:{i}" for i in ids]
    assert all(abs(t["logprob"] - float(vec[i])) < 1e-5 for t, i in zip(got, ids, strict=True))


def test_unsafe_bind_warns_without_a_key(tiny, capsys):
    LLMServer(tiny, host="0.0.0.0", port=0).close()
    assert "WITHOUT an API key" in capsys.readouterr().err
    LLMServer(tiny, host="0.0.0.0", port=0, api_key="x").close()
    LLMServer(tiny, host="127.0.0.1", port=0).close()
    assert capsys.readouterr().err == ""
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_server_stays_quiet_and_up_under_dropped_connections(tiny_llm_dir, tmp_path):
    """A real `relforge llm serve` process: half-sent requests, dropped connections, garbage bytes; it
    keeps answering and its log holds no traceback."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "SERVE_KEY": "abc"}
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relforge.cli",
            "llm",
            "serve",
            "--llm",
            tiny_llm_dir,
            "--port",
            str(port),
            "--no-cache",
            "--api-key-env",
            "SERVE_KEY",
            "--max-tokens",
            "4",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"server did not start: {Path(tmp_path / 'serve.log').read_text()}")
        hdr = {"Authorization": "Bearer abc"}
        for payload in (
            b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nContent-Length: 500\r\n\r\n{"mess',
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n",  # headers never finished
            b"\x16\x03\x01\x02\x00garbage not http\r\n\r\n",  # a TLS hello at a plain-HTTP port
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(payload)
                time.sleep(0.05)
        r = httpx.post(
            f"{base}/v1/chat/completions", json={"messages": MSG, "max_tokens": 2}, headers=hdr, timeout=30
        )
        assert r.status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text and "Exception" not in text, text
    assert "serving" in text and "key required" in text
