"""relforge.engine: where the LLM stages and dense encoding run.

``local`` (the default) is today's single-process behaviour. ``ray`` runs the same work on a Ray cluster
with Ray Data: judging/generation through ``ray.data.llm`` processors over one or several OpenAI-compatible
endpoints (:mod:`relforge.engine.ray_judge`, :mod:`relforge.engine.ray_generate`), dense encoding with an
actor pool (:mod:`relforge.engine.ray_dense`). Results are written as they finish in resumable shards
(:mod:`relforge.engine.shards`). Install with ``pip install 'relforge[ray]'``.
"""

from relforge.engine.config import EngineConfig

__all__ = ["EngineConfig"]
