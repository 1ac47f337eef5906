"""Settings of the execution engine (the only home of their defaults; CLI and pipeline read them here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

KINDS = ("local", "ray")


class EngineConfig(BaseModel):
    """Where the LLM stages and dense encoding run.

    ``kind: local`` is the single-process behaviour; ``kind: ray`` runs on a Ray cluster: ``address``
    ``auto`` (a running cluster on this machine, else a new local one), ``local`` (always start one here)
    or ``ray://HOST:PORT`` / ``HOST:PORT`` (a remote cluster).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str = Field("auto", description="ray: auto | local | ray://HOST:PORT | HOST:PORT")
    #: extra OpenAI-compatible endpoints (``openai:URL#MODEL``) beside ``--llm``: replicas of one model
    endpoints: list[str] = Field(default_factory=list)
    #: ray: actors sending HTTP requests (each holds a batch in flight; per endpoint x 2 is a good start)
    concurrency: int = Field(2, ge=1)
    #: ray: rows per batch of the HTTP stage (small batches = smaller loss and finer progress on failure)
    batch_size: int = Field(8, ge=1)
    #: ray: CPUs reserved per HTTP actor (they mostly wait on the network)
    num_cpus_per_actor: float = Field(0.25, gt=0)
    #: ray: retries of one request (each retry goes to the next live endpoint)
    max_retries: int = Field(6, ge=0)
    #: ray: first retry wait in seconds (doubled at each retry)
    retry_wait: float = Field(0.5, gt=0)
    #: ray: seconds per HTTP request
    timeout: float = Field(120.0, gt=0)
    #: ray: seconds an endpoint that refused a connection is skipped before it is tried again
    down_seconds: float = Field(30.0, ge=0)
    #: ray, when a new local cluster is started: CPUs it may use (None: all)
    num_cpus: int | None = Field(None, ge=1)
    #: ray dense encoding: encoder actors, CPUs and GPUs each
    dense_actors: int = Field(1, ge=1)
    dense_num_cpus: float = Field(1.0, gt=0)
    dense_num_gpus: float = Field(0.0, ge=0)
    #: folder of the resumable shards (None: ``<out>.ray`` beside the output)
    workdir: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("address must be auto, local, ray://HOST:PORT or HOST:PORT")
        return v

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"


def engine_from(
    kind: str | None, address: str | None = None, base: EngineConfig | None = None
) -> EngineConfig:
    """CLI flags over a config: ``--engine`` / ``--ray-address`` replace the fields they name."""
    cfg = base or EngineConfig()
    upd: dict = {}
    if kind is not None:
        upd["kind"] = kind
    if address is not None:
        upd["address"] = address
    return EngineConfig.model_validate({**cfg.model_dump(), **upd}) if upd else cfg
