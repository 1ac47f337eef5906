"""Bounded local load test of `relforge llm serve`: 20 concurrent clients for 30 s on 127.0.0.1.

Starts a real `relforge llm serve` subprocess (the tiny random Llama with SmolLM2's tokenizer by default,
or --llm smollm2) with an API key, then runs N asyncio clients that each loop, picking at random:

- valid: a 1-token logprobs scoring request (as the judge sends) or a short generation;
- oversize: a body over the server's cap (expects 413);
- huge declared: a Content-Length of 10 GB with no body (expects 413, nothing read);
- malformed: broken JSON / wrong field types (expects 400);
- no key: a valid body without the key (expects 401);
- dropped: a connection closed half-way through the body.

Prints requests by kind and status, latency percentiles of valid requests, the server's RSS sampled
every second (start, max, end) and whether it stayed up. Pass criteria: every valid request answered 200,
every invalid one its 4xx, the server alive at the end, RSS growth bounded (< 300 MB over the run).

Run:  HF_HUB_OFFLINE=1 python benchmarks/serve_load.py [--clients 20] [--seconds 30] [--llm smollm2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

KEY = "load-test-key"
MSG = [{"role": "user", "content": "Is aspirin an anticoagulant? Answer with a grade 0-3."}]
EXPECT = {"valid": 200, "oversize": 413, "huge": 413, "malformed": 400, "nokey": 401, "dropped": None}
WEIGHTS = {"valid": 10, "oversize": 2, "huge": 1, "malformed": 2, "nokey": 1, "dropped": 1}


def tiny_model(out: Path) -> str:
    """The tests' tiny random Llama with SmolLM2's tokenizer, saved under ``out``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from relforge.models import resolve_model

    gguf = resolve_model("smollm2")
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


async def one(kind: str, base: str, client, port: int) -> tuple[int | None, float]:

    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{base}/v1/chat/completions"
    t0 = time.perf_counter()
    if kind == "valid":
        if random.random() < 0.7:
            body = {"messages": MSG, "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 5}
        else:
            body = {"messages": MSG, "max_tokens": 8, "temperature": 0}
        r = await client.post(url, json=body, headers=auth)
        return r.status_code, time.perf_counter() - t0
    if kind == "oversize":
        body = {"messages": [{"role": "user", "content": "x" * (2 << 20)}]}
        r = await client.post(url, json=body, headers=auth)
        return r.status_code, time.perf_counter() - t0
    if kind == "malformed":
        content = random.choice([b"{broken", b'{"messages": "no"}', b'{"messages": [], "max_tokens": "x"}'])
        r = await client.post(url, content=content, headers=auth)
        return r.status_code, time.perf_counter() - t0
    if kind == "nokey":
        r = await client.post(url, json={"messages": MSG, "max_tokens": 1})
        return r.status_code, time.perf_counter() - t0
    # raw sockets: a 10 GB Content-Length that never comes, or a body cut half-way
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if kind == "huge":
            writer.write(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Length: 10000000000\r\n\r\n".encode()
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            return (int(line.split()[1]) if line else None), time.perf_counter() - t0
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f'Content-Length: 400\r\n\r\n{{"messages": ['.encode()
        )
        await writer.drain()
        return None, time.perf_counter() - t0
    finally:
        writer.close()


async def load(base: str, port: int, clients: int, seconds: float) -> tuple[Counter, list[float], list]:
    import httpx

    counts: Counter = Counter()
    latencies: list[float] = []
    failures: list = []
    deadline = time.monotonic() + seconds
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        async with httpx.AsyncClient(timeout=120) as client:
            while time.monotonic() < deadline:
                kind = rnd.choices(kinds, weights)[0]
                try:
                    status, dt = await one(kind, base, client, port)
                except Exception as e:  # a client-side failure is a server failure here
                    status, dt = f"error {type(e).__name__}", 0.0
                counts[(kind, status)] += 1
                if EXPECT[kind] is not None and status != EXPECT[kind]:
                    failures.append((kind, status))
                if kind == "valid" and status == 200:
                    latencies.append(dt)

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return counts, latencies, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--llm", default=None, help="model to serve (default: a tiny random Llama)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        llm = args.llm or tiny_model(Path(tmp) / "tiny")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "LOAD_KEY": KEY}
        log = open(Path(tmp) / "serve.log", "w+")  # noqa: SIM115
        cmd = [sys.executable, "-m", "relforge.cli", "llm", "serve", "--llm", llm, "--port", str(port)]
        cmd += ["--no-cache", "--api-key-env", "LOAD_KEY", "--max-tokens", "16"]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            rss = [rss_mb(proc.pid)]

            async def run():
                async def sample():
                    while True:
                        await asyncio.sleep(1)
                        rss.append(rss_mb(proc.pid))

                sampler = asyncio.ensure_future(sample())
                try:
                    return await load(base, port, args.clients, args.seconds)
                finally:
                    sampler.cancel()

            t0 = time.perf_counter()
            counts, lat, failures = asyncio.run(run())
            wall = time.perf_counter() - t0
            alive = proc.poll() is None and httpx.get(f"{base}/health", timeout=5).status_code == 200
            rss.append(rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log.seek(0)
        text = log.read()
    report(counts, lat, failures, rss, alive, wall, args, text)


def report(counts, lat, failures, rss, alive, wall, args, log_text) -> None:
    import numpy as np

    total = sum(counts.values())
    print(
        f"{args.clients} clients, {wall:.1f} s, {total} requests ({total / wall:.1f}/s), model {args.llm or 'tiny'}"
    )
    for (kind, status), n in sorted(counts.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        print(f"  {kind:<10} -> {status}: {n}")
    if lat:
        p = np.percentile(lat, [50, 90, 99])
        print(f"valid latency: p50 {p[0] * 1000:.0f} ms, p90 {p[1] * 1000:.0f} ms, p99 {p[2] * 1000:.0f} ms")
    print(
        f"server RSS MB: start {rss[0]:.0f}, max {max(rss):.0f}, end {rss[-1]:.0f} (growth {max(rss) - rss[0]:.0f})"
    )
    tracebacks = log_text.count("Traceback")
    print(
        f"server alive at the end: {alive}; tracebacks in its log: {tracebacks}; unexpected answers: {len(failures)}"
    )
    ok = alive and not failures and tracebacks == 0 and max(rss) - rss[0] < 300
    print(
        f"RESULT serve load: {'PASS' if ok else 'FAIL'}"
        + (f" (first failures: {failures[:5]})" if failures else "")
    )


if __name__ == "__main__":
    main()
