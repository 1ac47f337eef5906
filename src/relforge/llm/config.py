"""Settings of the LLM layer (the one place their defaults live; CLI and pipeline read them here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from relforge.llm.secrets import check_no_secrets
from relforge.precision import Precision

#: the precision ``LLMConfig`` (and so every LLM stage and ``relforge llm``) uses by default
DEFAULT_PRECISION: Precision = "fp32"


class LLMConfig(BaseModel):
    """Which LLM to load and how. ``load()`` turns it into an LLM via :func:`relforge.llm.load_llm`."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may hold secrets

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
    precision: Precision = Field(
        DEFAULT_PRECISION,
        description="hf: auto|fp32|bf16|fp16|int8 (auto = bf16 on a CPU with AVX-512 BF16/AMX or a GPU, else fp32)",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="hf: older alias of precision; used only when it is not auto"
    )
    device: str = "auto"
    concurrency: int = Field(8, ge=1, description="openai: requests in flight")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(4, ge=0, description="openai: retries on 429/5xx/timeouts (each one is printed)")
    score_method: Literal["auto", "token_logprobs", "prompt_logprobs", "top_logprobs"] = Field(
        "auto",
        description="openai: how grade probabilities are read (auto = exact where the server supports it)",
    )
    api_key_env: str | None = Field(
        None, description="openai: extra environment variable holding the key (before RELFORGE_API_KEY)"
    )
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_no_secrets(data, "llm")
        return data

    def resolved_precision(self) -> str:
        """``precision``, or the older ``dtype`` when only that was set."""
        from relforge.precision import DTYPE_ALIASES

        if self.precision == DEFAULT_PRECISION and self.dtype != "auto":
            return DTYPE_ALIASES[self.dtype]
        return self.precision

    def describe(self) -> dict[str, Any]:
        """The settings as they may be shown or stored (the spec redacted)."""
        from relforge.llm.secrets import redact_spec

        d = self.model_dump()
        d["llm"] = redact_spec(self.llm)
        return d

    def load(self) -> Any:
        """Load the configured LLM (cached unless ``no_cache``)."""
        from relforge.llm import DEFAULT, load_llm, parse_spec

        scheme, _ = parse_spec(self.llm)
        kw: dict[str, Any] = {"progress": self.progress}
        if scheme == "hf":
            kw.update(
                chat_template=self.chat_template,
                prefix_sharing=self.prefix_sharing,
                precision=self.resolved_precision(),
                device=self.device,
            )
        elif scheme == "openai":
            kw.update(
                concurrency=self.concurrency,
                timeout=self.timeout,
                max_retries=self.max_retries,
                score_method=self.score_method,
                api_key_env=self.api_key_env,
            )
        cache: Any = None if self.no_cache else (self.cache or DEFAULT)
        return load_llm(self.llm, adapter=self.adapter, cache=cache, batch_size=self.batch_size, **kw)

    def gen_params(self) -> Any:
        from relforge.llm.base import GenParams

        return GenParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
