"""The SQLite call cache: keys, stats, default location, and resuming after a SIGKILL mid-job."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from relforge.llm import GenParams, load_llm
from relforge.llm.cache import LLMCache, call_key, default_cache_path

CHATS = [[{"role": "user", "content": f"Write a search query about topic {i}."}] for i in range(10)]

# the job run in a subprocess: every commit is announced on stdout, then the job dawdles so the test can
# kill it for real (SIGKILL: no cleanup, no atexit, no rollback) part-way through
JOB = textwrap.dedent(
    """
    import sys, time, json
    from relforge.llm import load_llm, GenParams
    model_dir, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    llm = load_llm("hf:" + model_dir, cache=db, batch_size=1, progress=False)
    put = llm.cache.put
    def announced_put(*a, **k):
        put(*a, **k)
        print("committed", flush=True)
        time.sleep(0.4)
    llm.cache.put = announced_put
    chats = [[{"role": "user", "content": f"Write a search query about topic {i}."}] for i in range(n)]
    llm.generate(chats, GenParams(max_new_tokens=6))
    print("finished", flush=True)
    """
)


def test_sigkill_midway_then_resume_recomputes_nothing_finished(tiny_llm_dir, tmp_path):
    db = tmp_path / "cache.sqlite"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, tiny_llm_dir, str(db), str(len(CHATS))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    seen = 0
    try:
        for line in proc.stdout:
            seen += line.strip() == "committed"
            if seen == 4:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and seen == 4
    with sqlite3.connect(db) as con:  # the killed job left a readable database with its finished calls
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = con.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
    assert 4 <= done < len(CHATS)

    resumed = load_llm(f"hf:{tiny_llm_dir}", cache=db, batch_size=1, progress=False)
    out = resumed.generate(CHATS, GenParams(max_new_tokens=6))
    assert (resumed.stats.hits, resumed.stats.misses) == (done, len(CHATS) - done)
    assert sum(c.cached for c in out) == done
    fresh = load_llm(f"hf:{tiny_llm_dir}", cache=None, batch_size=4, progress=False)
    ref = fresh.generate(CHATS, GenParams(max_new_tokens=6))
    assert [(c.text, c.completion_tokens) for c in out] == [(c.text, c.completion_tokens) for c in ref]
    # a third run is all hits and computes nothing
    again = load_llm(f"hf:{tiny_llm_dir}", cache=db, batch_size=1, progress=False)
    again.generate(CHATS, GenParams(max_new_tokens=6))
    assert (again.stats.hits, again.stats.misses, again.stats.completion_tokens) == (len(CHATS), 0, 0)


def test_keys_separate_params_choices_kind_and_model(tiny_llm_dir, tmp_path):
    db = tmp_path / "c.sqlite"
    llm = load_llm(f"hf:{tiny_llm_dir}", cache=db, progress=False)
    a = llm.score_choices(CHATS[:3], ["0", "1"])
    b = llm.score_choices(CHATS[:3] + CHATS[:1], ["0", "1"])  # 3 hits + a duplicate inside the call
    assert a == b[:3] and b[3] == a[0]
    assert (llm.stats.hits, llm.stats.misses) == (4, 3)
    llm.score_choices(CHATS[:1], ["1", "0"])  # different choices -> miss
    llm.generate(CHATS[:1], GenParams(max_new_tokens=2))  # different kind -> miss
    llm.generate(CHATS[:1], GenParams(max_new_tokens=3))  # different params -> miss
    assert (llm.stats.hits, llm.stats.misses) == (4, 6)
    assert llm.stats.extra["saved_prompt_tokens"] > 0
    chat = CHATS[0]
    assert call_key("hf:a", "score", chat, ["0"]) != call_key("hf:b", "score", chat, ["0"])
    assert call_key("hf:a", "score", chat, ["0"]) != call_key("hf:a", "generate", chat, ["0"])
    assert len(LLMCache(db)) == 6


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("RELFORGE_CACHE", raising=False)
    monkeypatch.setenv("RELFORGE_HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / "llm-cache.sqlite"
    monkeypatch.setenv("RELFORGE_CACHE", str(tmp_path))
    assert default_cache_path() == tmp_path / "llm-cache.sqlite"
    monkeypatch.setenv("RELFORGE_CACHE", str(tmp_path / "x.sqlite"))
    assert default_cache_path() == tmp_path / "x.sqlite"


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    from relforge.errors import RelforgeError

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RelforgeError, match="--no-cache"):
        LLMCache(bad)
