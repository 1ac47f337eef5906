"""CLI commands of relforge.dataset (registered by relforge.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from relforge.dataset.config import GroupConfig

_D = GroupConfig()


def _read_judgments(path: Path):
    """Judgments via relforge.judge.read_judgments when available, else plain JSONL (qid, docid, grade)."""
    try:
        from relforge.judge import read_judgments  # type: ignore[attr-defined]
    except ImportError:
        from relforge.data import iter_jsonl

        return [obj for _, obj in iter_jsonl(path)]
    return read_judgments(path)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    ds_app = typer.Typer(help="Build training groups from judged candidates.", no_args_is_help=True)
    app.add_typer(ds_app, name="dataset")

    @ds_app.command("build")
    def build(
        queries: Path = typer.Option(..., help="queries.jsonl (BEIR)."),
        positives: Path = typer.Option(..., help="qrels of the source positives (BEIR TSV or TREC)."),
        run: Path = typer.Option(..., help="candidate run (TREC)."),
        corpus: Path = typer.Option(..., help="corpus.jsonl (BEIR)."),
        out: Path = typer.Option(..., help="output folder (dataset/, groups.jsonl, summary.json)."),
        judgments: Path | None = typer.Option(
            None, help="judgments JSONL; omit for the unlabelled baseline."
        ),
        group_size: int = typer.Option(_D.group_size, help="documents per group (1 positive + n negatives)."),
        mix: str = typer.Option(",".join(_D.mix), help="buckets in draw order, e.g. 'hard:4,soft,random'."),
        sampling: str = typer.Option(_D.sampling, help="inside a bucket: rank | random."),
        depth: int = typer.Option(_D.depth, help="candidates per query considered."),
        false_negatives: str = typer.Option(
            _D.false_negatives, help="false-negative policy: drop | promote | demote | keep-as-soft."
        ),
        bad_positive: str = typer.Option(
            _D.bad_positive, help="own document graded low: drop (the query) | keep-as-soft | demote."
        ),
        unjudged: str = typer.Option(_D.unjudged, help="unjudged candidates: negative | drop."),
        seed: int = typer.Option(_D.seed, help="random seed."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="write into a non-empty folder relforge did not create"
        ),
    ) -> None:
        """Re-bucket judged candidates and write LCE groups."""
        import json

        from pydantic import ValidationError

        from relforge.data import read_corpus, read_qrels, read_queries, read_run
        from relforge.dataset.groups import build_groups, policy_lines, write_groups
        from relforge.errors import UsageError

        try:
            cfg = GroupConfig(
                group_size=group_size,
                mix=[m for m in mix.split(",") if m.strip()],
                sampling=sampling,
                depth=depth,
                false_negatives=false_negatives,
                bad_positive=bad_positive,
                unjudged=unjudged,
                seed=seed,
            )
        except ValidationError as e:
            raise UsageError(
                "; ".join(f"--{'-'.join(map(str, er['loc']))}: {er['msg']}" for er in e.errors())
            ) from None
        from relforge.outputs import claim_dir, guard_dir

        guard_dir(out, overwrite=overwrite)
        js = _read_judgments(judgments) if judgments else None
        ds, summary = build_groups(
            read_queries(queries), read_qrels(positives), read_run(run), read_corpus(corpus), js, cfg
        )
        write_groups(ds, summary, claim_dir(out))
        unknown = {k: summary["judgments"][k] for k in ("unknown_query", "unknown_document")}
        if any(unknown.values()):
            typer.echo(
                f"warning: {unknown['unknown_query']} judgments name unknown queries and "
                f"{unknown['unknown_document']} unknown documents; they were not used",
                err=True,
            )
        if js is not None:
            for line in policy_lines(summary):
                typer.echo(line, err=True)
        typer.echo(
            json.dumps(
                {
                    k: summary[k]
                    for k in ("groups", "queries_kept", "dropped_queries", "candidates", "negatives_drawn")
                }
            )
        )
