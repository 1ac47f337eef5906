"""Load test of ``relforge review``: pages served per second under N concurrent clients on 127.0.0.1.

Starts the real server (a subprocess, one uvicorn process) on the bundled LiveQA-Med sample (51 questions,
1,147 human-graded pairs, a synthetic judge distribution per pair), then runs ``--clients`` concurrent
annotators for ``--seconds`` seconds. Each client logs in under its own name and loops: ``GET /next``
(a redirect) -> ``GET /pair/<id>`` (the full pair page), and on every ``--label-every``-th page it posts a
label (``POST /api/label``, committed to SQLite before the answer). It prints pages/s, requests/s,
latency percentiles and the errors (any non-2xx/3xx answer or exception); then it checks that every
label the server confirmed is in the database. Bounded: it stops after ``--seconds`` (and at most
``--max-requests``), and talks only to 127.0.0.1. The clients run on the same 2 cores as the server.

    python benchmarks/review_load.py                     # 20 clients, 30 s
    python benchmarks/review_load.py --clients 5 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_inputs(folder: Path, seed: int = 0) -> dict[str, Path]:
    """The LiveQA-Med sample as review input: its qrels as pairs, a synthetic judge (peaked on a grade
    that is the human grade 70% of the time). Returns the paths."""
    from relforge.data import read_qrels, write_jsonl
    from relforge.data.samples import sample_path

    src = sample_path("liveqa-med")
    human = read_qrels(src / "qrels" / "test.tsv")
    rng = random.Random(seed)
    rows = []
    for q in sorted(human, key=int):
        for d, g in sorted(human[q].items()):
            j = g if rng.random() < 0.7 else rng.randrange(4)
            w = [rng.random() * 0.3 for _ in range(4)]
            w[j] += 1.0
            probs = {str(i): w[i] / sum(w) for i in range(4)}
            rows.append({"qid": q, "docid": d, "grade": j, "probs": probs, "mode": "probs",
                         "expected": sum(i * p for i, p in enumerate(probs.values())), "model": "synthetic"})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "judgments.jsonl", rows)
    return {"corpus": src / "corpus.jsonl", "queries": src / "queries.jsonl",
            "pairs": src / "qrels" / "test.tsv", "judgments": folder / "judgments.jsonl"}  # fmt: skip


def start_server(inputs: dict[str, Path], db: Path, port: int, *extra: str) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "relforge", "review", "--db", str(db), "--port", str(port), *extra]
    for k in ("corpus", "queries", "pairs", "judgments"):
        cmd += [f"--{k}", str(inputs[k])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start in 60 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(i: int, base: str, stop: float, args, stats: dict) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=10.0) as c:
        token = re.search(r'data-token="([^"]+)"', (await c.get("/")).text).group(1)
        await c.post("/login", data={"name": f"load{i}", "token": token})
        n = 0
        while time.monotonic() < stop and stats["requests"] < args.max_requests:
            t0 = time.perf_counter()
            try:
                r = await c.get(f"/next?queue={args.queue}")
                stats["requests"] += 1
                loc = r.headers.get("location", "")
                if r.status_code != 303 or not loc.startswith("/pair/"):
                    stats["errors"].append(f"next -> {r.status_code} {loc}")
                    continue
                r = await c.get(loc)
                stats["requests"] += 1
                if r.status_code != 200 or 'id="pair"' not in r.text:
                    stats["errors"].append(f"page -> {r.status_code}")
                    continue
                stats["pages"] += 1
                stats["page_ms"].append(1000 * (time.perf_counter() - t0))
                n += 1
                if n % args.label_every == 0:
                    pid = int(loc.split("/")[2].split("?")[0])
                    body = {"pair": pid, "grade": n % 4, "queue": args.queue, "seconds": 1.0}
                    r = await c.post("/api/label", json=body, headers={"X-Review-Token": token})
                    stats["requests"] += 1
                    if r.status_code != 200:
                        stats["errors"].append(f"label -> {r.status_code}")
                    else:
                        stats["labels"] += 1
            except httpx.HTTPError as e:
                stats["errors"].append(f"{type(e).__name__}: {e}")


async def run_load(base: str, args) -> dict:
    stats = {"requests": 0, "pages": 0, "labels": 0, "errors": [], "page_ms": []}
    t0 = time.monotonic()
    stop = t0 + args.seconds
    await asyncio.gather(*(client(i, base, stop, args, stats) for i in range(args.clients)))
    stats["wall"] = time.monotonic() - t0
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--label-every", type=int, default=3, help="post a label on every k-th page of a client")
    ap.add_argument("--queue", default="random")
    ap.add_argument("--max-requests", type=int, default=500_000)
    ap.add_argument("--work", default=None, help="folder for the database (default: a temp folder)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="review-load-"))
    inputs = build_inputs(work)
    db, port = work / "load.sqlite", free_port()
    db.unlink(missing_ok=True)
    proc = start_server(inputs, db, port)
    try:
        stats = asyncio.run(run_load(f"http://127.0.0.1:{port}", args))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with sqlite3.connect(db) as con:
        stored = con.execute(
            "SELECT COUNT(*) FROM events WHERE kind='label' AND annotator LIKE 'load%'"
        ).fetchone()[0]
    ms = sorted(stats["page_ms"])
    q = statistics.quantiles(ms, n=100) if len(ms) > 1 else [float("nan")] * 99
    out = {
        "clients": args.clients,
        "seconds": round(stats["wall"], 1),
        "pages": stats["pages"],
        "pages_per_s": round(stats["pages"] / stats["wall"], 1),
        "requests_per_s": round(stats["requests"] / stats["wall"], 1),
        "labels_posted": stats["labels"],
        "labels_in_db": stored,
        "page_ms_p50_p95_p99": [round(q[49], 1), round(q[94], 1), round(q[98], 1)],
        "errors": len(stats["errors"]),
        "first_errors": stats["errors"][:5],
    }
    print(json.dumps(out, indent=2))
    if stats["errors"] or stored != stats["labels"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
