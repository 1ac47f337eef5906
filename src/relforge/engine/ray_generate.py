"""``relforge generate --engine ray``: the query generator's LLM is a :class:`~relforge.engine.ray_llm.RayLLM`.

:func:`relforge.generate.generate_queries` already asks for all documents of one sample in one
``generate`` call, so each sample (``--per-doc``) is one Ray Data job; prompts, sampling parameters
(seed ``seed + i``), cleaning and filters are the local code. Completions are saved in shards
(``<out>.ray``) as they finish, so a killed run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relforge.engine.config import engine_from
from relforge.errors import UsageError


def open_generate_llm(
    kind: str | None, address: str | None, specs: list[str], out: Path, cache_kw: dict[str, Any]
) -> Any:
    """A Ray LLM for ``--engine ray`` (None for the local engine; several ``--llm`` need ``ray``)."""
    try:
        engine = engine_from(kind, address)
    except ValueError as e:
        raise UsageError(f"invalid engine setting (--engine/--ray-address): {e}") from None
    if not engine.is_ray:
        if len(specs) > 1:
            raise UsageError("several --llm endpoints need --engine ray")
        return None
    from relforge.engine.ray_judge import open_engine_llm

    return open_engine_llm(engine, specs, out, cache=cache_kw.get("cache"), progress=True)
