"""The groups stage's one entry point, :func:`run`: used by ``relforge dataset build`` and by the pipeline's
stage ``groups`` alike.

Inputs: the queries, their source positives, the candidate run, the corpus, and optionally the judge's
judgments and the mined negatives (``retrieve mine``'s candidates JSONL, a pipeline run's ``negatives.jsonl``, or an old file).
Given the mined negatives, each query's candidates are its positives and its mined retrieved negatives
(what the judge saw), in run order, and its ``random`` bucket is mining's random negatives, in mined order:
random negatives are sampled once, by mining. Without them, the groups draw random negatives from the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from relforge.dataset.config import DatasetConfig, GroupConfig, variant_config
from relforge.dataset.summary import DatasetSummary, GroupSetSummary
from relforge.errors import UsageError
from relforge.types import Qrels, Run

Log = Callable[[str], None]


class GroupsInputs(BaseModel):
    """The files groups are built from.

    Attributes:
        queries: queries.jsonl (BEIR); positives: their source positives (qrels, BEIR TSV or TREC).
        run: the candidate run (TREC); corpus: corpus.jsonl (BEIR).
        judgments: the judge's judgments (JSONL); None: no judged variant (the unlabelled baseline).
        negatives: the mined negatives (:func:`relforge.retrieve.candidates.read_candidates`);
            None: every candidate of the run is bucketed.
    """

    model_config = ConfigDict(extra="forbid")

    queries: Path
    positives: Path
    run: Path
    corpus: Path
    judgments: Path | None = None
    negatives: Path | None = None


class GroupsOutputs(BaseModel):
    """Where the group sets go: per variant (``plain``, ``judged``, ``soft``) a folder (``dataset/``,
    ``groups.jsonl``, ``summary.json``), and optionally the summary across the variants."""

    model_config = ConfigDict(extra="forbid")

    folders: dict[str, Path]
    summary: Path | None = None


class GroupsSummary(BaseModel):
    """What :func:`run` built: per variant (build order), its group set's summary."""

    model_config = ConfigDict(extra="forbid")

    variants: dict[str, GroupSetSummary]

    def counts(self) -> dict[str, int]:
        """``{"<variant>_groups": n}``: the stage's counts in a pipeline manifest."""
        return {f"{v}_groups": s.groups for v, s in self.variants.items()}

    def across(self) -> DatasetSummary:
        """The summary across the variants (a pipeline run's ``dataset/summary.json``)."""
        return DatasetSummary.from_sets(self.variants)


def run(
    cfg: GroupConfig | DatasetConfig,
    inputs: GroupsInputs,
    out: str | os.PathLike | GroupsOutputs,
    *,
    log: Log | None = None,
    on_empty: Literal["write", "error"] = "write",
) -> GroupsSummary:
    """Build and write LCE groups (:func:`relforge.dataset.build_groups`) for one or more variants.

    Args:
        cfg: the rules; a :class:`DatasetConfig` also has the ``soft`` variant's policies.
        inputs: the files (:class:`GroupsInputs`), each read once for every variant.
        out: a folder (claimed as relforge's output before writing): one set, ``judged`` when
            ``inputs.judgments`` is given, else ``plain``; or :class:`GroupsOutputs`, which names the
            variants and their folders (a pipeline run's layout) and the summary across them.
        log: where warnings and each judged set's policy counts go (default: nowhere).
        on_empty: ``write`` an empty set, or ``error`` (UsageError) when a variant has no group.

    Returns:
        The summary of each set (also written as each folder's ``summary.json``).
    """
    from relforge.dataset.groups import build_groups, policy_lines, write_groups

    outputs, claim = _outputs(out, inputs)
    judged = [v for v in outputs.folders if v != "plain"]
    if judged and inputs.judgments is None:
        raise UsageError(f"groups variant(s) {', '.join(judged)} need judgments")
    queries, positives, cand, corpus, js, srcs, rand = _read(inputs, need_judgments=bool(judged))
    sets: dict[str, GroupSetSummary] = {}
    for variant, folder in outputs.folders.items():
        vc = variant_config(cfg, variant)
        ds, raw = build_groups(
            queries, positives, cand, corpus, None if variant == "plain" else js, vc, random_negatives=rand
        )
        _warn_unknown(raw, log)
        if variant != "plain":
            for line in policy_lines(raw, "groups" if claim else f"groups {variant}"):
                (log or _quiet)(line)
        if len(ds) == 0 and on_empty == "error":
            raise UsageError(
                f"{variant} groups: no group could be built (summary: {raw['dropped_queries']}); "
                f"lower groups.group_size or groups.min_positive_grade, or generate more queries"
            )
        short = raw["dropped_queries"].get("too_few_negatives", 0)
        if short and rand is not None and log is not None:
            log(
                f"note: {variant} groups: {short} queries had too few negatives left for groups.group_size; "
                "raise retrieve.mining.num_negatives or random_share (mining draws the random negatives)"
            )
        if srcs is not None:
            raw["negatives_by_source"] = negatives_by_source(ds, srcs)
        summary = GroupSetSummary.model_validate(raw)
        if claim:
            from relforge.outputs import claim_dir

            claim_dir(folder)
        write_groups(ds, summary, folder)
        sets[variant] = summary
    result = GroupsSummary(variants=sets)
    if outputs.summary is not None:
        result.across().write(outputs.summary)
    return result


def _quiet(_: str) -> None:
    pass


def _outputs(out: str | os.PathLike | GroupsOutputs, inputs: GroupsInputs) -> tuple[GroupsOutputs, bool]:
    """``out`` as :class:`GroupsOutputs`, and whether it is a plain folder to claim."""
    if isinstance(out, GroupsOutputs):
        return out, False
    return GroupsOutputs(folders={"judged" if inputs.judgments else "plain": Path(out)}), True


def _read(inputs: GroupsInputs, *, need_judgments: bool):
    """``(queries, positives, candidates, corpus, judgments, {qid: {docid: source}} of the mined negatives
    or None, {qid: [mining's random negatives]} or None)`` read from the files."""
    from relforge.data import read_corpus, read_qrels, read_queries, read_run
    from relforge.judge.judge import read_judgments

    corpus = read_corpus(inputs.corpus)
    queries = read_queries(inputs.queries)
    positives = read_qrels(inputs.positives)
    run_ = read_run(inputs.run)
    srcs = rand = None
    if inputs.negatives is not None:
        from relforge.retrieve.candidates import RANDOM, negatives_by_query, read_candidates, sources

        records = read_candidates(inputs.negatives)
        run_ = candidate_run(run_, positives, negatives_by_query(r for r in records if r.source != RANDOM))
        rand = negatives_by_query(r for r in records if r.source == RANDOM)
        srcs = sources(records)
    js = read_judgments(inputs.judgments) if need_judgments and inputs.judgments else None
    return queries, positives, run_, corpus, js, srcs, rand


def negatives_by_source(ds: Any, srcs: dict[str, dict[str, str]]) -> dict[str, int]:
    """The groups' negatives counted by where they came from, sources sorted: a mined candidate's source
    (``bm25``, ``dense``, ``hybrid``, ``random``: mining's corpus draw, ``unknown``: an old file);
    ``groups_random`` and ``not_mined`` cannot occur when the groups were built from these candidates
    (kept to show a mismatch)."""
    from collections import Counter

    n: Counter = Counter()
    if len(ds) == 0:
        return {}
    for qid, docs, buckets in zip(ds["qid"], ds["doc_ids"], ds["buckets"], strict=True):
        mined = srcs.get(qid, {})
        n.update(
            mined.get(d) or ("groups_random" if b == "random" else "not_mined")
            for d, b in zip(docs[1:], buckets[1:], strict=True)
        )
    return dict(sorted(n.items()))


def candidate_run(run: Run, positives: Qrels, negatives: dict[str, list[str]]) -> Run:
    """The run restricted to each query's positives + mined retrieved negatives (what the judge saw).

    A negative missing from the run (an old candidates file of another run) ranks after the others, in mined
    order. A query without mined negatives keeps its positives only."""
    out: dict[str, dict[str, float]] = {}
    for qid in positives:
        keep = list(positives[qid]) + list(negatives.get(qid, []))
        scores = run.get(qid, {})
        floor = min(scores.values(), default=0.0) - 1.0
        out[qid] = {d: scores.get(d, floor - i * 1e-3) for i, d in enumerate(keep)}
    return out


def _warn_unknown(raw: dict[str, Any], log: Log | None) -> None:
    unknown = {k: raw["judgments"][k] for k in ("unknown_query", "unknown_document")}
    if any(unknown.values()) and log is not None:
        log(
            f"warning: {unknown['unknown_query']} judgments name unknown queries and "
            f"{unknown['unknown_document']} unknown documents; they were not used"
        )
