"""relforge review in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; nothing
downloads a browser) against the real server on 127.0.0.1: keyboard labelling survives a reload and a
SIGKILL of the server, hostile documents render inert, the balanced queue reaches its targets, and the
agreement page shows the hand-computed kappa. Set RELFORGE_REVIEW_SCREENSHOT=PATH to keep the screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from relforge.review.store import Store
from test_review_store import XSS_QUERY, XSS_TITLE, ReviewServer, labels_in_db, make_inputs

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    pw = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("uvicorn")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM}: `make browser` installs Debian's chromium")
    with pw.sync_playwright() as p:
        # Playwright gives every launch a fresh temporary --user-data-dir of its own
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _args(inp: dict[str, Path], *extra: str) -> list[str]:
    out = []
    for k in ("corpus", "queries", "pairs", "judgments"):
        out += [f"--{k}", str(inp[k])]
    return [*out, *extra]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-browser")
    inp = make_inputs(tmp / "in", n_queries=6)
    srv = ReviewServer(tmp / "review.sqlite", *_args(inp)).start()
    yield srv
    srv.stop()


def _page(browser, url: str, name: str, viewport=(1400, 900)):
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("dialog", lambda d: (page.errors.append("dialog: " + d.message), d.dismiss()))
    page.goto(url + "/")
    page.fill("#name", name)
    page.click("#start")
    page.wait_for_selector("#go")
    return page


def _ready(page) -> None:
    page.wait_for_selector("body[data-ready='1']")


def _press(page, key: str) -> None:
    """Press a key that saves and moves on; wait for the next page."""
    before = page.url
    page.keyboard.press(key)
    page.wait_for_url(lambda u: u != before)
    _ready(page)


def _pair_id(page) -> int:
    return int(page.get_attribute("#pair", "data-pair"))


def test_keyboard_labels_survive_reload_and_sigkill(browser, tmp_path):
    inp = make_inputs(tmp_path / "in", n_queries=4)
    srv = ReviewServer(tmp_path / "review.sqlite", *_args(inp)).start()
    try:
        page = _page(browser, srv.url, "alice")
        page.goto(srv.url + "/next?queue=random")
        _ready(page)
        given = []
        for key in "21030":
            given.append((_pair_id(page), int(key)))
            _press(page, key)
        odd = _pair_id(page)  # f flags (and stays), n + Enter saves a note, s skips to the next pair
        page.keyboard.press("f")
        page.wait_for_selector("#flag-state:text('flagged')")
        page.keyboard.press("n")
        page.keyboard.type("answer is about children, query about adults")
        page.keyboard.press("Enter")
        page.wait_for_selector("#status:text('note saved')")
        _press(page, "s")
        page.reload()
        _ready(page)
        kinds = [e.kind for e in Store(srv.db).events(pair_id=odd, annotator="alice")]
        assert kinds == ["flag", "note", "skip"] and _pair_id(page) not in {odd, *(p for p, _ in given)}
        for pid, grade in given:  # every label is on its page after the reload
            page.goto(f"{srv.url}/pair/{pid}?queue=random")
            assert page.inner_text("#my-label") == f"your label: {grade}"
            assert page.get_attribute(f"button.grade[data-grade='{grade}']", "aria-pressed") == "true"
        assert labels_in_db(srv.db, "alice") == given
        page.goto(srv.url + "/next?queue=random")  # mid-session: a fresh pair is open in the browser
        _ready(page)
        srv.kill()  # SIGKILL, then a restart on the same port and database
        srv.start()
        given.append((_pair_id(page), 3))
        _press(page, "3")  # the open page goes on working: the write token lives in the database
        assert labels_in_db(srv.db, "alice") == given  # every committed label, in order
        page.goto(srv.url + "/")
        assert "you labelled 6." in page.inner_text("main")
        page.goto(f"{srv.url}/pair/{given[-2][0]}?queue=random")  # labelled before the kill
        assert page.inner_text("#my-label") == f"your label: {given[-2][1]}"
        _ready(page)
        page.keyboard.press("k")  # previous / next walk the annotator's own history
        page.wait_for_url(f"{srv.url}/pair/{given[-3][0]}?queue=random")
        assert page.errors == []
    finally:
        srv.stop()


def test_hostile_document_renders_inert(browser, shared):
    page = _page(browser, shared.url, "mallory")
    pid = next(p.id for p in Store(shared.db).pairs() if p.docid == "xss-doc")
    page.goto(f"{shared.url}/pair/{pid}?queue=random")
    _ready(page)
    assert page.evaluate("window.__pwned") is None
    assert page.inner_text("#doc-title") == XSS_TITLE  # shown as text
    assert "<img src=x onerror=" in page.inner_text("#doc-text")
    assert page.inner_text("#query-text") == XSS_QUERY
    assert page.locator("#doc img, #doc script, #query-text img, #query-text b").count() == 0
    assert page.locator("#doc-url a").count() == 0  # javascript: URL is not a link
    assert page.locator("#doc-text mark").count() >= 2  # query terms highlighted on the escaped text
    page.keyboard.press("h")  # the judge's view toggles; still nothing runs
    assert page.is_visible("#judge") and page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_two_annotators_kappa_on_the_page(browser, shared):
    carol, dave = "01230123", "01231120"
    seen = {}
    for name, grades in (("carol", carol), ("dave", dave)):
        page = _page(browser, shared.url, name)
        page.goto(shared.url + "/next?queue=random")  # one fixed order: both get the same 8 pairs
        _ready(page)
        seen[name] = []
        for key in grades:
            seen[name].append(_pair_id(page))
            _press(page, key)
        page.context.close()
    assert seen["carol"] == seen["dave"]
    page = _page(browser, shared.url, "carol")
    page.goto(shared.url + "/agreement")
    row = page.locator("#annotator-pairs tr[data-a='carol'][data-b='dave']")
    # by hand: p_o = 6/8, p_e = (2*2 + 2*3 + 2*2 + 2*1)/64 = 1/4, kappa = (3/4 - 1/4)/(3/4) = 0.667;
    # quadratic weights (i-j)^2/9: 1 - ((1/9 + 9/9)/8) / (1/4) = 0.444
    assert row.locator("td.kappa").inner_text() == "0.667"
    assert row.locator("td.wkappa").inner_text() == "0.444"
    assert page.locator("#judge-human").count() == 1


def test_balanced_queue_reaches_its_targets(browser, tmp_path):
    inp = make_inputs(tmp_path / "in", n_queries=10)
    srv = ReviewServer(tmp_path / "b.sqlite", *_args(inp, "--train-target", "8", "--val-target", "4",
                                                    "--val-fraction", "0.3")).start()  # fmt: skip
    try:
        page = _page(browser, srv.url, "bob")
        page.click("#go")  # the default queue is balanced
        _ready(page)
        n = 0
        while page.locator("#pair").count():
            grade = page.text_content("#judge-grade").strip()  # this annotator agrees with the judge
            _press(page, grade)
            n += 1
            assert n <= 12
        assert page.is_visible("#done") and n == 12
        for split, per_class in (("train", "2/2"), ("validation", "1/1")):
            counts = page.locator(f".split[data-split='{split}'] .cls-count").all_inner_texts()
            assert counts == [per_class] * 4
    finally:
        srv.stop()


def test_screenshot_of_a_pair(browser, shared, tmp_path):
    page = _page(browser, shared.url, "alice", viewport=(1280, 880))
    store = Store(shared.db)
    pid = next(
        p.id
        for p in store.pairs()
        if p.qid == "9" and p.judge_grade and store.doc(p.docid)["text"].count(" ") > 60
    )
    page.goto(f"{shared.url}/pair/{pid}?queue=balanced")
    _ready(page)
    page.keyboard.press("h")
    out = tmp_path / "review.png"
    page.screenshot(path=str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    if os.environ.get("RELFORGE_REVIEW_SCREENSHOT"):
        shutil.copy(out, os.environ["RELFORGE_REVIEW_SCREENSHOT"])
