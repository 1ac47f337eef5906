"""``run_pipeline`` / ``plan_pipeline``: the Python entry points behind ``relforge run`` and ``relforge demo``."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from relforge.config import PipelineConfig, load_config, parse_config
from relforge.pipeline.runner import PlanItem, Runner, plan

DEMO_CONFIG = "demo.yaml"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def demo_config_path() -> Path:
    """The packaged demo configuration (``configs/demo.yaml`` in the repository is the same file)."""
    return Path(str(resources.files("relforge.pipeline") / "configs" / DEMO_CONFIG))


def set_offline() -> None:
    """Never touch a model hub (a hub id would otherwise spend ~45 s in retries before failing)."""
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
    try:  # huggingface_hub reads the variable at import time; if it is already imported, tell it too
        import huggingface_hub.constants as hc

        hc.HF_HUB_OFFLINE = True
    except Exception:
        pass


def _as_config(config: PipelineConfig | str | os.PathLike | dict, sizes: list[int] | None) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = parse_config(config)
    else:
        cfg = load_config(config)
    if sizes is not None:
        data = cfg.model_dump()
        data["ablation"]["sizes"] = list(sizes)
        cfg = parse_config(data, source="--sizes")
    from relforge.pipeline.preflight import preflight

    source = Path(config).name if isinstance(config, (str, os.PathLike)) else "config"
    preflight(cfg, source)  # everything knowable, before anything is written or loaded
    return cfg


def plan_pipeline(
    config: PipelineConfig | str | os.PathLike | dict,
    out_dir: str | os.PathLike,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    to_stage: str | None = None,
    sizes: list[int] | None = None,
) -> list[PlanItem]:
    """What ``run_pipeline`` would run or skip, and why (``--dry-run``)."""
    from relforge.pipeline.stages import build_stages

    cfg = _as_config(config, sizes)
    return plan(build_stages(cfg), cfg, out_dir, from_stage=from_stage, only=only, to_stage=to_stage)


def run_pipeline(
    config: PipelineConfig | str | os.PathLike | dict,
    out_dir: str | os.PathLike,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    to_stage: str | None = None,
    sizes: list[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the pipeline in ``out_dir`` (created); unchanged stages are skipped, interrupted ones resumed.

    Args:
        config: a :class:`PipelineConfig`, a YAML path or a dict.
        out_dir: the artifacts folder.
        from_stage: force this stage and all later ones to run.
        only: run just this stage (its inputs must exist).
        to_stage: stop after this stage.
        sizes: dataset-size ablation sizes (overrides ``ablation.sizes``).
        log: callback for progress lines (default: silent).

    Returns:
        The manifest (also in ``out_dir/manifest.json``).
    """
    import yaml

    from relforge.data import atomic_write
    from relforge.pipeline.stages import build_stages

    cfg = _as_config(config, sizes)
    if cfg.offline:
        set_offline()
    from relforge.llm.secrets import redact_obj
    from relforge.outputs import claim_dir

    out = claim_dir(out_dir)
    with atomic_write(out / "config.yaml") as fh:
        yaml.safe_dump(redact_obj(cfg.model_dump(mode="json")), fh, sort_keys=False)
    runner = Runner(build_stages(cfg), cfg, out, log=log)
    from relforge import __version__

    runner.manifest["relforge_version"] = __version__
    runner.manifest["name"] = cfg.name
    runner.manifest["config"] = redact_obj(cfg.model_dump(mode="json"))
    return runner.run(from_stage=from_stage, only=only, to_stage=to_stage)
