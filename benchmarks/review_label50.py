"""How long labelling 50 pairs takes in ``relforge review`` with the keyboard, as a new user would do it.

A real headless Chromium (Debian's /usr/bin/chromium via Playwright) plays the new user against the real
server on the bundled LiveQA-Med sample: it opens the printed URL, types a name at typing speed, clicks
"Start labelling", then for each of ``--pairs`` pairs *reads* (sleeps a modelled reading time: ``--decide``
seconds plus the page's query + document words at ``--wpm`` words/min, times ``--skim``), and presses the
grade the real LiveQA-Med assessor gave. Measured, not modelled: the start-up (URL -> first pair on
screen) and the tool's overhead per pair (key press -> next pair ready). The total is
start-up + reading (modelled) + overhead (measured). ``--time-scale 0.05`` sleeps 1/20 of the reading
time to finish quickly; the reported reading time is always the unscaled model.

    python benchmarks/review_label50.py                        # real pace (~15-25 min)
    python benchmarks/review_label50.py --time-scale 0.05      # same numbers, sleeps compressed
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from review_load import build_inputs, free_port, start_server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


def reading_seconds(page, args) -> float:
    words = len(re.findall(r"\w+", page.inner_text("#query-text") + " " + page.inner_text("#doc")))
    return args.decide + args.skim * words / (args.wpm / 60.0)


def session(url: str, human: dict, args) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1280, "height": 800})
        t0 = time.perf_counter()
        page.goto(url)
        page.click("#name")
        page.keyboard.type("newuser", delay=150)  # ~80 words/min typing
        page.keyboard.press("Enter")
        page.wait_for_selector("#go")
        page.click("#go")
        page.wait_for_selector("body[data-ready='1']")
        startup = time.perf_counter() - t0
        reading, overhead, grades = [], [], []
        for _ in range(args.pairs):
            r = reading_seconds(page, args)
            reading.append(r)
            time.sleep(r * args.time_scale)
            pid = page.get_attribute("#pair", "data-pair")
            q, d = (
                page.inner_text("#pair .query small").split(" · ")[0],
                page.inner_text("#doc h2 small").split(" · ")[0],
            )
            grade = human[q][d]
            grades.append(grade)
            before = page.url
            t1 = time.perf_counter()
            page.keyboard.press(str(grade))
            page.wait_for_url(lambda u, before=before: u != before)
            page.wait_for_selector("body[data-ready='1']")
            overhead.append(time.perf_counter() - t1)
            assert pid is not None
        wall = time.perf_counter() - t0
        b.close()
    return {"startup": startup, "reading": reading, "overhead": overhead, "grades": grades, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--wpm", type=float, default=250.0, help="reading speed, words per minute")
    ap.add_argument("--skim", type=float, default=0.5, help="share of the words actually read")
    ap.add_argument("--decide", type=float, default=1.5, help="seconds to decide, per pair")
    ap.add_argument("--time-scale", type=float, default=1.0, help="sleep this share of the reading time")
    args = ap.parse_args()
    from relforge.data import read_qrels

    work = Path(tempfile.mkdtemp(prefix="review-label50-"))
    inputs = build_inputs(work)
    human = read_qrels(inputs["pairs"])
    port = free_port()
    proc = start_server(inputs, work / "label50.sqlite", port, "--queue", "random")
    try:
        s = session(f"http://127.0.0.1:{port}/", human, args)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    oh = sorted(s["overhead"])
    total = s["startup"] + sum(s["reading"]) + sum(s["overhead"])
    print(json.dumps({
        "pairs": args.pairs,
        "reading_model": f"{args.decide} s + {args.skim} x words at {args.wpm:g} wpm",
        "startup_s_measured": round(s["startup"], 2),
        "reading_s_modelled": round(sum(s["reading"]), 1),
        "reading_s_per_pair_median": round(statistics.median(s["reading"]), 1),
        "overhead_s_measured": round(sum(oh), 2),
        "overhead_ms_p50_p95_max": [round(1000 * statistics.median(oh)), round(1000 * oh[int(0.95 * (len(oh) - 1))]),
                                    round(1000 * oh[-1])],  # fmt: skip
        "total_min": round(total / 60, 1),
        "wall_s_this_run": round(s["wall"], 1),
        "time_scale": args.time_scale,
        "grades_given": {g: s["grades"].count(g) for g in sorted(set(s["grades"]))},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
