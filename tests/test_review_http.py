"""relforge review over real HTTP (a server process on 127.0.0.1, httpx): the write token, malformed
requests (4xx, the server stays up), no filesystem access from a request, the access token."""

from __future__ import annotations

import re

import httpx
import pytest

from test_review_store import XSS_TEXT, ReviewServer, labels_in_db, make_inputs

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-http")
    inp = make_inputs(tmp / "in", n_queries=3)
    db = tmp / "review.sqlite"
    args = ["--corpus", str(inp["corpus"]), "--queries", str(inp["queries"]), "--pairs", str(inp["pairs"]),
            "--judgments", str(inp["judgments"])]  # fmt: skip
    srv = ReviewServer(db, *args).start()
    yield srv
    srv.stop()


def _login(url: str, name: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=10.0)
    token = re.search(r'data-token="([^"]+)"', c.get("/").text).group(1)
    r = c.post("/login", data={"name": name, "token": token})
    assert r.status_code == 303 and c.cookies.get("relforge_review_annotator") == name
    return c, token


def test_write_needs_the_token_and_malformed_requests_get_4xx(server):
    c, token = _login(server.url, "http-user")
    first = int(re.search(r"/pair/(\d+)", c.get("/next?queue=random").headers["location"]).group(1))
    ok = {"X-Review-Token": token}
    body = {"pair": first, "grade": 2, "queue": "random", "seconds": 3.2}
    cases = [
        ({}, body, 403),  # no write token
        ({"X-Review-Token": "wrong"}, body, 403),
        ({**ok, "Sec-Fetch-Site": "cross-site"}, body, 403),
        ({**ok, "Origin": "http://evil.example"}, body, 403),
        (ok, {**body, "grade": 9}, 422),  # off the scale
        (ok, {**body, "pair": 10**9}, 404),
        (ok, {"grade": 1}, 422),  # no pair
        (ok, {**body, "extra": 1}, 422),
        (ok, {**body, "queue": "../../etc"}, 422),
    ]
    for headers, payload, status in cases:
        r = c.post("/api/label", json=payload, headers=headers)
        assert r.status_code == status, (headers, payload, r.text)
        assert "error" in r.json()
    raw = [
        (b"{not json", "application/json", 400),
        (b'{"pair": 1, "grade": 1}', "text/plain", 415),  # what a cross-site form could send
        (b"[" * 20000, "application/json", 413),
    ]
    for data, ctype, status in raw:
        r = c.post("/api/label", content=data, headers={**ok, "Content-Type": ctype})
        assert r.status_code == status, (data[:20], r.text)
    assert labels_in_db(server.db, "http-user") == []  # nothing above was stored
    r = c.post("/api/label", json=body, headers=ok)
    assert r.status_code == 200 and r.json()["next"].startswith("/pair/")
    assert labels_in_db(server.db, "http-user") == [(first, 2)]
    assert (
        c.post(
            "/api/label", json=body, headers=ok, cookies={"relforge_review_annotator": "no spaces!"}
        ).status_code
        == 401
    )
    assert httpx.get(server.url + "/healthz").json() == {"ok": True}  # still up


def test_no_request_path_reaches_the_filesystem(server):
    c = httpx.Client(base_url=server.url)
    assert c.get("/static/review.js").status_code == 200
    for path in ("/static/..%2f..%2fstore.py", "/static/../app.py", "/static/%2e%2e/config.py",
                 "/static/review.js%00", "/pair/abc", "/pair/99999999", "/nope", "/static/"):  # fmt: skip
        r = c.get(path)
        assert 400 <= r.status_code < 500 and "import " not in r.text, path
    assert c.get("/next?queue=bogus", cookies={"relforge_review_annotator": "x"}).status_code == 400
    assert c.get("/next?queue=random&from=xyz", cookies={"relforge_review_annotator": "x"}).status_code == 400
    assert c.post("/login", data={"name": "ok"}).status_code == 403  # no form token
    assert c.get("/healthz").status_code == 200


def test_pages_escape_untrusted_text_and_send_a_csp(server):
    c, _ = _login(server.url, "reader")
    from relforge.review.store import Store

    pid = next(p.id for p in Store(server.db).pairs() if p.docid == "xss-doc")
    r = c.get(f"/pair/{pid}?queue=random")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>window.__pwned" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;window.__pwned" in r.text  # the title, as text
    assert re.search(r"&lt;<mark>img</mark> <mark>src</mark>=x <mark>onerror</mark>=&#34;window", r.text)
    assert 'href="javascript:' not in r.text  # a javascript: URL is shown as text, not a link
    assert XSS_TEXT.split(" ")[0] in r.text


def test_access_token_is_required_when_set(tmp_path):
    inp = make_inputs(tmp_path / "in", n_queries=1)
    db = tmp_path / "t.sqlite"
    tok = "s3cret-token-for-tests"
    srv = ReviewServer(db, "--corpus", str(inp["corpus"]), "--queries", str(inp["queries"]),
                       "--pairs", str(inp["pairs"]), "--token", tok).start()  # fmt: skip
    try:
        assert httpx.get(srv.url + "/").status_code == 401
        assert httpx.get(srv.url + "/?token=wrong").status_code == 401
        c = httpx.Client(base_url=srv.url)
        r = c.get(f"/?token={tok}")
        assert r.status_code == 303 and r.headers["location"] == "/"  # the token leaves the address bar
        assert c.get("/").status_code == 200  # ... into a cookie
        assert f"?token={tok}" in srv.log.read_text()  # the printed URL carries it
    finally:
        srv.stop()
