"""Plain progress when stderr is not a terminal (issue 15, "Seen from a log file"): steady
`label: done/total (pct), rate/s, ETA` lines, from the helper and from a real LLM backend run with its
stderr redirected to a file; warnings appear with progress off too."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from relforge.progress import format_duration, plain_line, progress, use_plain, warn

LINE = re.compile(r"^(\w+): (\d+)/(\d+) \((\d+)%\)(, [\d.]+/s)?(, ETA \w+)?, \w+ elapsed$")


class NotATty(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_plain_line_format():
    assert plain_line("judge", 120, 1164, 60.0) == "judge: 120/1164 (10%), 2.00/s, ETA 8m42s, 1m00s elapsed"
    assert plain_line("judge", 0, 10, 3.0) == "judge: 0/10 (0%), 3s elapsed"
    assert format_duration(4000) == "1h06m" and format_duration(9) == "9s"


def test_plain_lines_at_a_steady_interval_when_not_a_tty(monkeypatch):
    monkeypatch.delenv("RELFORGE_PROGRESS", raising=False)
    out = NotATty()
    assert use_plain(out)
    with progress(10, "judge", interval=0.1, stream=out) as advance:
        for _ in range(10):
            time.sleep(0.05)
            advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "judge: 0/10 started"
    ticks = [m for m in map(LINE.match, lines[1:]) if m]
    assert len(ticks) == len(lines) - 1 and len(ticks) >= 3  # ~0.5 s of work, a line every 0.1 s
    done = [int(m.group(2)) for m in ticks]
    assert done == sorted(done) and done[-1] == 10 and ticks[-1].group(4) == "100"
    assert any(m.group(6) for m in ticks[:-1])  # an ETA while running


def test_disabled_or_tiny_jobs_print_nothing_but_warnings_still_show():
    out = NotATty()
    with progress(100, "x", enabled=False, stream=out) as advance:
        advance(100)
    with progress(1, "x", stream=out) as advance:
        advance()
    assert out.getvalue() == ""
    warn("server busy; retry 1/4 in 2.0 s", stream=out)
    assert out.getvalue() == "warning: server busy; retry 1/4 in 2.0 s\n"


def test_env_forces_the_mode(monkeypatch):
    monkeypatch.setenv("RELFORGE_PROGRESS", "plain")
    assert use_plain(sys.stderr)
    monkeypatch.setenv("RELFORGE_PROGRESS", "bar")
    assert not use_plain(NotATty())


def test_backend_run_redirected_to_a_file_prints_plain_progress(tiny_llm_dir, tmp_path):
    """A real process, stderr to a file (like `nohup relforge judge ... 2> log`): the HF backend's
    scoring prints plain progress lines, no bar escape codes."""
    script = textwrap.dedent(
        f"""
        from relforge.llm.hf import HFBackend
        b = HFBackend.load({tiny_llm_dir!r}, batch_size=2, progress=True)
        chats = [[{{"role": "user", "content": "question " * (i + 1)}}] for i in range(12)]
        b.score_choices(chats, ["0", "1", "2", "3"])
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        "RELFORGE_PROGRESS_INTERVAL": "0.05",
    }
    env.pop("RELFORGE_PROGRESS", None)
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        r = subprocess.run([sys.executable, "-c", script], stderr=fh, stdout=fh, env=env, timeout=300)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "score: 0/12 started" in text
    assert re.search(r"^score: 12/12 \(100%\), [\d.]+/s, \w+ elapsed$", text, re.M), text
    assert "\x1b[" not in text  # no terminal control codes in a log file
