"""Judging throughput through the Ray engine: 1 vs 2 endpoints, and Ray vs the local engine on one
endpoint (Ray's overhead), as ratios measured in one run.

Servers: relforge's own OpenAI-compatible server (``relforge llm serve``'s LLMServer) on 127.0.0.1 over a
tiny random 2-layer Llama with SmolLM2's tokenizer (so the model costs almost no CPU), each wrapped in a
**service-time** layer: at most ``--slots`` requests served at once, each held ``--service-ms``. That
models a GPU vLLM server (fixed capacity ``slots / service`` requests/s, no CPU used on this box), which
is what the engine has to keep busy; with a real model on these 2 shared cores the servers themselves
would be the bottleneck and two of them on one machine could not scale. Pairs are judged in probs mode
(``token_logprobs``: one request per pair), fresh shards for every Ray run.

Run:  python benchmarks/ray_judge.py [--pairs 480] [--service-ms 100] [--slots 4] [--concurrency 4]
Prints pairs/s per setup and the ratios; wall time includes Ray's job start-up (actors), printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ServiceTime:
    """ASGI layer: a server with ``slots`` parallel slots, each request holding one for ``seconds``."""

    def __init__(self, app, slots: int, seconds: float):
        self.app, self.slots, self.seconds = app, slots, seconds
        self.sem: asyncio.Semaphore | None = None
        self.chat = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.sem = self.sem or asyncio.Semaphore(self.slots)
            self.chat += 1
            async with self.sem:
                await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def tiny_model(folder: Path) -> str:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests/tiny.py
    from tests.tiny import save_tiny_llama

    from relforge.models import resolve_model

    return save_tiny_llama(folder, resolve_model("smollm2"))


def data(n_pairs: int):
    from relforge.types import Document, Query

    n_q = max(1, n_pairs // 8)
    topics = ["anemia iron", "flu fever", "knee surgery", "diabetes insulin", "asthma"]
    docs = {f"d{i}": Document(f"d{i}", f"{topics[i % 5]} " * (3 + i % 5), f"Doc {i}") for i in range(8)}
    qs = {f"q{i}": Query(f"q{i}", f"What about {topics[i % 5]} case {i}?") for i in range(n_q)}
    pairs = [(q, d) for q in qs for d in docs][:n_pairs]
    return qs, docs, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=480)
    ap.add_argument("--service-ms", type=float, default=100.0)
    ap.add_argument("--slots", type=int, default=4, help="parallel requests per server")
    ap.add_argument("--concurrency", type=int, default=4, help="Ray HTTP actors")
    ap.add_argument("--batch-size", type=int, default=8, help="Ray HTTP batch size")
    args = ap.parse_args()

    import ray

    from relforge.engine import EngineConfig
    from relforge.engine.cluster import _runtime_env
    from relforge.engine.ray_llm import open_ray_llm
    from relforge.judge.judge import judge_pairs
    from relforge.judge.prompt import JudgeTemplate
    from relforge.llm import load_llm
    from relforge.llm.hf import HFBackend
    from relforge.llm.serve import LLMServer

    tmp = Path(tempfile.mkdtemp(prefix="relforge-raybench-"))
    model = tiny_model(tmp / "tiny")
    sec = args.service_ms / 1000
    srvs = [
        LLMServer(
            HFBackend.load(model, batch_size=4, progress=False),
            model_name="tiny",
            max_concurrency=256,
            middleware=lambda app: ServiceTime(app, args.slots, sec),
        )
        for _ in range(2)
    ]
    qs, docs, pairs = data(args.pairs)
    tpl = JudgeTemplate.load("relevance-0to3")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=_runtime_env())
    print(f"ray.init: {time.perf_counter() - t0:.1f} s", flush=True)
    cap = args.slots / sec if sec else float("inf")
    print(
        f"{len(pairs)} pairs; each server: {args.slots} slots x {args.service_ms:g} ms = {cap:.0f} req/s max"
    )
    res: dict[str, float] = {}
    steady: dict[int, float] = {}
    with srvs[0].running(), srvs[1].running():
        urls = [s.url for s in srvs]

        def judge(llm) -> tuple[float, list]:
            t = time.perf_counter()
            js = judge_pairs(
                llm, tpl, qs, docs, pairs, progress=False, max_doc_tokens=32, batch_size=len(pairs)
            )
            return time.perf_counter() - t, js

        local = load_llm(
            f"openai:{urls[0]}#tiny", cache=None, progress=False, concurrency=args.concurrency * 2
        )
        judge(local)  # probe + warm-up, not timed
        res["local engine, 1 endpoint"], ref = judge(local)
        eng = EngineConfig(kind="ray", concurrency=args.concurrency, batch_size=args.batch_size)
        warm = open_ray_llm([f"openai:{urls[0]}#tiny"], eng, tmp / "warm", cache=False, progress=False)
        t = time.perf_counter()
        warm.score_choices([[{"role": "user", "content": f"warm-up {i}"}] for i in range(16)], tpl.labels)
        print(
            f"warm-up Ray job (16 requests; cold worker processes): {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        warm.close()
        for n in (1, 2):
            work = tmp / f"ray{n}"
            llm = open_ray_llm([f"openai:{u}#tiny" for u in urls[:n]], eng, work, cache=False, progress=False)
            llm.primary.resolve_score_method(tpl.labels)  # probe outside the timing
            res[f"ray engine, {n} endpoint(s)"], js = judge(llm)
            llm.close()
            assert [j.grade for j in js] == [j.grade for j in ref], "ray and local judgments differ"
            job = llm.stats.extra["last_job"]
            steady[n] = job["steady_calls_per_s"]
            print(
                f"  ray {n}: {llm.stats.extra['ray_seconds']:.1f} s in the Ray job, first result after "
                f"{job['first_result_s']:.1f} s, then {steady[n]:.2f} pairs/s",
                flush=True,
            )
            shutil.rmtree(work)
    ray.shutdown()
    for name, s in res.items():
        print(f"{name:28s} {s:7.1f} s  {len(pairs) / s:7.2f} pairs/s")
    r1, r2, lo = (
        res["ray engine, 1 endpoint(s)"],
        res["ray engine, 2 endpoint(s)"],
        res["local engine, 1 endpoint"],
    )
    print(f"ray 2 endpoints / ray 1 endpoint (pairs/s): {r1 / r2:.2f}x")
    print(f"ray 1 endpoint / local 1 endpoint (pairs/s): {lo / r1:.2f}x (Ray's overhead, start-up included)")
    print(
        f"steady state (after the first result): ray 2 / ray 1 endpoints: {steady[2] / steady[1]:.2f}x; ray 1 / local: "
        f"{steady[1] / (len(pairs) / lo):.2f}x"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
