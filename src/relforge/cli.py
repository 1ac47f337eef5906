"""The thin command-line layer. Each stage registers its own commands from ``relforge/<stage>/cli.py``
(``register(app)``); heavy imports happen inside the commands so ``relforge --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from relforge.errors import EXIT_RUNTIME, RelforgeError

app = typer.Typer(
    name="relforge",
    help="Graded relevance datasets from small open LLMs, and fast rerankers trained on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: stage modules that contribute commands, in the order they appear in --help
STAGES = [
    "data",
    "llm",
    "generate",
    "retrieve",
    "judge",
    "dataset",
    "train",
    "evaluate",
    "report",
    "pipeline",
    "review",
]


def _print_version(value: bool) -> None:
    if value:
        from relforge import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
        expose_value=False,
    ),
) -> None:
    """Graded relevance datasets from small open LLMs, and fast rerankers trained on them."""


def _register_all() -> None:
    for stage in STAGES:
        mod = importlib.import_module(f"relforge.{stage}.cli")
        mod.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (tests call ``main([...])``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, prog_name="relforge", standalone_mode=False)
    except RelforgeError as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        return e.exit_code
    except KeyboardInterrupt:
        typer.secho("interrupted: finished work is cached; rerun the same command to resume.", err=True)
        return 130
    except SystemExit as e:  # typer.Exit inside commands
        return int(e.code or 0)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 130
    except Exception as e:  # usage errors: typer >= 0.24 vendors click (typer._click), older typer uses click
        import click

        if isinstance(e, (typer.TyperException, click.ClickException)) and hasattr(e, "show"):
            e.show()
            return int(getattr(e, "exit_code", 2))
        if isinstance(e, (click.exceptions.Abort,)):
            return 130
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        if os.environ.get("RELFORGE_DEBUG"):
            raise
        from relforge.errors import EXIT_USAGE, missing_extra

        hint = missing_extra(e) if isinstance(e, ModuleNotFoundError) else None
        if hint is not None:
            typer.secho(f"error: {hint}", err=True, fg="red")
            return EXIT_USAGE
        typer.secho(
            f"error: {type(e).__name__}: {e} (set RELFORGE_DEBUG=1 for a traceback)", err=True, fg="red"
        )
        return EXIT_RUNTIME
    return 0


if __name__ == "__main__":
    sys.exit(main())
