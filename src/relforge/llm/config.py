"""Settings of the LLM layer (the one place their defaults live; CLI and pipeline read them here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LLMConfig(BaseModel):
    """Which LLM to load and how. ``load()`` turns it into an LLM via :func:`relforge.llm.load_llm`."""

    model_config = ConfigDict(extra="forbid")

    llm: str = Field(
        "smollm2", description="spec: hf:<id|dir|file.gguf>, smollm2, openai:<url>#<model>, llamacpp:<gguf>"
    )
    adapter: str | None = Field(None, description="PEFT LoRA adapter folder (hf only)")
    cache: str | None = Field(
        None, description="SQLite cache file; None = $RELFORGE_CACHE or ~/.cache/relforge"
    )
    no_cache: bool = Field(False, description="bypass the cache entirely")
    batch_size: int = Field(8, ge=1)
    chat_template: str | None = Field(None, description='None = the model\'s own; "plain"; or a Jinja string')
    prefix_sharing: bool = Field(
        False, description="hf: reuse the KV cache of the prompt prefix shared by a call"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    concurrency: int = Field(8, ge=1, description="openai: requests in flight")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(4, ge=0, description="openai: retries on 429/5xx/timeouts")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    progress: bool = True

    def load(self) -> Any:
        """Load the configured LLM (cached unless ``no_cache``)."""
        from relforge.llm import DEFAULT, load_llm, parse_spec

        scheme, _ = parse_spec(self.llm)
        kw: dict[str, Any] = {"progress": self.progress}
        if scheme == "hf":
            kw.update(
                chat_template=self.chat_template,
                prefix_sharing=self.prefix_sharing,
                dtype=self.dtype,
                device=self.device,
            )
        elif scheme == "openai":
            kw.update(concurrency=self.concurrency, timeout=self.timeout, max_retries=self.max_retries)
        cache: Any = None if self.no_cache else (self.cache or DEFAULT)
        return load_llm(self.llm, adapter=self.adapter, cache=cache, batch_size=self.batch_size, **kw)

    def gen_params(self) -> Any:
        from relforge.llm.base import GenParams

        return GenParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
