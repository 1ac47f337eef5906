"""CLI commands of relforge.dataset (registered by relforge.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from relforge.cli_config import comma_list, config_option, doc_fields_option, set_option
from relforge.dataset.config import GroupConfig

_D = GroupConfig()


def build(
    ctx: typer.Context,
    queries: Path = typer.Option(..., help="queries.jsonl (BEIR)."),
    positives: Path = typer.Option(..., help="qrels of the source positives (BEIR TSV or TREC)."),
    run: Path = typer.Option(..., help="candidate run (TREC)."),
    corpus: Path = typer.Option(..., help="corpus.jsonl (BEIR)."),
    out: Path = typer.Option(..., help="output folder (dataset/, groups.jsonl, summary.json)."),
    judgments: Path | None = typer.Option(None, help="judgments JSONL; omit for the unlabelled baseline."),
    negatives: Path | None = typer.Option(
        None,
        help="mined negatives (`relforge retrieve mine` JSONL, or a pipeline run's negatives.jsonl; old files read too): "
        "each query's candidates are then its positives + these (as in `relforge run`); omit: the whole run.",
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
    min_positive_grade: int = typer.Option(
        _D.min_positive_grade, help="an own document graded below this is a bad positive."
    ),
    false_negative_grade: int = typer.Option(
        _D.false_negative_grade, help="a candidate graded at least this is a false negative."
    ),
    teacher_unjudged: float = typer.Option(
        _D.teacher_unjudged, help="teacher score of unjudged and random negatives (soft losses)."
    ),
    unjudged_positive_grade: int = typer.Option(
        _D.unjudged_positive_grade, help="label of a positive the judge did not grade (listwise losses)."
    ),
    incomplete: str = typer.Option(_D.incomplete, help="a group short of negatives: drop."),
    seed: int = typer.Option(_D.seed, help="random seed."),
    doc_fields: str = doc_fields_option(),
    config_file: Path | None = config_option(
        "groups", "GroupConfig", "; soft_policies is relforge run's soft variant"
    ),
    sets: list[str] = set_option("group_size=6"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
) -> None:
    """Re-bucket judged candidates and write LCE groups."""
    flags = dict(locals())
    import json

    from relforge.dataset.run import GroupsInputs
    from relforge.dataset.run import run as build_run
    from relforge.outputs import guard_dir

    cfg = _group_config(ctx, flags)
    guard_dir(out, overwrite=overwrite)
    files = GroupsInputs(
        queries=queries, positives=positives, run=run, corpus=corpus, judgments=judgments, negatives=negatives
    )
    result = build_run(cfg, files, out, log=lambda line: typer.echo(line, err=True))
    (summary,) = result.variants.values()
    data = summary.as_json()
    keys = ("groups", "queries_kept", "dropped_queries", "candidates", "negatives_drawn")
    typer.echo(json.dumps({k: data[k] for k in keys}))


def _group_config(ctx: typer.Context, flags: dict[str, Any]) -> GroupConfig:
    """The ``GroupConfig`` of ``--config``, ``--set`` and the flags given (each named after its field;
    ``--mix`` comma-separated); an invalid value is a UsageError naming the flag, key or file."""
    from relforge.cli_config import stage_config

    return stage_config(
        ctx,
        GroupConfig,
        "groups",
        flags["config_file"],
        flags["sets"],
        flags,
        command="relforge dataset build",
        convert={"mix": comma_list, "doc_fields": comma_list},
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    ds_app = typer.Typer(help="Build training groups from judged candidates.", no_args_is_help=True)
    app.add_typer(ds_app, name="dataset")
    ds_app.command("build")(build)
