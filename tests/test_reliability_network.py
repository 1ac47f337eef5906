"""Issue 15, hung / failing server: --timeout and --retries reach the openai backend and every retry is
printed on stderr, even with --no-progress. A real HTTP server on 127.0.0.1 in a thread."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from tests.test_reliability_inputs import _run, beir  # noqa: F401 (fixture)
from tests.test_reliability_outputs import relforge


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "503"

    def _answer(self):
        if self.mode == "hang":
            time.sleep(5)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


@pytest.fixture(params=["503", "hang"])
def server(request):
    handler = type("H", (_Handler,), {"mode": request.param})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", request.param
    srv.shutdown()


def test_judge_timeout_and_retries_flags(beir, tmp_path, server):  # noqa: F811
    url, mode = server
    run = _run(tmp_path / "run.trec", [("q1", "d1", "2")])
    t0 = time.time()
    r = relforge(
        "judge", "--corpus", beir / "corpus.jsonl", "--queries", beir / "queries.jsonl", "--pairs", run,
        "--llm", f"openai:{url}#m", "--out", tmp_path / "j.jsonl", "--no-cache", "--no-progress",
        "--timeout", "0.5", "--retries", "2",
    )  # fmt: skip
    assert r.returncode != 0 and not (tmp_path / "j.jsonl").exists()
    assert "retry 1/2" in r.stderr and "retry 2/2" in r.stderr, r.stderr
    assert "gave up after 3 attempts" in r.stderr and "timeout=0.5" in r.stderr
    assert time.time() - t0 < 60  # not 5 x 60 s


def test_timeout_flag_refused_for_local_models(beir, tmp_path):  # noqa: F811
    run = _run(tmp_path / "run.trec", [("q1", "d1", "2")])
    r = relforge(
        "judge", "--corpus", beir / "corpus.jsonl", "--queries", beir / "queries.jsonl", "--pairs", run,
        "--llm", "smollm2", "--out", tmp_path / "j.jsonl", "--timeout", "3",
    )  # fmt: skip
    assert r.returncode == 2 and "--timeout and --retries apply to openai" in r.stderr


def test_generate_timeout_and_retries_flags_reach_the_openai_backend(tmp_path, server):
    url, mode = server
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "d1", "text": "Gout is caused by uric acid crystals in the joints."}\n')
    t0 = time.time()
    r = relforge(
        "generate", "--corpus", corpus, "--out", tmp_path / "q.jsonl", "--llm", f"openai:{url}#m",
        "--no-cache", "--per-doc", "1", "--timeout", "0.5", "--retries", "1",
    )  # fmt: skip
    assert r.returncode != 0 and not (tmp_path / "q.jsonl").exists()
    assert "retry 1/1" in r.stderr and "retry 2/" not in r.stderr, r.stderr
    assert "gave up after 2 attempts" in r.stderr and "timeout=0.5" in r.stderr
    assert time.time() - t0 < 60  # not 5 attempts x 60 s
