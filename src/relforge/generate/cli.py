"""``relforge generate``: synthetic queries for a corpus (registered by relforge.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from relforge.cli_config import config_option, set_option
from relforge.generate.config import FilterConfig, GenerateConfig, SelectConfig
from relforge.llm.config import LLMConfig
from relforge.llm.net_options import precision_option, retries_option, timeout_option

_G, _S, _F = GenerateConfig(), SelectConfig(), FilterConfig()  # every default comes from the config models
_L = LLMConfig()

#: CLI option -> the GenerateConfig field(s) it sets, dotted (options named after a top-level field set it);
#: ``--seed`` seeds the document sample too
_FLAG_MAP = {
    "seed": ("seed", "select.seed"),
    "sample": "select.sample",
    "diverse_by": "select.diverse_by",
    "n_clusters": "select.n_clusters",
    "diverse_model": "select.model",
    "diverse_cache_dir": "select.cache_dir",
    "round_trip": "filters.round_trip",
    "round_trip_k": "filters.round_trip_k",
    "round_trip_model": "filters.round_trip_model",
    "min_words": "filters.min_words",
    "max_words": "filters.max_words",
    "ngram": "filters.ngram",
    "max_copy_overlap": "filters.max_copy_overlap",
    "check_style": "filters.check_style",
}
#: the generate section's pipeline-only keys that a flag of ``relforge generate`` does
_HINTS = {"llm": "--llm", "precision": "--precision"}


def build_config(
    ctx: typer.Context, config_file: Path | None, sets: list[str], values: dict[str, Any]
) -> GenerateConfig:
    """``--config``, then ``--set``, then the flags given on the command line (:mod:`relforge.cli_config`)."""
    from relforge.cli_config import stage_config

    return stage_config(
        ctx,
        GenerateConfig,
        "generate",
        config_file,
        sets,
        values,
        command="relforge generate",
        flags=_FLAG_MAP,
        hints=_HINTS,
    )


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"generate: {summary['kept']}/{summary['generated']} queries kept "
        f"({summary['documents']} documents, prompt {summary['prompt_id']}@{summary['prompt_hash'][:8]})"
    )
    t.add_column("filter")
    t.add_column("dropped", justify="right")
    for name, n in summary["dropped"].items():
        t.add_row(name, str(n))
    t.add_row("[bold]kept[/bold]", f"[bold]{summary['kept']}[/bold]")
    Console(stderr=True).print(t)


def _guard_outputs(out: Path, qrels_path: Path, rejects_out: Path | None, overwrite: bool) -> None:
    """Refuse to replace existing outputs (unless ``--overwrite``) before any work starts."""
    from relforge.outputs import guard_file

    guard_file(out, overwrite=overwrite)
    guard_file(qrels_path, overwrite=overwrite, flag="--qrels-out")
    if rejects_out:
        guard_file(rejects_out, overwrite=overwrite, flag="--rejects-out")


def _cache_kw(no_cache: bool, cache: Path | None) -> dict[str, Any]:
    """``load_llm``'s cache option: off (``--no-cache``), a file (``--cache``), else the LLM layer's default."""
    return {"cache": False} if no_cache else {"cache": str(cache)} if cache else {}


def _open_llm(
    llm: list[str],
    out: Path,
    cache_kw: dict[str, Any],
    *,
    engine: str | None,
    ray_address: str | None,
    timeout: float | None,
    retries: int | None,
    precision: str | None,
) -> Any:
    """The LLM of ``--engine ray`` (several ``--llm`` endpoints allowed), else ``load_llm(llm[0])``."""
    from relforge.engine.ray_generate import open_generate_llm
    from relforge.llm import load_llm
    from relforge.llm.net_options import llm_net_options, llm_precision_options

    llm_kw = llm_net_options(llm[0], timeout, retries) | llm_precision_options(llm[0], precision)
    model = open_generate_llm(engine, ray_address, llm, out, cache_kw)
    return model or load_llm(llm[0], **cache_kw, **llm_kw)


def generate(
    ctx: typer.Context,
    corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl"),
    out: Path = typer.Option(..., "--out", help="queries.jsonl to write"),
    llm: list[str] = typer.Option(
        [_L.llm],
        "--llm",
        help="LLM spec (smollm2, hf:..., openai:URL#model, llamacpp:...); repeat with --engine ray",
    ),
    per_doc: int = typer.Option(_G.per_doc, "--per-doc", help="queries per document"),
    sample: Optional[int] = typer.Option(_S.sample, "--sample", help="number of documents (default: all)"),
    qrels_out: Optional[Path] = typer.Option(
        None, "--qrels-out", help="positives TSV [default: <out>.qrels.tsv]"
    ),
    style: str = typer.Option(_G.style, "--style", help="question | keyword"),
    prompt: Optional[str] = typer.Option(_G.prompt, "--prompt", help="built-in prompt id or YAML path"),
    examples: Optional[str] = typer.Option(
        _G.examples, "--examples", help="few-shot examples file or BEIR folder"
    ),
    n_examples: Optional[int] = typer.Option(
        _G.n_examples, "--n-examples", help="few-shot examples as chat turns"
    ),
    example_selection: str = typer.Option(
        _G.example_selection,
        "--example-selection",
        help="fixed (the same examples for every document) | nearest (per document, the examples with "
        "the most similar documents)",
    ),
    max_example_words: Optional[int] = typer.Option(
        _G.max_example_words,
        "--max-example-words",
        help="cut each example's document to this many words (default: the prompt's max_doc_words); a "
        "shorter prompt, faster on CPU",
    ),
    example_model: str = typer.Option(
        _G.example_model, "--example-model", help="embedding model for --example-selection nearest"
    ),
    domain: Optional[str] = typer.Option(
        _G.domain, "--domain", help="domain instruction, e.g. 'product search'"
    ),
    diverse_by: Optional[str] = typer.Option(
        _S.diverse_by, "--diverse-by", help="'embeddings' or a metadata field"
    ),
    n_clusters: Optional[int] = typer.Option(
        _S.n_clusters, "--n-clusters", help="KMeans clusters for --diverse-by embeddings"
    ),
    diverse_model: str = typer.Option(
        _S.model, "--diverse-model", help="embedding model for --diverse-by embeddings"
    ),
    diverse_cache_dir: Optional[str] = typer.Option(
        _S.cache_dir, "--diverse-cache-dir", help="embedding cache folder for --diverse-by embeddings"
    ),
    temperature: float = typer.Option(_G.temperature, "--temperature"),
    top_p: float = typer.Option(_G.top_p, "--top-p"),
    max_new_tokens: int = typer.Option(_G.max_new_tokens, "--max-new-tokens"),
    seed: int = typer.Option(_G.seed, "--seed"),
    grade: int = typer.Option(_G.grade, "--grade", help="qrels grade of each query's source document"),
    id_prefix: str = typer.Option(_G.id_prefix, "--id-prefix", help="query ids are <prefix>-<doc id>-<n>"),
    min_words: int = typer.Option(_F.min_words, "--min-words"),
    max_words: int = typer.Option(_F.max_words, "--max-words"),
    ngram: int = typer.Option(_F.ngram, "--ngram", help="n-gram size of the copy check (words)"),
    max_copy_overlap: float = typer.Option(
        _F.max_copy_overlap,
        "--max-copy-overlap",
        help="drop a query if this share of its n-grams occur in its document",
    ),
    check_style: bool = typer.Option(
        _F.check_style, "--check-style/--no-check-style", help="drop queries not in the requested --style"
    ),
    round_trip: Optional[str] = typer.Option(
        _F.round_trip, "--round-trip", help="bm25 | dense: keep a query only if its doc ranks in top-k"
    ),
    round_trip_k: int = typer.Option(_F.round_trip_k, "--round-trip-k"),
    round_trip_model: str = typer.Option(
        _F.round_trip_model, "--round-trip-model", help="model for --round-trip dense"
    ),
    config_file: Optional[Path] = config_option(
        "generate", "GenerateConfig", "; --llm, --precision are flags"
    ),
    sets: list[str] = set_option("select.sample=128"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the LLM cache"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="LLM cache file [default: the LLM layer's]"),
    rejects_out: Optional[Path] = typer.Option(
        None, "--rejects-out", help="also write dropped queries with reasons"
    ),
    output: str = typer.Option("table", "--output", help="table | json (summary on stdout)"),
    timeout: float = timeout_option(),
    retries: int = retries_option(),
    precision: Optional[str] = precision_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    engine: Optional[str] = typer.Option(None, "--engine", help="local (default) or ray (docs/ray.md)"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="--engine ray: auto (default), local, or ray://HOST:PORT"
    ),
) -> None:
    """Write synthetic queries for (a sample of) a corpus; print how many each filter dropped."""
    flags = dict(locals())
    from relforge.generate.run import GenerateInputs, GenerateOutputs, run

    cfg = build_config(ctx, config_file, sets, flags)
    files = GenerateOutputs.beside(out, qrels=qrels_out, rejected=rejects_out)
    _guard_outputs(out, files.qrels, rejects_out, overwrite)
    opened: list[Any] = []

    def open_model() -> Any:
        opened.append(
            _open_llm(
                llm,
                out,
                _cache_kw(no_cache, cache),
                engine=engine,
                ray_address=ray_address,
                timeout=timeout,
                retries=retries,
                precision=precision,
            )
        )
        return opened[-1]

    try:
        summary = run(cfg, GenerateInputs(corpus=corpus), files, llm=open_model, llm_spec=llm)
    finally:
        for model in opened:
            if hasattr(model, "store"):  # the Ray engine's shard lock
                model.close()
    if output == "json":
        typer.echo(json.dumps(summary.record.as_json(), indent=2))
    else:
        print_summary(summary.record.as_json())


def register(app: typer.Typer) -> None:
    """Add ``relforge generate`` to the root app."""
    app.command("generate")(generate)
