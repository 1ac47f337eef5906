"""``relforge judge --engine ray``: the judge's LLM is a :class:`~relforge.engine.ray_llm.RayLLM`.

Everything else is the local judge (:func:`relforge.judge.run.run`): pairs read and checked the same
way, prompts built by the same template code, probabilities mapped to grades by the same function, the
same output files. Only the calls run on Ray, all pairs of the run in one Ray Data job (so ``batch_size``
of the judge config does not split them; ``engine.batch_size`` sizes the HTTP batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.engine.config import EngineConfig
from relforge.engine.shards import default_workdir
from relforge.errors import UsageError


def open_engine_llm(
    engine: EngineConfig,
    specs: list[str],
    out: Path,
    *,
    adapter: Path | str | None = None,
    cache: Any = None,
    progress: bool = True,
) -> Any:
    """The Ray LLM of a judging/generation run writing ``out`` (shards in ``engine.workdir`` or ``<out>.ray``)."""
    from relforge.engine.ray_llm import open_ray_llm

    if adapter is not None:
        raise UsageError(
            "--engine ray talks to servers: load the adapter in them (vLLM --lora-modules, or `relforge llm "
            "serve --adapter`) instead of --adapter"
        )
    workdir = Path(engine.workdir) if engine.workdir else default_workdir(out)
    return open_ray_llm(specs, engine, workdir, cache=cache, progress=progress)
