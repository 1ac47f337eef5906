"""CLI commands of relforge.report (registered by relforge.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_cmd(
    artifacts_dir: Path = typer.Argument(..., help="The pipeline's artifacts folder (see relforge.report)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output HTML file (default: ARTIFACTS_DIR/report.html)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on an unreadable artifact instead of flagging it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
) -> None:
    """Render one self-contained report.html (tables, plots inlined) from an artifacts folder."""
    from relforge.report.render import ARTIFACTS, load_artifacts, write_report

    if out is not None:
        from relforge.outputs import guard_file

        guard_file(out, overwrite=overwrite)
    art = load_artifacts(artifacts_dir, strict=strict)
    path = write_report(art, out, strict=strict)
    missing = [f for k, f in ARTIFACTS.items() if not art["present"][k]]
    if missing:
        typer.echo(f"not run (no file): {', '.join(missing)}", err=True)
    for key, msg in art["errors"].items():
        typer.secho(f"warning: {ARTIFACTS[key]} could not be read: {msg}", err=True, fg="yellow")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("report")(report_cmd)
