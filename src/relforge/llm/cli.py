"""CLI commands of relforge.llm (registered by relforge.cli): ``relforge llm try`` and ``relforge llm serve``."""

from __future__ import annotations

from typing import Optional

import typer

from relforge.llm.config import LLMConfig

_D = LLMConfig()  # every default comes from the config model
_PRECISION_HELP = "hf: auto|fp32|bf16|fp16|int8 (auto = bf16 where the CPU/GPU has it, else fp32)."


def _config(**kw) -> LLMConfig:
    """``LLMConfig(**kw)``, a validation error as one UsageError line (exit 2)."""
    from pydantic import ValidationError

    from relforge.errors import UsageError

    try:
        return LLMConfig(**kw)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'llm'}: {x['msg']}" for x in e.errors())
        raise UsageError(msgs) from None


llm_app = typer.Typer(
    help="Try or serve an LLM (local transformers/GGUF, OpenAI-compatible server, llama.cpp).",
    no_args_is_help=True,
)


@llm_app.command("try")
def try_cmd(
    prompt: str = typer.Argument(..., help="User message to send."),
    llm: str = typer.Option(
        _D.llm, "--llm", help="hf:<id|dir|file.gguf>, smollm2, openai:<url>#<model>, llamacpp:<gguf>"
    ),
    max_new_tokens: int = typer.Option(_D.max_new_tokens, "--max-new-tokens", min=1),
    temperature: float = typer.Option(_D.temperature, "--temperature", min=0.0, help="0 = greedy"),
    no_cache: bool = typer.Option(_D.no_cache, "--no-cache", help="Bypass the SQLite call cache."),
    adapter: Optional[str] = typer.Option(
        _D.adapter, "--adapter", help="PEFT LoRA adapter folder (hf only)."
    ),
    system: Optional[str] = typer.Option(None, "--system", help="Optional system message."),
    chat_template: Optional[str] = typer.Option(
        _D.chat_template, "--chat-template", help='"plain" for models without a chat template.'
    ),
    precision: str = typer.Option(_D.precision, "--precision", help=_PRECISION_HELP),
    timeout: float = typer.Option(_D.timeout, "--timeout", min=0.001, help="openai: seconds per request."),
    max_retries: int = typer.Option(
        _D.max_retries, "--max-retries", min=0, help="openai: retries (printed)."
    ),
) -> None:
    """Send one message and print the completion, token counts and cache stats."""
    from relforge.llm.base import GenParams

    cfg = _config(
        llm=llm,
        adapter=adapter,
        no_cache=no_cache,
        chat_template=chat_template,
        precision=precision,
        timeout=timeout,
        max_retries=max_retries,
        progress=False,
    )
    model = cfg.load()
    chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    comp = model.generate([chat], GenParams(max_new_tokens=max_new_tokens, temperature=temperature))[0]
    typer.echo(comp.text)
    typer.echo(
        f"[{model.name}] prompt_tokens={comp.prompt_tokens} completion_tokens={comp.completion_tokens} "
        f"finish_reason={comp.finish_reason} cached={comp.cached}",
        err=True,
    )
    s = model.stats
    where = s.extra.get("cache_path") or "off (--no-cache)"
    typer.echo(f"cache: hits={s.hits} misses={s.misses} ({where})", err=True)


@llm_app.command("serve")
def serve_cmd(
    llm: str = typer.Option(_D.llm, "--llm", help="Model to serve (any spec load_llm accepts)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; not loopback needs --api-key-env."),
    port: int = typer.Option(8000, "--port"),
    adapter: Optional[str] = typer.Option(_D.adapter, "--adapter"),
    no_cache: bool = typer.Option(_D.no_cache, "--no-cache"),
    precision: str = typer.Option(_D.precision, "--precision", help=_PRECISION_HELP),
    chat_template: Optional[str] = typer.Option(_D.chat_template, "--chat-template"),
    api_key_env: Optional[str] = typer.Option(
        None, "--api-key-env", help="Require the key stored in this environment variable."
    ),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1024, help="Larger bodies get 413."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="Larger max_tokens get 400."),
    max_concurrency: int = typer.Option(64, "--max-concurrency", min=1, help="More open requests get 503."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
) -> None:
    """Serve a model as an OpenAI-compatible /v1/chat/completions endpoint (logprobs, exact grade scoring)."""
    import os

    from relforge.errors import UsageError
    from relforge.llm.serve import LLMServer

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UsageError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
    cfg = _config(
        llm=llm,
        adapter=adapter,
        no_cache=no_cache,
        precision=precision,
        chat_template=chat_template,
        progress=False,
    )
    model = cfg.load()
    server = LLMServer(
        model,
        host,
        port,
        api_key=key,
        max_body_bytes=max_body_bytes,
        max_tokens=max_tokens,
        max_concurrency=max_concurrency,
        verbose=verbose,
    )
    desc = model.describe() if hasattr(model, "describe") else {}
    typer.echo(
        f"serving {model.name} ({desc.get('precision', '?')}) at {server.url} (use --llm "
        f"'openai:{server.url}#{server.model_name}'){'; key required' if key else ''}; Ctrl-C to stop",
        err=True,
    )
    try:
        server.serve_forever()
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.add_typer(llm_app, name="llm")
