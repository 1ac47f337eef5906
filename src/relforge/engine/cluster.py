"""Connecting to (or starting) the Ray cluster an :class:`EngineConfig` names."""

from __future__ import annotations

import os
from typing import Any

from relforge.engine.config import EngineConfig
from relforge.errors import UsageError


def import_ray() -> Any:
    """``import ray`` with the install hint when the ``ray`` extra is missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UsageError(
            f"--engine ray needs Ray Data: pip install 'relforge[ray]' (ray[data]==2.60.0); import failed: {e}"
        ) from None
    return ray


def _runtime_env() -> dict[str, Any]:
    """Workers see the driver's relforge (PYTHONPATH) and the offline switches."""
    keep = (
        "PYTHONPATH",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "TOKENIZERS_PARALLELISM",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    import relforge

    src = os.path.dirname(os.path.dirname(os.path.abspath(relforge.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return {"env_vars": env}


def init_ray(cfg: EngineConfig) -> Any:
    """``ray.init`` for ``cfg.address`` unless Ray is already initialised in this process (reused as is).

    ``auto``: a cluster already running on this machine, else a new local one; ``local``: always a new
    local one; anything else (``ray://HOST:PORT``, ``HOST:PORT``) is passed to ``ray.init`` as the address.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "runtime_env": _runtime_env()}
    addr = cfg.address
    if addr == "local":
        ray.init(num_cpus=cfg.num_cpus, **kw)
        return ray
    if addr == "auto":
        try:
            ray.init(address="auto", **kw)
            return ray
        except ConnectionError:
            ray.init(num_cpus=cfg.num_cpus, **kw)
            return ray
    try:
        ray.init(address=addr, **kw)
    except ConnectionError as e:
        raise UsageError(
            f"cannot reach the Ray cluster at {addr!r} (setting: --ray-address / engine.address): {e}"
        ) from None
    return ray


def quiet_data_context(ray: Any) -> None:
    """Progress bars of Ray Data off (relforge prints its own counts); deterministic block order."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    try:
        ctx.print_on_execution_start = False
    except AttributeError:
        pass
