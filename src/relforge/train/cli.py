"""CLI commands of relforge.train: ``relforge train`` and ``relforge rerank`` (registered by relforge.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from relforge.cli_config import comma_list, config_option, doc_fields_option, set_option, stage_config
from relforge.train.config import RerankConfig, TrainConfig

_D = TrainConfig()
_R = RerankConfig()

#: the keys of the training summary that ``relforge train`` prints (one JSON line), when present
_SUMMARY_KEYS = ("model_dir", "steps", "train_time_s", "pairs_per_s", "best_dev_ndcg@10", "selected")


def _train_config(ctx: typer.Context, flags: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of ``--config``, ``--set`` and the flags given (each flag is named after its
    field); an invalid value is one UsageError naming the flag, key or file."""
    return stage_config(
        ctx,
        TrainConfig,
        "train",
        flags["config_file"],
        flags["sets"],
        flags,
        command="relforge train",
        hints={"soft_loss": "--loss"},
    )


def _print_train_summary(summary: dict[str, Any]) -> None:
    typer.echo(json.dumps({k: summary[k] for k in _SUMMARY_KEYS if k in summary}))


def train(
    ctx: typer.Context,
    groups: Path = typer.Option(..., help="groups from `relforge dataset build` (folder or groups.jsonl)."),
    out: Path = typer.Option(
        ..., help="model folder to write (CrossEncoder(out) / SentenceTransformer(out))."
    ),
    base: str = typer.Option(_D.base, help="backbone: minilm, a folder or a hub id."),
    loss: str = typer.Option(
        _D.loss, help="lce | mnrl | kl | margin_mse (cross or bi); bce | lambda | listnet (cross)."
    ),
    kind: str = typer.Option(_D.kind, help="cross | bi."),
    epochs: float = typer.Option(_D.epochs, help="passes over the groups."),
    lr: float = typer.Option(_D.lr, help="peak learning rate."),
    warmup_ratio: float = typer.Option(_D.warmup_ratio, help="fraction of warm-up steps."),
    max_length: int = typer.Option(_D.max_length, help="token limit of a pair (cross) / a text (bi)."),
    batch_groups: int = typer.Option(_D.batch_groups, help="groups per step."),
    max_steps: int = typer.Option(_D.max_steps, help="stop after N steps (-1: run the epochs)."),
    negatives: int | None = typer.Option(_D.negatives, help="negatives per group to use (default all)."),
    temperature: float = typer.Option(_D.temperature, help="LCE temperature."),
    teacher_temperature: float = typer.Option(
        _D.teacher_temperature, help="kl: the teacher softmax is over expected grades / this."
    ),
    scale: float = typer.Option(
        _D.scale,
        help="bi: cosine similarities are multiplied by this (inverse temperature) in lce / kl / margin_mse.",
    ),
    precision: str = typer.Option(
        _D.precision,
        help="auto (bf16/fp16 on GPU, fp32 on CPU) | fp32 | bf16 (CPU: bf16 autocast, fp32 weights) | fp16 (GPU).",
    ),
    seed: int = typer.Option(_D.seed, help="random seed."),
    dev_corpus: Path | None = typer.Option(None, help="dev corpus.jsonl."),
    dev_queries: Path | None = typer.Option(None, help="dev queries.jsonl."),
    dev_qrels: Path | None = typer.Option(None, help="dev qrels (graded)."),
    dev_run: Path | None = typer.Option(None, help="dev first-stage run (TREC) to rerank."),
    dev_top_k: int = typer.Option(_D.dev_top_k, help="dev run depth reranked."),
    eval_steps: int | None = typer.Option(_D.eval_steps, help="evaluate every N steps (default 4x per run)."),
    logging_steps: int = typer.Option(_D.logging_steps, help="log the training loss every N steps."),
    keep_start: bool = typer.Option(
        _D.keep_start,
        "--keep-start/--no-keep-start",
        help="with a dev set: the untrained start competes with the checkpoints (kept if none beats it).",
    ),
    interpolate: list[float] = typer.Option(
        [],
        "--interpolate",
        help="WiSE-FT alpha in (0, 1), repeatable: (1-alpha)*start + alpha*checkpoint competes on dev too.",
    ),
    selection: str = typer.Option(
        _D.selection,
        help="best (highest dev nDCG@10) | closest (nearest the start among those not significantly below the best).",
    ),
    selection_p: float = typer.Option(
        _D.selection_p, help="closest: p-value under which a candidate is worse."
    ),
    config_file: Path | None = config_option(
        "train",
        "TrainConfig",
        "; variants, soft_loss are relforge run's: one model here, the plain/judged one",
    ),
    sets: list[str] = set_option("epochs=2"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
) -> None:
    """Train a reranker (exact LCE cross-encoder by default) on relforge groups."""
    flags = dict(locals())
    from relforge.outputs import guard_dir
    from relforge.train.run import TrainInputs, run
    from relforge.train.trainer import check_loss

    cfg = _train_config(ctx, flags)
    check_loss(cfg.loss, cfg.kind)
    guard_dir(out, overwrite=overwrite)
    inputs = TrainInputs(
        groups=groups, dev_corpus=dev_corpus, dev_queries=dev_queries, dev_qrels=dev_qrels, dev_run=dev_run
    )
    _print_train_summary(run(cfg, inputs, out).as_json())


def rerank_cmd(
    ctx: typer.Context,
    model: str = typer.Option(..., help="model folder (trained by relforge or any CrossEncoder), or minilm."),
    corpus: Path = typer.Option(..., help="corpus.jsonl."),
    queries: Path = typer.Option(..., help="queries.jsonl."),
    run: Path = typer.Option(..., help="first-stage run (TREC)."),
    out: Path = typer.Option(..., help="reranked run to write (TREC)."),
    top_k: int = typer.Option(_R.top_k, min=1, help="documents per query to rerank."),
    kind: str = typer.Option(_D.kind, help="cross | bi."),
    backend: str = typer.Option(
        _R.backend,
        help="auto (onnx for cross, torch for bi) | onnx | onnx-int8 (faster, approximate) | torch.",
    ),
    batch_size: int = typer.Option(_R.batch_size, min=1, help="pairs per forward pass."),
    max_length: int | None = typer.Option(
        _R.max_length, min=8, help="token limit of a pair (default: the model's)."
    ),
    overwrite: bool = typer.Option(False, help="replace existing output files"),
    precision: str = typer.Option(
        _R.precision,
        help="fp32 (exact, the backend as given) | bf16 (torch) | int8 (onnx-int8) | auto (bf16 if the CPU has it).",
    ),
    doc_fields: str = doc_fields_option(),
    config_file: Path | None = config_option(
        "rerank",
        "RerankConfig",
        "; first_stage, backbone are relforge run's; a pipeline YAML's top_k defaults to 20",
    ),
    sets: list[str] = set_option("top_k=20"),
) -> None:
    """Rerank the top-k of a run and write a TREC run."""
    flags = dict(locals())
    from relforge.outputs import guard_file
    from relforge.train.rerank import rerank_plan
    from relforge.train.rerank_run import RerankInputs
    from relforge.train.rerank_run import run as rerank_run

    cfg = stage_config(
        ctx,
        RerankConfig,
        "rerank",
        config_file,
        sets,
        flags,
        command="relforge rerank",
        hints=_RERANK_HINTS,
        convert={"doc_fields": comma_list},
    )
    rerank_plan(kind, cfg.backend, cfg.precision)  # a bad --kind / --backend / --precision, said as before
    guard_file(out, overwrite=overwrite)
    s = rerank_run(cfg, RerankInputs(corpus=corpus, queries=queries, run=run), out, model=model, kind=kind)
    typer.echo(
        f"wrote {s.lines} lines for {s.queries} queries to {out} (backend {s.backend}, precision {s.precision})"
    )


#: the rerank section's pipeline-only keys and what ``relforge rerank`` takes instead
_RERANK_HINTS = {"first_stage": "--run", "backbone": "--model minilm --kind bi"}


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``rerank`` to the root app."""
    app.command("train")(train)
    app.command("rerank")(rerank_cmd)
