"""``relforge retrieve`` (BM25 / dense / hybrid runs) and ``relforge retrieve mine`` (hard negatives)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from relforge.cli_config import comma_list, config_option, doc_fields_option, set_option, stage_config
from relforge.retrieve.config import MiningConfig, RetrieveConfig, RetrieveStageConfig

_R, _M = RetrieveConfig(), MiningConfig()

retrieve_app = typer.Typer(
    help="Retrieve candidates (bm25 | dense | hybrid) into a TREC run; `mine` picks hard negatives from a run.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _str_or_none(path: Path | None) -> str | None:
    return str(path) if path else None


@retrieve_app.callback(invoke_without_command=True)
def retrieve_cmd(
    ctx: typer.Context,
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="BEIR corpus.jsonl (required)"),
    queries: Optional[Path] = typer.Option(None, "--queries", help="BEIR queries.jsonl (required)"),
    method: str = typer.Option(_R.method, "--method", help="bm25 | dense | hybrid"),
    top_k: int = typer.Option(_R.top_k, "--top-k", help="documents per query"),
    out: Optional[Path] = typer.Option(None, "--out", help="TREC run to write (required)"),
    model: str = typer.Option(_R.model, "--model", help="dense model: minilm, hub id or path"),
    index_dir: Optional[Path] = typer.Option(None, "--index-dir", help="save / reuse the BM25 index here"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="cache dense corpus embeddings here"),
    max_seq_length: Optional[int] = typer.Option(
        None, "--max-seq-length", help="dense: truncate to N tokens"
    ),
    stemmer: str = typer.Option(_R.stemmer, "--stemmer", help="auto (PyStemmer if installed) | none"),
    rrf_k: int = typer.Option(_R.rrf_k, "--rrf-k", help="RRF constant for hybrid"),
    use_faiss: bool = typer.Option(_R.use_faiss, "--faiss", help="dense search with faiss (if installed)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    precision: str = typer.Option(
        _R.precision,
        "--precision",
        help="dense encoder: fp32 (exact) | bf16 | int8 (ONNX Runtime) | auto (bf16 if the CPU has it)",
    ),
    batch_size: int = typer.Option(_R.batch_size, "--batch-size", help="dense encoding batch size"),
    doc_fields: str = doc_fields_option(),
    config_file: Optional[Path] = config_option(
        "retrieve", "RetrieveConfig", "; methods and mining are relforge run's, mining is `retrieve mine`'s"
    ),
    sets: list[str] = set_option("top_k=30"),
) -> None:
    """Retrieve the top-k documents for every query and write a TREC run."""
    flags = dict(locals())
    if ctx.invoked_subcommand is not None:
        return
    from relforge.errors import UsageError
    from relforge.retrieve.run import RetrieveInputs, RetrieveOutputs, run

    missing = [f for f, v in (("--corpus", corpus), ("--queries", queries), ("--out", out)) if v is None]
    if missing:
        raise UsageError(f"relforge retrieve needs {', '.join(missing)} (or a subcommand: mine)")
    from relforge.outputs import guard_file

    guard_file(out, overwrite=overwrite)
    cfg = stage_config(
        ctx,
        RetrieveConfig,
        "retrieve",
        config_file,
        sets,
        flags,
        command="relforge retrieve",
        convert={"index_dir": _str_or_none, "cache_dir": _str_or_none, "doc_fields": comma_list},
    )
    res = run(
        RetrieveStageConfig(**cfg.model_dump()),
        RetrieveInputs(corpus=corpus, queries=queries),
        RetrieveOutputs(candidates=out),
        tag_prefix="relforge-",
    )
    how = f" (dense encoder precision {res.dense_precision})" if res.dense_precision else ""
    typer.secho(
        f"wrote {res.candidate_lines} lines for {res.synthetic_queries} queries to {out}{how}", err=True
    )


@retrieve_app.command("mine")
def mine_cmd(
    ctx: typer.Context,
    run: Path = typer.Option(..., "--run", help="TREC run (from relforge retrieve)"),
    qrels: Path = typer.Option(..., "--qrels", help="positives (BEIR TSV or TREC qrels)"),
    out: Path = typer.Option(..., "--out", help="candidates JSONL to write (one mined negative a line)"),
    corpus: Optional[Path] = typer.Option(
        None, "--corpus", help="pool for random negatives [default: docs in the run]"
    ),
    rank_min: int = typer.Option(_M.rank_min, "--rank-min"),
    rank_max: int = typer.Option(_M.rank_max, "--rank-max"),
    num_negatives: int = typer.Option(_M.num_negatives, "--num-negatives"),
    random_share: float = typer.Option(_M.random_share, "--random-share", help="share of random negatives"),
    sampling: str = typer.Option(_M.sampling, "--sampling", help="top | random"),
    margin: Optional[float] = typer.Option(None, "--margin", help="negative score < positive score - margin"),
    relative_margin: Optional[float] = typer.Option(None, "--relative-margin", help="neg < pos * (1 - m)"),
    seed: int = typer.Option(_M.seed, "--seed"),
    source: Optional[str] = typer.Option(
        None, "--source", help="the run's retrieval method [default: the run's tag, relforge- removed]"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    config_file: Optional[Path] = config_option("retrieve.mining", "MiningConfig"),
    sets: list[str] = set_option("num_negatives=5"),
) -> None:
    """Pick hard negatives per query from a run: positives excluded, rank window, margin, random share."""
    flags = dict(locals())
    from relforge.data import atomic_write, iter_corpus, read_qrels, read_run
    from relforge.outputs import guard_file
    from relforge.retrieve.candidates import mined_candidates, run_source, write_candidates
    from relforge.retrieve.mining import mine_negatives_split

    guard_file(out, overwrite=overwrite)
    cfg = stage_config(
        ctx, MiningConfig, "retrieve.mining", config_file, sets, flags, command="relforge retrieve mine"
    )
    ids = [d.id for d in iter_corpus(corpus)] if corpus else None
    stats: dict = {}
    run_ = read_run(run)
    negs = mine_negatives_split(run_, read_qrels(qrels), cfg, corpus_ids=ids, stats=stats)
    write_candidates(out, mined_candidates(negs, run_, source or run_source(run)))
    print_mining_stats(stats)
    with atomic_write(out.with_name(out.name.removesuffix(".jsonl") + ".stats.json")) as fh:
        json.dump({"config": cfg.model_dump(), **stats}, fh, indent=2)


def print_mining_stats(stats: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"mine: {stats['hard']} hard + {stats['random']} random negatives for {stats['queries']} queries"
    )
    t.add_column("count")
    t.add_column("n", justify="right")
    for reason, n in stats["skipped"].items():
        t.add_row(f"skipped: {reason}", str(n))
    for k in ("queries_without_positive", "queries_not_in_run", "queries_margin_unchecked", "queries_short"):
        t.add_row(k, str(stats[k]))
    for k in ("mean_positive_score", "mean_negative_score"):
        t.add_row(k, "-" if stats[k] is None else f"{stats[k]:.4f}")
    Console(stderr=True).print(t)


def register(app: typer.Typer) -> None:
    """Add ``relforge retrieve`` (and ``retrieve mine``) to the root app."""
    app.add_typer(retrieve_app, name="retrieve")
