"""CLI of relforge.review: ``relforge review`` (the labelling web app) and ``relforge review export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from relforge.review.config import ExportConfig, ReviewConfig

_D = ReviewConfig()

review_app = typer.Typer(
    name="review",
    help="A local web page for curating human labels (keyboard first; SQLite; agreement; export).",
    invoke_without_command=True,
    add_completion=False,
)


def _config(cls, **kw):
    from pydantic import ValidationError

    from relforge.errors import UsageError

    try:
        return cls(**kw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        flag = {"default_queue": "queue", "annotators": "annotator"}.get(loc, loc).replace("_", "-")
        raise UsageError(f"invalid --{flag} {err.get('input')!r}: {err['msg']}") from None


@review_app.callback()
def review(
    ctx: typer.Context,
    db: Path = typer.Option(None, "--db", help="The review database (SQLite; created if missing)."),
    corpus: Path = typer.Option(None, "--corpus", help="BEIR corpus.jsonl."),
    queries: Path = typer.Option(None, "--queries", help="BEIR queries.jsonl."),
    pairs: Path = typer.Option(
        None, "--pairs", help="Pairs: BEIR/TREC qrels, TREC run or qid<TAB>docid TSV."
    ),
    judgments: Path = typer.Option(None, "--judgments", help="judgments.jsonl from `relforge judge`."),
    qrels: Path = typer.Option(None, "--qrels", help="Existing human labels to pre-fill (BEIR/TREC qrels)."),
    host: str = typer.Option(_D.host, "--host", help="Address to bind (not loopback: a token is required)."),
    port: int = typer.Option(_D.port, "--port", help="Port."),
    token: str = typer.Option(None, "--token", envvar="RELFORGE_REVIEW_TOKEN", help="Access token."),
    template: str = typer.Option(_D.template, "--template", help="Judge template whose scale is shown."),
    train_target: int = typer.Option(_D.train_target, "--train-target", help="Balanced training pairs."),
    val_target: int = typer.Option(_D.val_target, "--val-target", help="Balanced validation pairs."),
    val_fraction: float = typer.Option(_D.val_fraction, "--val-fraction", help="Share of queries held out."),
    queue: str = typer.Option(_D.default_queue, "--queue", help="Default queue."),
    show_judge: bool = typer.Option(_D.show_judge, "--show-judge", help="Show the judge's view at first."),
    top_k: int = typer.Option(None, "--top-k", help="For a TREC run: each query's top k."),
    seed: int = typer.Option(_D.seed, "--seed", help="Seed of the split and the random queue."),
    prepare_only: bool = typer.Option(False, "--prepare-only", help="Build the database, do not serve."),
) -> None:
    """Start the labelling web app on the pairs (or an existing --db) and print its URL."""
    if ctx.invoked_subcommand is not None:
        return
    from relforge.errors import UsageError

    if db is None:
        if all(v is None for v in (corpus, queries, pairs)):
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        raise UsageError("relforge review needs --db (the review database to create or reopen)")
    cfg = _config(
        ReviewConfig, host=host, port=port, token=token, template=template, train_target=train_target,
        val_target=val_target, val_fraction=val_fraction, default_queue=queue, show_judge=show_judge,
        top_k=top_k, seed=seed,
    )  # fmt: skip
    from relforge.review.run import prepare, serve

    inputs = {"corpus": corpus, "queries": queries, "pairs": pairs, "judgments": judgments, "qrels": qrels}
    summary = prepare(cfg, db=db, **inputs)
    typer.echo(json.dumps(summary))
    if not prepare_only:
        serve(cfg, db, echo=typer.echo)


@review_app.command("export")
def export_cmd(
    db: Path = typer.Option(..., "--db", help="The review database."),
    out: Path = typer.Option(..., "--out", help="Output folder (BEIR qrels, TREC qrels, Label Studio JSON)."),
    resolve: str = typer.Option("latest", "--resolve", help="latest or median of the annotators' labels."),
    annotator: list[str] = typer.Option(None, "--annotator", help="Only these annotators (repeatable)."),
    include_flagged: bool = typer.Option(False, "--include-flagged", help="Keep flagged pairs in the qrels."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
) -> None:
    """Write OUT/qrels/{train,dev}.tsv (BEIR; `relforge judge finetune` takes them), OUT/qrels.trec,
    OUT/label-studio.json and OUT/{corpus,queries}.jsonl from the review database."""
    from relforge.outputs import prepare_dir
    from relforge.review.export import export

    prepare_dir(out, overwrite=overwrite)
    cfg = _config(
        ExportConfig, resolve=resolve, annotators=annotator or None, include_flagged=include_flagged
    )
    typer.echo(json.dumps(export(cfg, db, out), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``relforge review`` (and ``relforge review export``) to the root app."""
    app.add_typer(review_app, name="review")
