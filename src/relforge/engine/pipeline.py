"""The pipeline's hook: ``engine: {kind: ray, address: ..., endpoints: [...]}`` in the YAML.

With ``kind: ray`` the generate, judge and agreement stages get a :class:`~relforge.engine.ray_llm.RayLLM`
over ``llm`` spec + ``engine.endpoints`` instead of a local backend; its shards live in
``<artifacts>/ray/<model>`` (one folder per model, shared by the stages: keys are content hashes).
"""

from __future__ import annotations

import re
from typing import Any


def stage_llm(ctx: Any, spec: str, adapter: str | None = None) -> Any:
    """The Ray LLM of a pipeline stage, or None with the local engine (one per spec and run)."""
    engine = getattr(ctx.cfg, "engine", None)
    if engine is None or not engine.is_ray:
        return None
    owner = getattr(ctx, "runner", ctx)
    llms = owner.__dict__.setdefault("_ray_llms", {})
    if spec not in llms:
        from relforge.engine.ray_judge import open_engine_llm

        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.rpartition("#")[2] or spec)[-60:]
        work = ctx.path(f"ray/{slug}/LOCK").parent
        llms[spec] = open_engine_llm(
            engine.model_copy(update={"workdir": str(work)}),
            [spec],
            work,
            adapter=adapter,
            cache=str(ctx.path("ray/llm-cache.sqlite")),
        )
    return llms[spec]


def judge_batch_size(llm: Any, pairs: int, default: int) -> int:
    """All pairs in one call (one Ray Data job) for a Ray LLM, else the judge's batch size."""
    return max(1, pairs) if getattr(llm, "one_job", False) else default
