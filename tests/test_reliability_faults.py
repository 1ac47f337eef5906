"""Issue 15, fault injection: SIGKILL the pipeline at a random point of EACH stage, rerun, and get the
same artifacts as an uninterrupted run, with no finished LLM call computed twice.

One artifacts folder is killed once per stage in turn; every restart resumes it. An LLM stage dies by
its own SIGKILL right after a seeded random number of stored calls (``$RELFORGE_FAULT_KILL_AFTER_CALLS``:
a timed kill raced the tiny, fast generate stage on a loaded CI box and landed after it had finished);
any other stage is killed a seeded random delay after it is recorded as running. The full test runs every stage of the tiny
config (@slow); ``test_kill_during_generate`` is the fast subset in ``make test``."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.test_pipeline_e2e import _stage_status, _write, tiny_config

from relforge.llm.cache import FAULT_ENV

#: files compared byte for byte: everything but timings, logs, the cache, the manifest and the report
COMPARED = (".jsonl", ".trec", ".tsv", ".json")
NOT_COMPARED = ("manifest.json", "summary.json", "training_summary.json", "trainer_state.json")


def _cmd(cfg: Path, out: Path, to: str | None) -> list[str]:
    return [sys.executable, "-m", "relforge", "run", str(cfg), "--out", str(out)] + (
        ["--to", to] if to else []
    )


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _kill_during(cmd: list[str], out: Path, stage: str, delay: float) -> str:
    """Start the run, wait for (non-LLM) ``stage`` to be running, wait ``delay`` s more, SIGKILL. Returns
    where the kill landed (``running``: inside ``stage``; ``done``: the stage finished first; ``exited``)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if _stage_status(out, stage) in ("running", "done"):
                break
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return "exited"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "running" if _stage_status(out, stage) == "running" else "done"


def _crash_after_calls(cmd: list[str], out: Path, stage: str, n: int) -> str:
    """Run with the cache's fault hook: the process SIGKILLs itself right after its ``n``-th stored call
    of ``stage``'s kind. Returns where the kill landed, as :func:`_kill_during`."""
    env = {**_env(), FAULT_ENV: f"{LLM_KIND[stage]}:{n}"}
    rc = subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode
    if rc != -signal.SIGKILL:
        return "exited"
    return "running" if _stage_status(out, stage) == "running" else "done"


#: JSON keys holding timings (a rate or a duration differs between any two runs)
TIMING_KEYS = (
    "pairs_per_s",
    "elapsed_s",
    "wall_s",
    "cpu_s",
    "seconds",
    "train_time_s",
    "started",
    "finished",
)


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _artifacts(out: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted(out.rglob("*")):
        if not (p.is_file() and p.suffix in COMPARED and p.name not in NOT_COMPARED):
            continue
        if ".checkpoints" in p.parts or p.name.startswith("."):
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            data = json.dumps(_untimed(json.loads(data)), sort_keys=True).encode()
        files[str(p.relative_to(out))] = data
    return files


def _rows_by_kind(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
                return dict(c.execute("SELECT kind, COUNT(*) FROM llm_calls GROUP BY kind").fetchall())
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # created, schema not written yet
                return {}
            time.sleep(0.1)
    raise AssertionError(f"cannot read {db}")


#: the kind of LLM call each LLM stage makes (cache rows are counted per kind)
LLM_KIND = {"generate": "generate", "judge": "score", "agreement": "score"}


def _calls_until_mid_stage(m_ref: dict, stages: list[str], stage: str, rows: dict, rng) -> int:
    """For the cache hook: how many stored calls of ``stage``'s kind the next process makes before it
    dies inside ``stage`` (first the calls earlier stages of that kind still owe, then a random share of
    this stage's own), or 0 when ``stage`` has no call left to compute (then it gets a timed kill)."""
    kind = LLM_KIND.get(stage)
    if kind is None:
        return 0
    i = stages.index(stage)
    earlier = sum(m_ref["stages"][e].get("cache_misses", 0) for e in stages[:i] if LLM_KIND.get(e) == kind)
    stored = rows.get(kind, 0)
    left = m_ref["stages"][stage].get("cache_misses", 0) - max(0, stored - earlier)
    if left < 1:
        return 0
    return max(0, earlier - stored) + rng.randint(1, max(1, left - 1))


def _fault_run(
    tmp_path: Path, cfg_dict: dict, to: str | None, seed: int, kill: list[str] | None = None
) -> None:
    cfg = _write(tmp_path / "tiny.yaml", cfg_dict)
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert subprocess.run(_cmd(cfg, ref, to), env=_env(), capture_output=True).returncode == 0
    m_ref = json.loads((ref / "manifest.json").read_text())
    stages = m_ref["stage_order"][: m_ref["stage_order"].index(to) + 1] if to else m_ref["stage_order"]
    rng = random.Random(seed)
    landed: dict[str, str] = {}
    hooked: list[str] = []  # LLM stages killed by the cache hook (always mid-stage)
    start_rows: dict[str, dict[str, int]] = {}  # stage -> cache rows by kind when its successful run began
    for stage in [*(kill or stages), None]:
        before = _rows_by_kind(out / "llm-cache.sqlite")
        done_before = {s for s in stages if _stage_status(out, s) == "done"}
        if stage is None:  # the final, uninterrupted rerun
            assert subprocess.run(_cmd(cfg, out, to), env=_env(), capture_output=True).returncode == 0
        else:
            n = _calls_until_mid_stage(m_ref, stages, stage, before, rng)
            if n:
                hooked.append(stage)
                landed[stage] = _crash_after_calls(_cmd(cfg, out, to), out, stage, n)
            else:
                wall = m_ref["stages"][stage].get("wall_s") or 0.0
                delay = rng.uniform(0.0, min(1.5, 0.5 * wall))
                landed[stage] = _kill_during(_cmd(cfg, out, to), out, stage, delay)
        for s in stages:
            if s not in done_before and _stage_status(out, s) == "done":
                start_rows[s] = before
    m = json.loads((out / "manifest.json").read_text())
    assert all(m["stages"][s]["status"] == "done" for s in stages)
    assert sum(v == "running" for v in landed.values()) >= len(landed) // 2, landed  # most kills mid-stage
    assert all(landed[s] == "running" for s in hooked), (hooked, landed)  # the hook always lands mid-stage

    a, b = _artifacts(ref), _artifacts(out)
    assert sorted(a) == sorted(b)
    assert any(k.endswith("queries.jsonl") for k in a)
    for k in a:
        assert a[k] == b[k], k

    # no finished LLM call is computed twice: the successful run of each LLM stage answers from the
    # cache every call of its own that an earlier (killed) process had stored
    assert _rows_by_kind(out / "llm-cache.sqlite") == _rows_by_kind(ref / "llm-cache.sqlite")
    resumed = 0
    for i, s in enumerate(stages):
        if s not in LLM_KIND:
            continue
        kind, rec, ref_rec = LLM_KIND[s], m["stages"][s], m_ref["stages"][s]
        earlier = sum(
            m_ref["stages"][e].get("cache_misses", 0) for e in stages[:i] if LLM_KIND.get(e) == kind
        )
        stored_before = start_rows[s].get(kind, 0) - earlier  # this stage's calls already in the cache
        assert rec["cache_hits"] + rec["cache_misses"] == ref_rec["cache_hits"] + ref_rec["cache_misses"], s
        assert rec["cache_hits"] == ref_rec.get("cache_hits", 0) + stored_before, (s, rec, start_rows[s])
        resumed += stored_before
    assert resumed > 0, (landed, start_rows)  # some kill did land after finished LLM calls


def test_kill_during_generate(tmp_path, tiny_llm_dir):
    """The fast subset in ``make test`` (with tests/test_pipeline_e2e.py's kill during judge)."""
    _fault_run(tmp_path, tiny_config(tiny_llm_dir, llm={"batch_size": 1}), to="generate", seed=14)


@pytest.mark.slow
def test_kill_during_the_llm_stages(tmp_path, tiny_llm_dir):
    """One kill in generate and one in judge, then a full rerun (~3 min on a loaded 2-core box)."""
    cfg = tiny_config(
        tiny_llm_dir, judge={"batch_size": 1, "agreement": {"enabled": False}}, llm={"batch_size": 1}
    )
    _fault_run(tmp_path, cfg, to="judge", seed=15, kill=["generate", "judge"])


@pytest.mark.slow
def test_kill_each_stage_of_the_whole_pipeline(tmp_path, tiny_llm_dir):
    cfg = tiny_config(tiny_llm_dir, judge={"batch_size": 1}, llm={"batch_size": 1})
    _fault_run(tmp_path, cfg, to=None, seed=16)
