"""A judging run's ``summary.json`` (``<judgments>.summary.json`` of ``relforge judge``, a pipeline run's
``judge/summary.json``) as pydantic models, written and read through their class:

- :class:`JudgeRecord`: the LLM judge's (counts, timing, backend stats, then the run's settings);
- :class:`PresetRecord`: a preset's (``relforge judge --preset``, ``judge.preset``).

:func:`read_record` reads either (a preset's record names its ``preset``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter, model_serializer

from relforge.data.summary import SummaryFile

#: a number as the judge wrote it (an int stays an int, a float a float)
Number = int | float


class JudgeRecord(SummaryFile):
    """The LLM judge's summary file.

    ``relforge judge`` records the files, template, backend and config (``llm`` .. ``config``); the
    pipeline's record ends with ``adapter`` and ``llm`` only (its layout and manifest hold the rest).
    A key the run did not write stays out of the file (``llm_stats``: an LLM without stats;
    ``calibrated_on``: no ``--calibrate-on``).

    Attributes:
        pairs / queries / grades / unparsed / mean_expected / mode / model / template_hash: the
            judgments' counts (:func:`relforge.judge.judge.summarize`).
        seconds / pairs_per_s: judging time; skipped_unknown / duplicates / retried: pairs with unknown
            ids left out, duplicate pairs, generate-mode replies asked again.
        sources: the judged pairs per source, sources sorted: ``positive`` (the query's own document),
            a mined candidate's retrieval method (``bm25``, ``dense``, ``hybrid``) or ``random``
            (``unknown``: an old candidates file); left out when the pairs came from a ``--pairs`` file
            (and in summaries written before it was recorded).
        thresholds: the cut points on the expected grade (fitted ones with ``calibrated_on``), or None.
        max_doc_tokens: the document token budget; llm_stats: the backend's counters (cache hits, tokens).
        llm / llm_backend / adapter / template: who judged; pairs_file / out / qrels_out: the files;
        config: the :class:`~relforge.judge.config.JudgeConfig` it ran with.
    """

    pairs: int
    queries: int
    grades: dict[str, int]
    unparsed: int
    mean_expected: Number | None = None
    mode: str | None = None
    model: str | None = None
    template_hash: str | None = None
    seconds: Number
    pairs_per_s: Number | None = None
    skipped_unknown: int = 0
    duplicates: int = 0
    retried: int = 0
    sources: dict[str, int] | None = None
    thresholds: list[Number] | None = None
    max_doc_tokens: int | None = None
    llm_stats: dict[str, Any] | None = None
    calibrated_on: str | None = None
    llm: str | None = None
    llm_backend: Any = None
    adapter: str | None = None
    template: str | None = None
    pairs_file: str | None = None
    out: str | None = None
    qrels_out: str | None = None
    config: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _pipeline_order(self, handler: Any) -> dict[str, Any]:
        """Fields in declaration order, except the pipeline's record (no run settings: no ``template``),
        which ends ``adapter`` then ``llm`` as it has always been written."""
        data = handler(self)
        if "template" not in self.model_fields_set and "adapter" in data:
            data = {k: v for k, v in data.items() if k != "adapter"} | {"adapter": data["adapter"]}
            if "llm" in data:
                data["llm"] = data.pop("llm")
        return data

    @property
    def cache_hits(self) -> int:
        """LLM calls answered from the cache (0 without backend stats)."""
        return int((self.llm_stats or {}).get("hits", 0))


class PresetRecord(SummaryFile):
    """A preset's summary file (:func:`relforge.judge.run.judge_with_preset`'s run info).

    ``relforge judge --preset`` adds the grade counts and files (``grades`` .. ``qrels_out``) and leaves
    ``model`` out; the pipeline's keeps ``model`` and adds ``labeller`` when it names one.

    Attributes:
        preset / description / features: the preset; llm / embedder: the models its features used
            (None: not used); llm_backend: the LLM's backend description; model: the judgments' ``model``.
        pairs / queries / seconds / pairs_per_s / skipped_unknown: what was graded, how fast, and the
            pairs with unknown ids left out; sources: the graded pairs per source (as
            :class:`JudgeRecord`'s).
        grades: judgments per grade; pairs_file / out / qrels_out: the files; labeller: who grades, in
            one line (the pipeline's).
    """

    preset: str
    description: str | None = None
    features: list[str]
    llm: str | None = None
    embedder: str | None = None
    llm_backend: Any = None
    model: str | None = None
    pairs: int
    queries: int
    seconds: Number
    pairs_per_s: Number | None = None
    skipped_unknown: int = 0
    sources: dict[str, int] | None = None
    grades: dict[str, int] | None = None
    pairs_file: str | None = None
    out: str | None = None
    qrels_out: str | None = None
    labeller: str | None = None


def _kind(data: Any) -> str:
    if isinstance(data, dict):
        return "preset" if "preset" in data else "llm"
    return "preset" if isinstance(data, PresetRecord) else "llm"


AnyRecord = Annotated[
    Annotated[JudgeRecord, Tag("llm")] | Annotated[PresetRecord, Tag("preset")], Discriminator(_kind)
]
_RECORD: TypeAdapter[JudgeRecord | PresetRecord] = TypeAdapter(AnyRecord)


def parse_record(data: Any) -> JudgeRecord | PresetRecord:
    """A summary file's content as its class: :class:`PresetRecord` when it names a ``preset``."""
    return _RECORD.validate_python(data)


def read_record(path: str | os.PathLike) -> JudgeRecord | PresetRecord:
    """The judge summary file at ``path``, parsed by its class (a file of neither shape: ValidationError)."""
    return _RECORD.validate_json(Path(path).read_text(encoding="utf-8"))
