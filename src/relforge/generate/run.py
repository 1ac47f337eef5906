"""The generate stage's one entry point: a corpus in, synthetic queries and their positives out.

``run(cfg, inputs, out, llm=...)`` selects documents (``cfg.select``), has the LLM write queries for
them, filters the queries (``cfg.filters``) and writes the files of :class:`GenerateOutputs`. With
``inputs.human`` (the pipeline's ``data.train_split``) human questions stand in for the generated ones
and no LLM is opened. ``relforge generate`` and the pipeline's stage generate both call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from relforge.data.summary import SummaryFile
from relforge.generate.config import GenerateConfig

#: an LLM, or a function without arguments opening it (called once the documents are selected, never for
#: human questions)
LLMSource = Any


class HumanQuestions(BaseModel):
    """Human questions (and their qrels) used as the training queries instead of generated ones."""

    queries: Path
    qrels: Path
    #: the split they come from (recorded in the summary)
    split: str


class GenerateInputs(BaseModel):
    corpus: Path
    human: HumanQuestions | None = None


class GenerateOutputs(BaseModel):
    queries: Path
    qrels: Path
    summary: Path
    #: every dropped query with its reason (None: not written)
    rejected: Path | None = None

    @classmethod
    def beside(
        cls, queries: Path, qrels: Path | None = None, rejected: Path | None = None
    ) -> GenerateOutputs:
        """``relforge generate``'s files: ``<queries>.qrels.tsv`` and ``<queries>.summary.json`` beside it."""
        stem = queries.name.removesuffix(".jsonl")
        return cls(
            queries=queries,
            qrels=qrels or queries.with_name(stem + ".qrels.tsv"),
            summary=queries.with_name(stem + ".summary.json"),
            rejected=rejected,
        )


class GenerateRecord(SummaryFile):
    """``summary.json`` of generate: the filter counts (``generate_queries``'s summary), or for human
    questions their source; with an ``llm_spec`` given to :func:`run` also the provenance (selection,
    config, LLM, files, version)."""

    source: str | None = None
    documents: int | None = None
    generated: int | None = None
    kept: int
    dropped: dict[str, int] | None = None
    truncated_outputs: int | None = None
    prompt_id: str | None = None
    prompt_hash: str | None = None
    model: str | None = None
    style: str | None = None
    selection: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    llm: str | list[str] | None = None
    llm_backend: Any = None
    queries: str | None = None
    qrels: str | None = None
    relforge_version: str | None = None


class GenerateSummary(BaseModel):
    """What the stage reports: queries written, documents they came from, and the summary file's content."""

    queries: int
    documents: int
    record: GenerateRecord

    def counts(self) -> dict[str, int]:
        """The pipeline manifest's counts."""
        return self.model_dump(include={"queries", "documents"})


def human_queries(human: HumanQuestions, out: GenerateOutputs) -> GenerateSummary:
    """The human questions copied to the outputs (no LLM)."""
    from relforge.data.io import read_qrels, read_queries, write_qrels, write_queries

    queries = read_queries(human.queries)
    qrels = read_qrels(human.qrels)
    write_queries(out.queries, list(queries.values()))
    write_qrels(out.qrels, qrels)
    record = GenerateRecord(source=f"human questions, split {human.split!r}", kept=len(queries))
    record.write(out.summary)
    return GenerateSummary(
        queries=len(queries), documents=len({d for v in qrels.values() for d in v}), record=record
    )


def _provenance(
    cfg: GenerateConfig, selection: dict, llm_spec: str | list[str], model: Any, out: GenerateOutputs
):
    from relforge import __version__

    return {
        "selection": selection,
        "config": cfg.model_dump(),
        "llm": llm_spec[0] if isinstance(llm_spec, list) and len(llm_spec) == 1 else llm_spec,
        "llm_backend": model.describe() if hasattr(model, "describe") else None,
        "queries": str(out.queries),
        "qrels": str(out.qrels),
        "relforge_version": __version__,
    }


def run(
    cfg: GenerateConfig,
    inputs: GenerateInputs,
    out: GenerateOutputs | Path,
    *,
    llm: LLMSource = None,
    llm_spec: str | list[str] | None = None,
    require_queries: bool = False,
) -> GenerateSummary:
    """Write synthetic queries for (a sample of) ``inputs.corpus``.

    Args:
        llm: the LLM, or a function opening it; None: ``LLMConfig().load()`` (the default spec).
        llm_spec: record the provenance (selection, config, this LLM spec, backend, files) in the summary.
        require_queries: fail (:class:`~relforge.errors.UsageError`) when no query survives the filters.
        out: a folder (``queries.jsonl``, ``qrels.tsv``, ``rejected.jsonl``, ``summary.json``) or the files.
    """
    from relforge.data.io import read_corpus, write_jsonl, write_qrels, write_queries
    from relforge.errors import UsageError
    from relforge.generate import generate_queries, select_documents  # the package's names (patchable)
    from relforge.generate.queries import load_prompt

    if not isinstance(out, GenerateOutputs):
        o = Path(out)
        out = GenerateOutputs(
            queries=o / "queries.jsonl",
            qrels=o / "qrels.tsv",
            summary=o / "summary.json",
            rejected=o / "rejected.jsonl",
        )
    if inputs.human is not None:
        return human_queries(inputs.human, out)
    corpus = read_corpus(inputs.corpus)
    load_prompt(cfg)  # fail on a bad prompt before loading a model
    selection: dict[str, Any] = {}
    docs = select_documents(corpus, cfg.select, stats=selection)
    model = _open(llm)
    res = generate_queries(model, docs, cfg, corpus=corpus)
    if out.rejected is not None:
        write_jsonl(out.rejected, res.rejected)
    if require_queries and not res.queries:
        raise UsageError(
            f"query generation kept no query (summary: {res.summary}); loosen generate.filters or "
            f"use a stronger generate.llm"
        )
    write_queries(out.queries, res.queries)
    write_qrels(out.qrels, res.qrels)
    extra = _provenance(cfg, selection, llm_spec, model, out) if llm_spec is not None else {}
    record = GenerateRecord(**res.summary, **extra)
    record.write(out.summary)
    return GenerateSummary(queries=len(res.queries), documents=len(res.qrels), record=record)


def _open(llm: LLMSource) -> Any:
    if llm is None:
        from relforge.llm.config import LLMConfig

        return LLMConfig().load()
    return llm() if callable(llm) and not hasattr(llm, "generate") else llm
