"""The Ray engine on a real local Ray cluster (``ray.init(num_cpus=2)``) against real OpenAI-compatible
servers on 127.0.0.1 (relforge's own server over the tiny model; one of them a `relforge llm serve`
subprocess that is SIGKILLed): same judgments as the local engine, an endpoint killed mid-run, the driver
SIGKILLed mid-run and resumed, a second driver refused, dense encoding equal to local."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from relforge.cli import main
from relforge.engine.shards import ShardStore
from relforge.judge.judge import read_judgments

ray = pytest.importorskip("ray")

SRC = str(Path(__file__).resolve().parents[1] / "src")
N_Q, N_D = 5, 8  # 40 pairs


class Counting:
    """ASGI middleware: counts chat requests, optionally slows them (so a run can be killed mid-way)."""

    def __init__(self, app):
        self.app = app
        self.chat = 0
        self.delay = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.chat += 1
            if self.delay:
                await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def cluster():
    from relforge.engine.cluster import _runtime_env

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=_runtime_env())
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def servers(tiny_llm_dir):
    """Two servers, each over its own copy of the tiny model; yields their counting layers (with ``url``)."""
    from relforge.llm.hf import HFBackend
    from relforge.llm.serve import LLMServer

    srvs = [
        LLMServer(
            HFBackend.load(tiny_llm_dir, batch_size=4, progress=False), model_name="tiny", middleware=Counting
        )
        for _ in range(2)
    ]
    with srvs[0].running(), srvs[1].running():
        for s in srvs:
            s.app.url = s.url
        yield [s.app for s in srvs]


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    d = tmp_path_factory.mktemp("beir-ray")
    topics = ["anemia and iron", "flu fever", "knee surgery", "diabetes insulin", "asthma inhaler"]
    docs = [
        {"_id": f"d{i}", "title": f"Doc {i}", "text": f"{topics[i % 5]} " * (2 + i % 4) + f"note {i}."}
        for i in range(N_D)
    ]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    qs = [{"_id": f"q{i}", "text": f"What about {topics[i]}?"} for i in range(N_Q)]
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in qs))
    (d / "pairs.tsv").write_text("".join(f"q{q}\td{k}\n" for q in range(N_Q) for k in range(N_D)))
    return d


def _args(beir, out, llms, *extra):
    args = ["judge", "--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl")]
    args += ["--pairs", str(beir / "pairs.tsv"), "--out", str(out), "--max-doc-tokens", "32", "--no-progress"]
    for u in llms:
        args += ["--llm", f"openai:{u}#tiny"]
    return [*args, *extra]


@pytest.fixture(scope="module")
def reference(beir, servers, tmp_path_factory):
    """The local engine's judgments through the first server."""
    out = tmp_path_factory.mktemp("ref") / "local.jsonl"
    assert main(_args(beir, out, [servers[0].url], "--no-cache")) == 0
    return {(j.qid, j.docid): j for j in read_judgments(out)}


def _same(js, reference):
    assert len(js) == len(reference) == N_Q * N_D
    assert len({(j.qid, j.docid) for j in js}) == len(js)  # every pair exactly once
    for j in js:
        r = reference[(j.qid, j.docid)]
        assert j.grade == r.grade
        assert max(abs(j.probs[k] - r.probs[k]) for k in r.probs) < 1e-6


def _shard_lines(workdir: Path) -> int:
    return sum(p.read_text().count("\n") for p in workdir.glob("shard-*.jsonl"))


def _wait_quiet(servers, seconds: float = 1.5) -> list[int]:
    """Request counts once no request arrived for ``seconds`` (a killed job's actors may still send)."""
    last = None
    while True:
        now = [s.chat for s in servers]
        if now == last:
            return now
        last = now
        time.sleep(seconds)


def test_ray_judgments_equal_local_and_use_both_endpoints(cluster, beir, servers, reference, tmp_path):
    before = [s.chat for s in servers]
    out = tmp_path / "ray.jsonl"
    args = _args(beir, out, [s.url for s in servers], "--engine", "ray", "--no-cache")
    assert main(args) == 0
    _same(read_judgments(out), reference)
    sent = [s.chat - b for s, b in zip(servers, before, strict=True)]
    assert sent[1] > 0 and sum(sent) >= N_Q * N_D  # round robin over both (+ the probe on the first)
    summary = json.loads((tmp_path / "ray.summary.json").read_text())
    assert summary["llm_stats"]["engine"] == "ray" and summary["llm_stats"]["misses"] == N_Q * N_D
    # a rerun reads everything back from the shards: only the scoring-method probe (--no-cache: no memo)
    now = [s.chat for s in servers]
    assert main([*args, "--overwrite"]) == 0  # the output file exists now (relforge.outputs guard)
    assert [s.chat for s in servers] == [now[0] + 1, now[1]]
    _same(read_judgments(out), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _kill_one_endpoint_mid_run(beir, servers, tiny_llm_dir, tmp_path):
    """Judge over a healthy endpoint and a real `relforge llm serve` that is SIGKILLed after >= 6 results;
    returns (exit codes, results written when it was killed, healthy endpoint's calls before, output)."""
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "relforge.cli", "llm", "serve", "--llm", tiny_llm_dir, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--no-cache"], stdout=log, stderr=subprocess.STDOUT, env=_env())
    doomed = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"server did not start: {(tmp_path / 'serve.log').read_text()}")
        out = tmp_path / "ray.jsonl"
        before = servers[0].chat
        servers[0].delay = 0.1
        args = _args(beir, out, [servers[0].url, doomed], "--engine", "ray", "--no-cache")
        import threading

        codes = []
        t = threading.Thread(target=lambda: codes.append(main(args)))
        t.start()
        deadline = time.monotonic() + 240
        while _shard_lines(tmp_path / "ray.jsonl.ray") < 6 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = _shard_lines(tmp_path / "ray.jsonl.ray")
        proc.send_signal(signal.SIGKILL)
        t.join(timeout=300)
    finally:
        servers[0].delay = 0.0
        proc.kill()
        proc.wait()
    return codes, killed_at, before, out


def test_endpoint_sigkilled_mid_run_finishes_on_the_other(
    cluster, beir, servers, reference, tiny_llm_dir, tmp_path
):
    for attempt in range(3):  # the results can land in one burst before the kill: then run it again
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        codes, killed_at, before, out = _kill_one_endpoint_mid_run(beir, servers, tiny_llm_dir, work)
        assert codes == [0]
        if killed_at < N_Q * N_D:
            break
    assert killed_at < N_Q * N_D  # it really died mid-run
    assert servers[0].chat - before <= N_Q * N_D  # (probe + pairs): the doomed endpoint had judged some
    _same(read_judgments(out), reference)
    summary = json.loads((work / "ray.summary.json").read_text())
    assert summary["pairs"] == N_Q * N_D and summary["unparsed"] == 0


def test_driver_sigkilled_mid_run_resumes_without_recomputing(cluster, beir, servers, reference, tmp_path):
    out, cache = tmp_path / "ray.jsonl", tmp_path / "memo.sqlite"
    args = _args(beir, out, [s.url for s in servers], "--engine", "ray", "--ray-address", "auto")
    args += ["--cache", str(cache)]  # remembers the probed scoring method: the rerun sends no probe
    work = tmp_path / "ray.jsonl.ray"
    for s in servers:
        s.delay = 0.15
    try:
        drv = subprocess.Popen(
            [sys.executable, "-m", "relforge.cli", *args],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 240
        while _shard_lines(work) < 8 and drv.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        drv.send_signal(signal.SIGKILL)
        drv.wait()
        assert drv.returncode == -signal.SIGKILL, drv.stderr.read().decode()[-2000:]
        # the killed job's actors may go on until Ray reaps them: still slowed, they cannot race to the end
        before = _wait_quiet(servers)
    finally:
        for s in servers:
            s.delay = 0.0
    with ShardStore(work) as st:
        finished = len(st.done)
    # usually mid-run; if the orphaned actors still finished every pair, the rerun must send nothing at all
    assert 8 <= finished <= N_Q * N_D and not out.exists()
    assert main(args) == 0  # this process: the same cluster, resumed from the shards
    sent = sum(s.chat for s in servers) - sum(before)
    assert sent == N_Q * N_D - finished  # nothing finished was recomputed, no probe
    _same(read_judgments(out), reference)


def test_second_driver_on_the_same_output_is_refused(beir, servers, tmp_path, capsys):
    out = tmp_path / "j.jsonl"
    with ShardStore(tmp_path / "j.jsonl.ray"):
        code = main(_args(beir, out, [servers[0].url], "--engine", "ray", "--no-cache"))
    assert code == 2
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert not out.exists()


def test_shards_ignore_a_torn_last_line_and_count_it(tmp_path):
    work = tmp_path / "w"
    with ShardStore(work) as st:
        st.add({"key": "a", "result": 1})
        st.add({"key": "b", "result": 2})
    shard = next(work.glob("shard-*.jsonl"))
    with open(shard, "a") as fh:
        fh.write('{"key": "c", "res')  # a kill mid-write
    with ShardStore(work) as st:
        assert sorted(st.done) == ["a", "b"] and st.torn == 1 and st.duplicates == 0


def test_dense_encoding_on_ray_equals_local(cluster, tmp_path):
    import numpy as np

    from relforge.engine import EngineConfig
    from relforge.retrieve.dense import encode_corpus
    from relforge.types import Document

    docs = [Document(f"d{i}", f"text number {i} about " + "health " * (i % 7), f"T{i}") for i in range(30)]
    ids, local = encode_corpus(docs, "minilm", chunk_size=8, progress=False)
    eng = EngineConfig(kind="ray", dense_num_cpus=1)
    # one part already on disk (an interrupted run) is read back, the rest encoded by the actor
    cache = tmp_path / "emb"
    from relforge.retrieve.dense import _cache_file

    parts = _cache_file(cache, "minilm", docs).with_suffix(".parts")
    parts.mkdir(parents=True)
    np.save(parts / f"{8:09d}.npy", np.zeros_like(local[8:16]))  # marked: proves it is not recomputed
    ids2, remote = encode_corpus(docs, "minilm", chunk_size=8, progress=False, engine=eng, cache_dir=cache)
    assert ids2 == ids and remote.shape == local.shape
    assert not remote[8:16].any()
    keep = np.r_[0:8, 16:30]
    assert float(np.abs(remote[keep] - local[keep]).max()) < 1e-5
    assert _cache_file(cache, "minilm", docs).is_file() and not parts.exists()


def test_generate_on_ray_equals_local(cluster, beir, servers, tmp_path):
    (tmp_path / "g.yaml").write_text("filters:\n  min_words: 1\n  check_style: false\n", encoding="utf-8")

    def run(name, *extra):
        out = tmp_path / f"{name}.jsonl"
        args = ["generate", "--corpus", str(beir / "corpus.jsonl"), "--out", str(out), "--per-doc", "1"]
        args += [
            "--temperature",
            "0",
            "--max-new-tokens",
            "8",
            "--config",
            str(tmp_path / "g.yaml"),
            "--no-cache",
        ]
        args += ["--rejects-out", str(tmp_path / f"{name}.rej.jsonl"), *extra]
        assert main(args) == 0
        kept = [(q["metadata"]["doc_id"], q["text"]) for q in map(json.loads, out.read_text().splitlines())]
        rej = [
            (r["doc_id"], r["raw"], r["reason"])
            for r in map(json.loads, (tmp_path / f"{name}.rej.jsonl").read_text().splitlines())
        ]
        return kept, rej

    local = run("local", "--llm", f"openai:{servers[0].url}#tiny")
    ray_ = run("ray", "--engine", "ray", *[x for s in servers for x in ("--llm", f"openai:{s.url}#tiny")])
    assert ray_ == local and len(local[0]) + len(local[1]) == N_D
    assert _shard_lines(tmp_path / "ray.jsonl.ray") == N_D  # the completions went through the Ray engine
