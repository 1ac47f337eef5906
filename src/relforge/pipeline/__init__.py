"""relforge.pipeline: every stage from one config, with a manifest, skip-if-unchanged and resume.

``run_pipeline(config, out_dir)`` runs import -> generate -> retrieve -> (judge_finetune) -> judge ->
agreement -> groups -> train -> rerank -> evaluate -> (ablation) -> report in ``out_dir``;
``relforge run CONFIG.yaml`` and ``relforge demo`` are its commands. See ``docs/pipeline.md``.
"""

from relforge.pipeline.api import DEMO_CONFIG, demo_config_path, plan_pipeline, run_pipeline
from relforge.pipeline.runner import PlanItem, Stage, StageContext, hash_path, plan, read_manifest, run_stages

__all__ = [
    "DEMO_CONFIG",
    "PlanItem",
    "Stage",
    "StageContext",
    "demo_config_path",
    "hash_path",
    "plan",
    "plan_pipeline",
    "read_manifest",
    "run_pipeline",
    "run_stages",
]
