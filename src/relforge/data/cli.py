"""``relforge data``: import MedQuAD, convert formats, dataset statistics, packaged samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from relforge.cli_config import config_option, set_option, stage_config
from relforge.data.config import DEFAULT_FRACTIONS, DEFAULT_SEED, FORMATS, KINDS, ImportConfig

_I = ImportConfig()  # the import flags' defaults

data_app = typer.Typer(
    help="Data: import MedQuAD, pick evaluation questions (import), convert between formats, statistics, "
    "validation, packaged samples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.add_typer(data_app, name="data")


def _console():
    from rich.console import Console

    return Console()


def _table(title: str, header: list[str], rows: list[list[Any]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


def _parse_fractions(spec: str) -> tuple[float, float, float]:
    from relforge.errors import UsageError

    try:
        vals = tuple(float(x) for x in spec.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise UsageError(
            f"--fractions {spec!r}: give three train,dev,test shares, e.g. --fractions 0.8,0.1,0.1"
        )
    return vals  # type: ignore[return-value]


@data_app.command("medquad")
def medquad_cmd(
    path: Path = typer.Argument(..., help="MedQuAD folder or medquad-xml.tar.xz (streamed, not extracted)"),
    out: Path = typer.Option(..., "--out", "-o", help="BEIR folder to write"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="salt of the document-to-split hash"),
    fractions: str = typer.Option(
        ",".join(str(f) for f in DEFAULT_FRACTIONS), "--fractions", help="train,dev,test shares of documents"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
) -> None:
    """Import MedQuAD into BEIR: answers = documents, questions = queries, split by document."""
    from relforge.data.medquad import import_medquad
    from relforge.outputs import claim_dir, guard_dir

    guard_dir(out, overwrite=overwrite)
    fractions_ = _parse_fractions(fractions)
    s = import_medquad(path, claim_dir(out), seed=seed, fractions=fractions_)
    con = _console()
    rows = [
        [src, c["answered"], c.get("train", 0), c.get("dev", 0), c.get("test", 0)]
        for src, c in s["per_source"].items()
    ]
    rows.append(
        ["total", s["answered_pairs"], *(s["splits"][k]["queries"] for k in ("train", "dev", "test"))]
    )
    con.print(
        _table(
            f"MedQuAD -> {out}: answered pairs per source and split",
            ["source", "pairs", "train", "dev", "test"],
            rows,
        )
    )
    skipped = [[f"removed subset {k}", v] for k, v in s["skipped_by_subset"].items()]
    skipped += [[k.replace("_", " "), v] for k, v in s["skipped"].items() if k != "removed_subset"]
    con.print(_table("skipped pairs", ["reason", "pairs"], skipped))
    d = s["duplicate_answer_texts"]
    con.print(
        f"{s['answered_pairs']} answered pairs of {s['pairs_total']} ({s['skipped_total']} skipped) from "
        f"{s['files']['xml']} XML files; split documents train/dev/test = "
        + "/".join(str(s["splits"][k]["documents"]) for k in ("train", "dev", "test"))
        + f"; {d['documents']} answers repeat an earlier answer's text (metadata.duplicate_of); "
        f"{s['question_texts_in_several_splits']} question texts in several splits; {s['elapsed_s']} s"
    )


@data_app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="input file (or saved datasets folder)"),
    dst: Path = typer.Argument(..., help="output file (or folder for --to hf)"),
    kind: str = typer.Option(..., "--kind", "-k", help=f"record kind: {' | '.join(KINDS)}"),
    from_format: Optional[str] = typer.Option(
        None, "--from", help=f"input format ({' | '.join(FORMATS)}); default: from the file name"
    ),
    to_format: Optional[str] = typer.Option(None, "--to", help="output format; default: from the file name"),
    columns: Optional[str] = typer.Option(
        None, "--columns", help="input column mapping, e.g. id=docid,text=body"
    ),
    out_columns: Optional[str] = typer.Option(
        None, "--out-columns", help="output column names, e.g. id=docid"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace an existing output file / write into a non-empty folder"
    ),
) -> None:
    """Convert corpus / queries / qrels / run between BEIR, TREC, JSONL, CSV, TSV, Parquet and HF datasets."""
    from relforge.data.formats import convert

    r = convert(
        src,
        dst,
        kind,
        from_format=from_format,
        to_format=to_format,
        columns=columns,
        out_columns=out_columns,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {r['records']} {kind} records ({r['from']} -> {r['to']}) to {dst}")


def _len_row(name: str, s: dict[str, Any]) -> list[Any]:
    return [name, s["min"], s["p5"], s["p25"], s["p50"], s["p75"], s["p95"], s["p99"], s["max"], s["mean"]]


@data_app.command("stats")
def stats_cmd(
    folder: Path = typer.Argument(..., help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"),
    as_json: bool = typer.Option(False, "--json", help="print the statistics as JSON"),
) -> None:
    """Counts, label distribution per qrels split, word-length percentiles, split sizes."""
    from relforge.data.stats import beir_stats

    s = beir_stats(folder)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    con = _console()
    rows = []
    for name in ("corpus", "queries"):
        if name in s:
            c = s[name]
            rows.append([name, c["count"], c["duplicate_ids"], c["empty"]])
    con.print(_table(f"{folder}", ["file", "records", "duplicate ids", "empty"], rows))
    lens = [_len_row(n, s[n]["words"]) for n in ("corpus", "queries") if n in s]
    if "corpus" in s:
        lens.insert(1, _len_row("titles", s["corpus"]["title_words"]))
    con.print(
        _table("length in words", ["", "min", "p5", "p25", "p50", "p75", "p95", "p99", "max", "mean"], lens)
    )
    if s["qrels"]:
        grades = sorted({g for q in s["qrels"].values() for g in q["labels"]}, key=int)
        rows = [
            [
                split,
                q["queries"],
                q["pairs"],
                *(q["labels"].get(g, 0) for g in grades),
                q["duplicate_pairs"],
                q["unknown_queries"],
                q["unknown_documents"],
            ]
            for split, q in s["qrels"].items()
        ]
        con.print(
            _table(
                "qrels per split: rows per grade",
                ["split", "queries", "pairs", *grades, "dup pairs", "unknown q", "unknown d"],
                rows,
            )
        )
        for split, q in s["qrels"].items():
            con.print(
                f"labels {split}: "
                + " ".join(f"grade {g}={n}" for g, n in q["labels"].items())
                + (
                    f" ({q['conflicting_duplicates']} pairs judged twice with different grades: the last row "
                    "wins)"
                    if q["conflicting_duplicates"]
                    else ""
                )
            )
    if "queries_without_qrels" in s:
        con.print(f"queries in no qrels split: {s['queries_without_qrels']}")
    imp = s.get("import_summary")
    if imp:
        skipped = ", ".join(f"{k}={v}" for k, v in imp.get("skipped", {}).items())
        con.print(
            f"import summary: {imp['answered_pairs']} answered pairs"
            + (f" of {imp['pairs_total']}" if "pairs_total" in imp else "")
            + (f"; skipped {imp.get('skipped_total')} ({skipped})" if skipped else "")
        )
    con.print("split sizes (queries): " + ", ".join(f"{k}={v}" for k, v in s["splits"].items()))


@data_app.command("validate")
def validate_cmd(
    folder: Path = typer.Argument(..., help="BEIR folder to check (streams; holds only id sets)"),
) -> None:
    """Check a BEIR folder: JSON, ids, empty texts, encodings, grades, qrels naming unknown ids.

    Hard errors stop at the first bad line (exit 5, file:line); duplicates and empty documents are counted
    and make the command fail at the end (exit 5)."""
    from relforge.data.io import beir_file, check_qrels_file, iter_queries, validate_corpus
    from relforge.data.stats import _qrels_files
    from relforge.errors import DataError, MissingInputError

    if not folder.is_dir():
        raise MissingInputError(f"{folder}: no such folder")
    v = validate_corpus(beir_file(folder, "corpus.jsonl"))
    qids = {q.id for q in iter_queries(beir_file(folder, "queries.jsonl"))}
    if not qids:
        raise DataError("no queries", path=beir_file(folder, "queries.jsonl"))
    conflicts: dict[str, dict] = {}
    rows = {
        split: check_qrels_file(p, qids, v["ids"], stats=conflicts.setdefault(split, {}))
        for split, p in _qrels_files(folder).items()
    }
    typer.echo(
        f"corpus: {v['documents']} documents, {v['duplicates']} duplicate ids, {v['empty']} empty; "
        f"queries: {len(qids)}; qrels rows: " + ", ".join(f"{k}={n}" for k, n in rows.items())
    )
    problems = []
    if v["duplicates"]:
        problems.append(f"{v['duplicates']} duplicate document ids (lines {v['duplicate_lines']})")
    if v["empty"]:
        problems.append(f"{v['empty']} empty documents (lines {v['empty_lines']})")
    for split, c in conflicts.items():
        if c["conflicts"]:
            problems.append(
                f"qrels/{split}: {c['conflicts']} (query, doc) pairs judged twice with different grades "
                f"(lines {c['conflict_lines']})"
            )
    if problems:
        corpus_only = not any(c["conflicts"] for c in conflicts.values())
        raise DataError(
            "; ".join(problems), path=beir_file(folder, "corpus.jsonl") if corpus_only else folder
        )


@data_app.command("sample")
def sample_cmd(
    name: str = typer.Argument(..., help="packaged sample: medquad | liveqa-med"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to copy the sample into"),
    force: bool = typer.Option(
        False, "--force", "--overwrite", help="replace the files of an existing folder (deletes nothing)"
    ),
) -> None:
    """Copy a packaged BEIR sample (with its README and licence attribution) out of the package."""
    import shutil

    from relforge.data.samples import sample_path
    from relforge.errors import UsageError
    from relforge.outputs import claim_dir, guard_dir

    src = sample_path(name)
    guard_dir(out, overwrite=force)
    if out.is_dir() and any(out.iterdir()) and not force:  # even our own copy: it may have been edited
        raise UsageError(
            f"--out {out}: the folder exists and is not empty; choose another --out or add --force"
        )
    claim_dir(out)
    shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    n = sum(1 for p in out.rglob("*") if p.is_file())
    typer.echo(f"copied sample {name!r} ({n} files) to {out}")


@data_app.command("import")
def import_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="folder to write (the pipeline's data/ files)"),
    source: str = typer.Option(
        _I.source, "--source", help="sample:medquad, a BEIR folder, or a MedQuAD .tar.xz / XML folder"
    ),
    max_docs: Optional[int] = typer.Option(
        _I.max_docs, "--max-docs", help="cap the corpus (judged documents are always kept)"
    ),
    test_split: str = typer.Option(
        _I.test_split, "--test-split", help="qrels split(s) of the evaluation questions"
    ),
    test_queries: Optional[int] = typer.Option(
        _I.test_queries, "--test-queries", help="how many (default all)"
    ),
    train_split: Optional[str] = typer.Option(
        _I.train_split, "--train-split", help="human training questions of this split (none: generated ones)"
    ),
    train_queries: Optional[int] = typer.Option(_I.train_queries, "--train-queries"),
    dev_split: Optional[str] = typer.Option(
        _I.dev_split, "--dev-split", help="questions for checkpoint selection"
    ),
    dev_queries: Optional[int] = typer.Option(_I.dev_queries, "--dev-queries"),
    seed: int = typer.Option(_I.seed, "--seed", help="seed of the question and document sampling"),
    config_file: Optional[Path] = config_option("data", "ImportConfig"),
    sets: list[str] = set_option("test_queries=50"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Pick the evaluation (and training / dev) questions and the corpus, as the pipeline's stage import does."""
    flags = dict(locals())
    from relforge.data.io import resolve_data_source
    from relforge.data.run import ImportInputs, run
    from relforge.outputs import claim_dir, guard_dir

    cfg = stage_config(ctx, ImportConfig, "data", config_file, sets, flags, command="relforge data import")
    src = resolve_data_source(cfg.source)
    guard_dir(out, overwrite=overwrite)
    summary = run(cfg, ImportInputs(source=src), claim_dir(out), log=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2, ensure_ascii=False))
        return
    picked = [["test", summary.test_split, summary.test_queries]]
    picked += [["train", summary.train_split, summary.train_queries]] if summary.train_split else []
    picked += [["dev", summary.dev_split, summary.dev_queries]] if summary.dev_split else []
    con = _console()
    con.print(_table("questions picked", ["role", "split", "questions"], picked))
    con.print(f"{cfg.source} -> {out}: {summary.documents} of {summary.documents_in_source} documents kept")
