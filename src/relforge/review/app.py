"""The web app of ``relforge review`` (Starlette + Jinja2, a little plain JS; works offline).

Security: document and query text is untrusted and rendered only through Jinja2's autoescaping (query
terms are highlighted on escaped text), with a Content-Security-Policy that allows no inline script; the
two static files are served from memory, so no request path reaches the filesystem; every write is a JSON
POST carrying the write token (a header a cross-site form cannot set) from a same-origin page; with
``token`` set (always off loopback) every request needs the access token (``?token=`` once, then a
cookie). A malformed request gets a 4xx and the server carries on.
"""

from __future__ import annotations

import hmac
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from relforge.review.config import QUEUES, ReviewConfig
from relforge.review.queues import SPLITS, Queues, Snapshot, class_targets
from relforge.review.stats import agreement_tables
from relforge.review.store import Store, check_annotator

ANNOTATOR_COOKIE = "relforge_review_annotator"
ACCESS_COOKIE = "relforge_review_access"
MAX_BODY = 16 * 1024
STATIC = {"review.js": "application/javascript", "review.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_STOP = set(
    "the a an and or of to in on for with is are was were be by as at from what which who how why when "
    "does do did can could should would will my your its it this that these those there their about any "
    "have has had not no yes i me we you he she they them than then also into over under".split()
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair: int
    queue: str | None = Field(None, max_length=20)
    seconds: float | None = Field(None, ge=0)


class LabelIn(_In):
    grade: int
    note: str | None = Field(None, max_length=4000)


class NoteIn(_In):
    note: str = Field(..., min_length=1, max_length=4000)


class FlagIn(_In):
    flagged: bool = True


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def highlight(text: str, pattern: re.Pattern | None) -> Markup:
    """``text`` escaped, with the query terms wrapped in ``<mark>`` (matching runs on the raw text;
    every piece is escaped before it is joined)."""
    if pattern is None:
        return escape(text)
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(escape(text[pos : m.start()]))
        out.append(Markup("<mark>") + escape(m.group(0)) + Markup("</mark>"))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def term_pattern(query: str, min_chars: int = 3) -> re.Pattern | None:
    terms = {t for t in re.findall(r"\w+", query.lower()) if len(t) >= min_chars and t not in _STOP}
    if not terms:
        return None
    alts = "|".join(re.escape(t) for t in sorted(terms, key=lambda t: (-len(t), t))[:40])
    return re.compile(rf"\b(?:{alts})\w*", re.IGNORECASE)


def _json_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _is_http(url: Any) -> bool:
    return isinstance(url, str) and re.match(r"^https?://", url.strip(), re.IGNORECASE) is not None


class ReviewApp:
    """Pages and API over one :class:`Store`; build the ASGI app with :meth:`asgi`."""

    def __init__(self, store: Store, cfg: ReviewConfig):
        self.store, self.cfg = store, cfg
        self.scale = store.get_meta("scale")
        self.values = [s["value"] for s in self.scale]
        self.targets = {
            "train": class_targets(cfg.train_target, self.values),
            "validation": class_targets(cfg.val_target, self.values),
        }
        self.queues = Queues(store.pairs(), self.values, self.targets, seed=cfg.seed)
        self.write_token = store.write_token()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("relforge.review", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
        )
        self.env.globals.update(queues=QUEUES, splits=SPLITS)
        self.static = {
            name: (resources.files("relforge.review").joinpath("static", name).read_bytes(), ctype)
            for name, ctype in STATIC.items()
        }

    # ------------------------------------------------------------------ plumbing
    def asgi(self) -> Starlette:
        r = [
            Route("/", self.index),
            Route("/login", self.login, methods=["POST"]),
            Route("/next", self.next_pair),
            Route("/prev", self.prev_pair),
            Route("/pair/{pair_id:int}", self.pair_page),
            Route("/done", self.done),
            Route("/agreement", self.agreement),
            Route("/api/label", self.api_label, methods=["POST"]),
            Route("/api/skip", self.api_skip, methods=["POST"]),
            Route("/api/flag", self.api_flag, methods=["POST"]),
            Route("/api/note", self.api_note, methods=["POST"]),
            Route("/api/progress", self.api_progress),
            Route("/static/{name}", self.static_file),
            Route("/healthz", lambda request: JSONResponse({"ok": True})),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
        ]
        app = Starlette(routes=r, exception_handlers={HTTPError: self._http_error, 404: self._not_found})
        return Guard(app, self.cfg.token)

    async def _http_error(self, request: Request, exc: HTTPError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return self.render("error.html", request, status=exc.status, message=exc.message, code=exc.status)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return await self._http_error(request, HTTPError(404, "not found"))

    def render(self, name: str, request: Request, *, code: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("annotator", request.cookies.get(ANNOTATOR_COOKIE))
        html = self.env.get_template(name).render(write_token=self.write_token, **ctx)
        return HTMLResponse(html, status_code=code)

    def annotator(self, request: Request) -> str | None:
        raw = request.cookies.get(ANNOTATOR_COOKIE)
        try:
            return check_annotator(raw) if raw else None
        except ValueError:
            return None

    def queue_of(self, request: Request) -> str:
        q = request.query_params.get("queue")
        avail = self.queues.available()
        if q is None:
            return self.cfg.default_queue if self.cfg.default_queue in avail else avail[0]
        if q not in avail:
            raise HTTPError(400, f"queue {q!r} is not available here; available: {', '.join(avail)}")
        return q

    def check_write(self, request: Request) -> str:
        """The annotator of a write request; 403 unless it carries the write token from a same-origin page."""
        sent = request.headers.get("x-review-token", "")
        if not hmac.compare_digest(sent.encode(), self.write_token.encode()):
            raise HTTPError(403, "missing or wrong write token (reload the page)")
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise HTTPError(403, "cross-site write refused")
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPError(403, "cross-origin write refused")
        who = self.annotator(request)
        if who is None:
            raise HTTPError(401, "no annotator name: open the start page and give your name")
        return who

    async def body(self, request: Request, model: type[BaseModel]) -> BaseModel:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPError(415, "send application/json")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise HTTPError(413, f"request body over {MAX_BODY} bytes")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPError(400, "malformed JSON") from None
        try:
            obj = model.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise HTTPError(422, f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}") from None
        if self.store.pair(obj.pair) is None:
            raise HTTPError(404, f"no pair {obj.pair}")
        if obj.queue is not None and obj.queue not in QUEUES:
            raise HTTPError(422, f"queue: unknown queue {obj.queue!r}")
        return obj

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def url_next(self, queue: str, snap: Snapshot, exclude: set[int] = frozenset()) -> str:
        pid = self.queues.next(queue, snap, exclude)
        return f"/pair/{pid}?queue={queue}" if pid is not None else f"/done?queue={queue}"

    # ------------------------------------------------------------------ pages
    def index(self, request: Request) -> Response:
        who = self.annotator(request)
        if who is None:
            return self.render("login.html", request, annotators=self.store.annotators(), annotator=None)
        snap = Snapshot.read(self.store, who)
        status = {q: self.queues.next(q, snap) is not None for q in self.queues.available()}
        return self.render(
            "index.html", request, annotator=who, summary=self.summary(snap), status=status,
            available=self.queues.available(), default=self.queue_of(request),
            db=self.store.path.name,
        )  # fmt: skip

    async def login(self, request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise HTTPError(413, "form too large")
        form = parse_qs(raw.decode("utf-8", "replace"))
        if not hmac.compare_digest((form.get("token") or [""])[0].encode(), self.write_token.encode()):
            raise HTTPError(403, "missing or wrong form token (reload the start page)")
        try:
            name = await run_in_threadpool(self.store.add_annotator, (form.get("name") or [""])[0])
        except ValueError as e:
            raise HTTPError(422, str(e)) from None
        resp = self.redirect("/")
        resp.set_cookie(ANNOTATOR_COOKIE, name, max_age=3600 * 24 * 365, httponly=True, samesite="strict")
        return resp

    def need_annotator(self, request: Request) -> str:
        who = self.annotator(request)
        if who is None:
            raise HTTPError(401, "give your name on the start page first")
        return who

    def _from(self, request: Request) -> int | None:
        raw = request.query_params.get("from")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(400, f"from={raw!r} is not a pair id") from None

    def next_pair(self, request: Request) -> Response:
        who, queue, cur = self.need_annotator(request), self.queue_of(request), self._from(request)
        hist = self.store.history(who)
        if cur in hist and hist.index(cur) > 0:  # forward through the pairs you went back over
            return self.redirect(f"/pair/{hist[hist.index(cur) - 1]}?queue={queue}")
        snap = Snapshot.read(self.store, who)
        return self.redirect(self.url_next(queue, snap, {cur} if cur is not None else set()))

    def prev_pair(self, request: Request) -> Response:
        who, queue, cur = self.need_annotator(request), self.queue_of(request), self._from(request)
        hist = self.store.history(who)
        if cur in hist:
            i = hist.index(cur) + 1
            target = hist[i] if i < len(hist) else cur
        else:
            target = hist[0] if hist else cur
        if target is None:
            return self.redirect(f"/next?queue={queue}")
        return self.redirect(f"/pair/{target}?queue={queue}")

    def pair_page(self, request: Request) -> Response:
        p = self.store.pair(request.path_params["pair_id"])
        if p is None:
            raise HTTPError(404, f"no pair {request.path_params['pair_id']}")
        who = self.annotator(request)
        if who is None:
            return self.redirect("/")
        queue = self.queue_of(request)
        snap = Snapshot.read(self.store, who)
        return self.render(
            "pair.html", request, annotator=who, queue=queue, **self.pair_context(p, snap, queue)
        )

    def pair_context(self, p, snap: Snapshot, queue: str) -> dict[str, Any]:
        q, d = self.store.query(p.qid), self.store.doc(p.docid)
        pat = term_pattern(q["text"], self.cfg.highlight_min_chars)
        meta = dict(d["metadata"])
        url = meta.pop("url", None)
        mine = [e for e in self.store.events(pair_id=p.id, annotator=snap.annotator)]
        notes = [e.note for e in mine if e.note]
        others = {who: g for who, (g, _) in snap.labels.get(p.id, {}).items() if who != snap.annotator}
        grades = [
            {**s, "key": s["label"] if len(s["label"]) == 1 else str(i)} for i, s in enumerate(self.scale)
        ]
        return {
            "p": p, "query": q, "query_meta": {k: _json_value(v) for k, v in q["metadata"].items()},
            "title": highlight(d["title"], pat), "text": highlight(d["text"], pat), "doc": d,
            "url": url, "url_is_link": _is_http(url), "url_text": _json_value(url) if url is not None else None,
            "doc_meta": {k: _json_value(v) for k, v in meta.items()},
            "grades": grades, "mine": snap.mine(p.id), "history": [e for e in mine if e.kind != "note"],
            "note": notes[-1] if notes else "",
            "flagged": snap.annotator in snap.flags.get(p.id, set()), "others": others if queue == "recheck" else {},
            "n_others": len(others), "judge": self.judge_view(p), "show_judge": self.cfg.show_judge,
            "summary": self.summary(snap),
        }  # fmt: skip

    def judge_view(self, p) -> dict[str, Any] | None:
        if p.judge_grade is None and not p.judge_probs:
            return None
        probs = p.judge_probs or {}
        rows = [{"value": s["value"], "name": s["name"], "p": probs.get(s["value"])} for s in self.scale]
        return {"grade": p.judge_grade, "expected": p.judge_expected, "rows": rows, "model": p.judge_model}

    def summary(self, snap: Snapshot) -> dict[str, Any]:
        done = self.queues.progress(snap)
        names = {s["value"]: s["name"] for s in self.scale}
        out = {}
        for split in SPLITS:
            tgt = self.targets[split]
            out[split] = {
                "done": sum(done[split].values()),
                "target": sum(tgt.values()),
                "classes": [
                    {"value": v, "name": names[v], "done": done[split][v], "target": tgt[v],
                     "pct": min(100, round(100 * done[split][v] / tgt[v])) if tgt[v] else 100}
                    for v in self.values
                ],
            }  # fmt: skip
        out["mine"] = sum(1 for pid in snap.labels if snap.annotator in snap.labels[pid])
        out["pairs"] = len(self.queues.pairs)
        return out

    def done(self, request: Request) -> Response:
        who = self.need_annotator(request)
        snap = Snapshot.read(self.store, who)
        return self.render("done.html", request, annotator=who, queue=self.queue_of(request),
                           summary=self.summary(snap), available=self.queues.available())  # fmt: skip

    def agreement(self, request: Request) -> Response:
        tables = agreement_tables(self.store, self.scale)
        return self.render("agreement.html", request, t=tables, scale=self.scale)

    def static_file(self, request: Request) -> Response:
        got = self.static.get(request.path_params["name"])
        if got is None:
            raise HTTPError(404, "not found")
        return Response(got[0], media_type=got[1], headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ API
    async def api_label(self, request: Request) -> Response:
        who = self.check_write(request)
        obj: LabelIn = await self.body(request, LabelIn)
        if obj.grade not in self.values:
            raise HTTPError(422, f"grade: {obj.grade} is not on the scale {self.values}")
        secs = min(obj.seconds, self.cfg.max_seconds) if obj.seconds is not None else None
        eid = await run_in_threadpool(
            self.store.add_event, obj.pair, who, "label", grade=obj.grade, note=obj.note or None,
            seconds=secs, queue=obj.queue,
        )  # fmt: skip
        return await self._after(who, obj, {"ok": True, "event": eid})

    async def api_skip(self, request: Request) -> Response:
        who = self.check_write(request)
        obj: _In = await self.body(request, _In)
        await run_in_threadpool(self.store.add_event, obj.pair, who, "skip", queue=obj.queue,
                                seconds=obj.seconds)  # fmt: skip
        return await self._after(who, obj, {"ok": True})

    async def api_flag(self, request: Request) -> Response:
        who = self.check_write(request)
        obj: FlagIn = await self.body(request, FlagIn)
        kind = "flag" if obj.flagged else "unflag"
        await run_in_threadpool(self.store.add_event, obj.pair, who, kind, queue=obj.queue)
        return JSONResponse({"ok": True, "flagged": obj.flagged})

    async def api_note(self, request: Request) -> Response:
        who = self.check_write(request)
        obj: NoteIn = await self.body(request, NoteIn)
        await run_in_threadpool(self.store.add_event, obj.pair, who, "note", note=obj.note, queue=obj.queue)
        return JSONResponse({"ok": True})

    async def _after(self, who: str, obj: _In, out: dict[str, Any]) -> Response:
        queue = obj.queue if obj.queue in self.queues.available() else self.queues.available()[0]
        snap = await run_in_threadpool(Snapshot.read, self.store, who)
        out["next"] = self.url_next(queue, snap, {obj.pair})
        return JSONResponse(out)

    def api_progress(self, request: Request) -> Response:
        who = self.annotator(request) or ""
        return JSONResponse(self.summary(Snapshot.read(self.store, who)))


class Guard:
    """ASGI wrapper: the access token (when set) and the security headers on every response."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in HEADERS.items()
                    if k.lower().encode() not in have
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        if self.token is not None and scope["path"] != "/healthz":
            req = Request(scope)
            sent = req.query_params.get("token") or req.cookies.get(ACCESS_COOKIE) or ""
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                resp = Response("access token required: open the URL relforge review printed", 401)
                return await resp(scope, receive, send_with_headers)
            if "token" in req.query_params:  # move it into a cookie and out of the address bar
                rest = urlencode([(k, v) for k, v in req.query_params.multi_items() if k != "token"])
                resp = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
                resp.set_cookie(ACCESS_COOKIE, self.token, httponly=True, samesite="strict")
                return await resp(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def create_app(store: Store, cfg: ReviewConfig) -> Guard:
    """The ASGI app of ``relforge review`` over ``store`` (``cfg.token``: require this access token)."""
    return ReviewApp(store, cfg).asgi()
