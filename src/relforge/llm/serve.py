"""An OpenAI-compatible HTTP server over any relforge LLM, on Starlette + uvicorn.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /tokenize`` (vLLM's shape), ``GET /health``.
Chat requests accept OpenAI's fields plus the vLLM extensions relforge's exact scoring uses:
``logprobs``/``top_logprobs`` (first answer token), ``logprob_token_ids`` + ``return_tokens_as_token_ids``
(log-probs of given token ids), ``prompt_logprobs`` + ``return_token_ids`` and ``continue_final_message`` /
``add_generation_prompt`` (a prefilled assistant reply).

Behaviour of a server people expose:

- **auth first**: with a key set, ``Authorization: Bearer <key>`` is compared in constant time
  (``hmac.compare_digest``) before any byte of the body is read; 401 otherwise;
- **limits**: a body over ``max_body_bytes`` gets 413 (from ``Content-Length`` without reading it, or as
  soon as a chunked body passes the cap); ``max_tokens`` over the cap, ``top_logprobs`` over 20 and bad
  fields get 400; more than ``max_concurrency`` open requests get 503 from uvicorn;
- **client errors are 4xx** (malformed JSON, wrong types, unknown route 404, wrong method 405), server
  errors 500 with one log line, never a traceback per dropped connection;
- a warning when bound to a non-loopback address without a key; access logs only with ``verbose``.

Model calls run one at a time in a worker thread; requests are accepted concurrently.

Example:
    >>> llm = load_llm("smollm2", cache=None)
    >>> with LLMServer(llm, port=0).running() as server:
    ...     client = load_llm(f"openai:{server.url}#smollm2", cache=None)
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relforge.errors import RelforgeError, UsageError
from relforge.llm.base import GenParams
from relforge.progress import warn

log = logging.getLogger("relforge.llm.serve")

MAX_TOP_LOGPROBS = 20


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(min_length=1)
    content: str


class ChatRequest(BaseModel):
    """The fields of a ``/v1/chat/completions`` body this server reads (others are ignored)."""

    model_config = ConfigDict(extra="ignore")
    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    logprob_token_ids: list[int] | None = Field(None, max_length=256)
    return_tokens_as_token_ids: bool = False
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    return_token_ids: bool = False
    continue_final_message: bool = False
    add_generation_prompt: bool = True


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt: str | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class ClientError(Exception):
    """Answered as ``status`` with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def is_loopback(host: str) -> bool:
    """True for ``127.0.0.1``, ``::1``, ``localhost``."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LLMServer:
    """OpenAI-compatible server over ``llm`` (Starlette app, uvicorn server).

    Args:
        llm: any relforge LLM (``load_llm(...)`` result or a backend).
        host: bind address (keep ``127.0.0.1`` unless you mean to expose it, then set ``api_key``).
        port: 0 picks a free port (see :attr:`url`).
        model_name: id reported by ``/v1/models`` and in responses (default: ``llm.name``).
        api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
        max_body_bytes: larger request bodies get 413.
        max_tokens: larger ``max_tokens`` get 400.
        max_concurrency: open requests beyond this get 503.
        middleware: wraps the ASGI app (``lambda app: MyMiddleware(app)``), e.g. to inject faults in tests.
        verbose: access log and tracebacks of server errors on stderr.

    Attributes:
        counts: responses sent, by status code (``counts[200]``), plus ``counts["requests"]``.
    """

    def __init__(
        self,
        llm: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model_name: str | None = None,
        api_key: str | None = None,
        max_body_bytes: int = 1 << 20,
        max_tokens: int = 1024,
        max_concurrency: int = 64,
        middleware: Callable[[Any], Any] | None = None,
        verbose: bool = False,
    ):
        if max_body_bytes < 1024 or max_tokens < 1 or max_concurrency < 1:
            raise UsageError("max_body_bytes must be >= 1024, max_tokens and max_concurrency >= 1")
        self.llm = llm
        self.host, self.port = host, int(port)
        self.model_name = model_name or llm.name
        self._key = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes, self.max_tokens = int(max_body_bytes), int(max_tokens)
        self.max_concurrency = int(max_concurrency)
        self.verbose = verbose
        self.counts: Counter = Counter()
        self.model_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._server: Any = None
        app = self._build_app()
        self.app = middleware(app) if middleware else app
        if not is_loopback(host) and not api_key:
            warn(
                f"serving on {host} (not a loopback address) WITHOUT an API key: anyone who can reach this "
                f"port can use the model. Set --api-key-env VAR (clients then send the key from "
                f"$RELFORGE_API_KEY)."
            )

    # ------------------------------------------------------------------ app
    def _build_app(self):
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.routing import Route

        async def http_error(request, exc: HTTPException):
            return _error(exc.status_code, str(exc.detail))

        return Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/health", self._health, methods=["GET"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/tokenize", self._tokenize, methods=["POST"]),
            ],
            exception_handlers={HTTPException: http_error},
        )

    async def __call__(self, scope, receive, send):  # ASGI: count responses by status
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.counts[message["status"]] += 1
            await send(message)

        self.counts["requests"] += 1
        await self.app(scope, receive, counting_send)

    def _authorize(self, request) -> None:
        if self._key is None:
            return
        got = request.headers.get("authorization", "").encode("latin-1", errors="replace")
        if not hmac.compare_digest(got, self._key):
            raise ClientError(401, "invalid or missing API key", "authentication_error")

    async def _read_json(self, request) -> Any:
        """The body as JSON, read only after auth and never past ``max_body_bytes``."""
        self._authorize(request)
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise ClientError(400, "Content-Length is not an integer") from None
            if n > self.max_body_bytes:
                raise ClientError(
                    413, f"request body of {n} bytes exceeds the limit of {self.max_body_bytes}"
                )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise ClientError(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ClientError(400, "request body is not valid JSON") from None

    async def _handle(self, request, model_cls, answer):
        try:
            raw = await self._read_json(request)
            if not isinstance(raw, dict):
                raise ClientError(400, "request body must be a JSON object")
            try:
                body = model_cls.model_validate(raw)
            except ValidationError as e:
                raise ClientError(400, _validation_message(e)) from None
            return _json(200, await self._in_thread(answer, body))
        except ClientError as e:
            return _error(e.status, str(e), e.kind)
        except (UsageError, ValueError) as e:
            return _error(400, str(e))
        except RelforgeError as e:  # e.g. a prompt longer than the model's context
            return _error(400, str(e))
        except Exception as e:  # one line, never a traceback per request unless verbose
            log.error(
                "server error on %s: %s: %s", request.url.path, type(e).__name__, e, exc_info=self.verbose
            )
            return _error(500, f"{type(e).__name__}: {e}", "server_error")

    async def _in_thread(self, fn, *args):
        def locked():
            with self.model_lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def _health(self, request):
        return _json(200, {"status": "ok"})

    async def _models(self, request):
        try:
            self._authorize(request)
        except ClientError as e:
            return _error(e.status, str(e), e.kind)
        return _json(200, {"object": "list", "data": [{"id": self.model_name, "object": "model"}]})

    async def _chat(self, request):
        return await self._handle(request, ChatRequest, self.complete)

    async def _tokenize(self, request):
        return await self._handle(request, TokenizeRequest, self.tokenize)

    # ------------------------------------------------------------------ model work (in a worker thread)
    def _backend_fn(self, name: str, what: str):
        fn = getattr(self.llm, name, None)
        if fn is None:
            raise ClientError(400, f"{what} is not supported by backend {self.llm.name}")
        return fn

    def tokenize(self, req: TokenizeRequest) -> dict:
        """``/tokenize``: ``{"tokens", "count"}`` of a prompt string or a templated chat."""
        if (req.prompt is None) == (req.messages is None):
            raise ClientError(400, "give exactly one of 'prompt' and 'messages'")
        if req.messages is not None:
            ids = self._backend_fn("encode_chat", "tokenize")([m.model_dump() for m in req.messages])
        else:
            tok = getattr(self.llm, "tokenizer", None)
            if tok is None:
                raise ClientError(400, f"tokenize is not supported by backend {self.llm.name}")
            ids = list(tok(req.prompt, add_special_tokens=req.add_special_tokens)["input_ids"])
        return {"tokens": ids, "count": len(ids), "max_model_len": getattr(self.llm, "max_positions", None)}

    def complete(self, req: ChatRequest) -> dict:
        """Answer one validated ``/v1/chat/completions`` request."""
        if req.stream:
            raise ClientError(400, "stream=true is not supported by relforge llm serve")
        if req.continue_final_message and req.messages[-1].role != "assistant":
            raise ClientError(400, "continue_final_message needs a final assistant message")
        max_tokens = req.max_tokens or req.max_completion_tokens or min(64, self.max_tokens)
        if max_tokens > self.max_tokens:
            raise ClientError(
                400, f"max_tokens {max_tokens} exceeds this server's cap of {self.max_tokens} (--max-tokens)"
            )
        messages = [m.model_dump() for m in req.messages]
        cont = req.continue_final_message
        extra: dict[str, Any] = {}
        if req.prompt_logprobs is not None or req.return_token_ids:
            encode = self._backend_fn("encode_chat", "prompt_logprobs")
            ids = encode(messages, continue_final=cont)
            if req.return_token_ids:
                extra["prompt_token_ids"] = ids
            if req.prompt_logprobs is not None:
                plp = self._backend_fn("prompt_token_logprobs", "prompt_logprobs")(ids)
                tok = self.llm.tokenizer
                extra["prompt_logprobs"] = [
                    None
                    if lp is None
                    else {str(t): {"logprob": lp, "rank": None, "decoded_token": tok.decode([t])}}
                    for t, lp in zip(ids, plp, strict=True)
                ]
        temperature = 1.0 if req.temperature is None else req.temperature
        if cont and max_tokens != 1:
            raise ClientError(400, "continue_final_message is supported with max_tokens=1 only (greedy)")
        logprobs = first = None
        if req.logprobs or cont:
            logprobs, first = self._first_token_logprobs(req, messages, cont)
        if first is not None and (cont or (max_tokens == 1 and temperature == 0)):
            text, reason = first, "length"
            prompt_tokens, completion_tokens = _prompt_tokens(self.llm, messages, cont), 1
            logprobs = logprobs if req.logprobs else None
        else:
            stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
            params = GenParams(
                max_new_tokens=max_tokens,
                temperature=temperature,
                top_p=req.top_p or 1.0,
                stop=stop,
                seed=req.seed or 0,
            )
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
            **extra,
        }

    def _first_token_logprobs(self, req: ChatRequest, messages: list, cont: bool) -> tuple[dict, str]:
        """``logprobs.content[0]`` of the first answer token (greedy), with ``top_logprobs`` or the
        log-probs of ``logprob_token_ids``; and that token's text."""
        vectors = self._backend_fn("next_token_logprob_vectors", "logprobs")
        lp = vectors([messages], continue_final=cont)[0]
        tok = self.llm.tokenizer
        as_ids = req.return_tokens_as_token_ids

        def entry(tid: int) -> dict:
            text = tok.decode([tid])
            return {
                "token": f"token_id:{tid}" if as_ids else text,
                "logprob": float(lp[tid]),
                "bytes": list(text.encode("utf-8", errors="replace")),
            }

        vocab = lp.shape[0]
        if req.logprob_token_ids is not None:
            bad = [t for t in req.logprob_token_ids if not 0 <= t < vocab]
            if bad:
                raise ClientError(
                    400, f"logprob_token_ids {bad[:5]} are outside the vocabulary (0..{vocab - 1})"
                )
            wanted = list(dict.fromkeys(req.logprob_token_ids))
        else:
            wanted = lp.topk(min(req.top_logprobs or 0, vocab)).indices.tolist() if req.top_logprobs else []
        best = int(lp.argmax())
        first = entry(best)
        first["top_logprobs"] = [entry(t) for t in wanted]
        return {"content": [first]}, tok.decode([best])

    # ------------------------------------------------------------------ running
    def _config(self):
        import uvicorn

        return uvicorn.Config(
            self,
            log_level="info" if self.verbose else "warning",
            access_log=self.verbose,
            limit_concurrency=self.max_concurrency,
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=64 * 1024,
            lifespan="off",
        )

    def bind(self) -> socket.socket:
        """Bind the listening socket now (so ``port=0`` gets its number before serving)."""
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
            sock.set_inheritable(True)
            self._sock = sock
        return self._sock

    @property
    def url(self) -> str:
        """Base URL for clients, ending in ``/v1``."""
        host, port = self.bind().getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C / SIGTERM."""
        import uvicorn

        self._server = uvicorn.Server(self._config())
        self._server.run(sockets=[self.bind()])

    @contextmanager
    def running(self) -> Iterator[LLMServer]:
        """Serve in a background thread for the duration of the ``with`` block."""
        import uvicorn

        self.bind()
        server = uvicorn.Server(self._config())
        self._server = server
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RelforgeError(f"relforge llm serve did not start on {self.host}:{self.port}")
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _json(status: int, obj: dict):
    from starlette.responses import JSONResponse

    return JSONResponse(obj, status_code=status)


def _error(status: int, message: str, kind: str = "invalid_request_error"):
    return _json(status, {"error": {"message": message, "type": kind, "code": status}})


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def _prompt_tokens(llm: Any, messages: list, cont: bool = False) -> int:
    enc = getattr(llm, "encode_chat", None)
    return len(enc(messages, continue_final=cont)) if enc else 0
