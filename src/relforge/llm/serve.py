"""A small OpenAI-compatible HTTP server over any relforge LLM (stdlib ``ThreadingHTTPServer``).

Speaks ``POST /v1/chat/completions`` (with ``logprobs`` + ``top_logprobs`` for the first answer token when
the backend offers ``next_token_logprobs``, as :class:`~relforge.llm.hf.HFBackend` does), ``GET /v1/models``
and ``GET /health``. Requests are accepted concurrently; model calls run one at a time. Used by
``relforge llm serve`` and by the tests of the OpenAI-compatible client.

Example:
    >>> llm = load_llm("smollm2", cache=None)
    >>> with LLMServer(llm, port=0).running() as server:
    ...     client = load_llm(f"openai:{server.url}#smollm2", cache=None)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from relforge.llm.base import GenParams


class ChatHandler(BaseHTTPRequestHandler):
    """Request handler; subclass it to add behaviour (the tests inject faults this way)."""

    server: LLMServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are dropped after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def send_json(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def authorized(self) -> bool:
        key = self.server.api_key
        if key is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self.send_error_json(401, "invalid or missing API key", "authentication_error")
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self.send_json(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            if self.authorized():
                self.send_json(
                    200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]}
                )
        else:
            self.send_error_json(404, f"no route {self.path}")

    def read_body(self) -> dict | None:
        """Read the whole request body (always, so a keep-alive connection stays in sync); None after
        answering 400 when it is not a chat request."""
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_error_json(400, "request body is not JSON")
            return None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self.send_error_json(400, "body must be a JSON object with a 'messages' list")
            return None
        return body

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_body()
        if body is None:
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_error_json(404, f"no route {self.path}")
            return
        if not self.authorized():
            return
        self.handle_chat(body)

    def handle_chat(self, body: dict) -> None:
        """Answer a parsed ``/chat/completions`` body (override to add behaviour)."""
        try:
            self.send_json(200, self.server.complete(body))
        except ValueError as e:
            self.send_error_json(400, str(e))
        except Exception as e:  # report, never kill the server thread silently
            self.send_error_json(500, f"{type(e).__name__}: {e}", "server_error")


class LLMServer(ThreadingHTTPServer):
    """OpenAI-compatible server over ``llm``.

    Args:
        llm: any relforge LLM (``load_llm(...)`` result or a backend).
        host: bind address (keep ``127.0.0.1`` unless you mean to expose it).
        port: 0 picks a free port (see :attr:`url`).
        model_name: id reported by ``/v1/models`` and in responses (default: ``llm.name``).
        api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
        handler: request handler class.
        verbose: log each request to stderr.
    """

    daemon_threads = False  # server_close() waits for running requests (no torch call dies mid-way)
    allow_reuse_address = True

    def __init__(
        self,
        llm: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name: str | None = None,
        api_key: str | None = None,
        handler: type[ChatHandler] = ChatHandler,
        verbose: bool = False,
    ):
        super().__init__((host, port), handler)
        self.llm = llm
        self.model_name = model_name or llm.name
        self.api_key = api_key
        self.verbose = verbose
        self.model_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL for clients, ending in ``/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def complete(self, body: dict) -> dict:
        """Answer one ``/v1/chat/completions`` request body."""
        messages = body["messages"]
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        temperature = body.get("temperature")
        params = GenParams(
            max_new_tokens=max_tokens,
            temperature=1.0 if temperature is None else float(temperature),
            top_p=float(body.get("top_p") or 1.0),
            stop=stop,
            seed=int(body.get("seed") or 0),
        )
        logprobs = None
        want_lp = bool(body.get("logprobs"))
        if want_lp:
            k = int(body.get("top_logprobs") or 0)
            fn = getattr(self.llm, "next_token_logprobs", None)
            if fn is None:
                raise ValueError(f"logprobs are not supported by backend {self.llm.name}")
            with self.model_lock:
                top = fn([messages], max(k, 1))[0]
            entry = lambda t, lp: {"token": t, "logprob": lp, "bytes": list(t.encode())}  # noqa: E731
            first = entry(top[0][0], top[0][2])
            first["top_logprobs"] = [entry(t, lp) for t, _, lp in top[:k]]
            logprobs = {"content": [first]}
        if want_lp and max_tokens == 1 and params.temperature == 0:
            text, reason = top[0][0], "length"
            prompt_tokens, completion_tokens = _prompt_tokens(self.llm, messages), 1
        else:
            with self.model_lock:
                comp = self.llm.generate([messages], params)[0]
            text, reason = comp.text, comp.finish_reason
            prompt_tokens, completion_tokens = comp.prompt_tokens, comp.completion_tokens
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reason,
                    "logprobs": logprobs,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @contextmanager
    def running(self) -> Iterator[LLMServer]:
        """Serve in a daemon thread for the duration of the ``with`` block."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()
            thread.join(timeout=5)


def _prompt_tokens(llm: Any, messages: list) -> int:
    enc = getattr(llm, "encode_chat", None)
    return len(enc(messages)) if enc else 0
