"""Judging query-document pairs with an LLM: graded labels with their probabilities.

Two modes:

- ``probs`` (default): one prefill per pair; the backend's ``score_choices`` returns the
  probability of each grade label as the next output. The judgment keeps the full distribution,
  the expected grade ``sum(value * p)`` and the argmax grade (or the grade given by calibrated
  thresholds on the expected grade, see :mod:`relforge.judge.calibrate`).
- ``generate``: decode a reply and parse the grade (:mod:`relforge.judge.parse`) — for servers
  without log-probs, or templates that ask for reasoning first. Replies that cannot be parsed are
  retried once (sampling, new seed); if still unparseable the judgment is recorded with
  ``grade=None, parse_ok=False`` and counted. It is never mapped to a grade.

Pairs are judged grouped by query (in order of first appearance) so a query's prompts reach the
backend together and share their prompt prefix; judgments come back in the input order.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from relforge.data.io import atomic_write, iter_jsonl, iter_lines, write_qrels
from relforge.errors import DataError, UsageError
from relforge.judge.calibrate import apply_thresholds
from relforge.judge.parse import parse_grade_label
from relforge.judge.prompt import JudgeTemplate
from relforge.llm.base import LLM, Chat, GenParams
from relforge.types import Document, Qrels, Query, sorted_ranking

Pair = tuple[str, str]
MODES = ("probs", "generate")


@dataclass
class Judgment:
    """One judged pair.

    ``grade`` is ``None`` only when a generate-mode reply could not be parsed (``parse_ok=False``).
    ``expected`` and ``probs`` are set in probs mode; ``raw`` holds the reply in generate mode.
    """

    qid: str
    docid: str
    grade: int | None
    expected: float | None
    probs: dict[str, float] | None
    mode: str
    model: str
    template_hash: str
    raw: str | None = None
    parse_ok: bool = True
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgment:
        known = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in known}
        kw["qid"], kw["docid"] = str(d["qid"]), str(d["docid"])
        kw.setdefault("mode", "probs")
        kw.setdefault("model", "")
        kw.setdefault("template_hash", "")
        kw.setdefault("expected", None)
        kw.setdefault("probs", None)
        if kw.get("grade") is not None:
            kw["grade"] = int(kw["grade"])
        kw.setdefault("parse_ok", kw.get("grade") is not None)
        return cls(**kw)


# --------------------------------------------------------------------------- pairs input


def read_pairs(path: str | Path, *, top_k: int | None = None) -> list[Pair]:
    """Read the pairs to judge; the format is detected from the first line's column count.

    Accepted: a BEIR qrels TSV (``query-id corpus-id score``, header optional), a TREC qrels
    file (``qid 0 docid rel``), a TREC run (``qid Q0 docid rank score tag``; the top ``top_k`` of
    each query by score, relforge's tie policy), or a pairs TSV (``qid docid``, header optional).
    Grades in qrels are ignored. Duplicate pairs are returned as
    they are (:func:`judge_pairs` judges each once and counts the duplicates).

    Args:
        path: the file.
        top_k: for runs, judge only the best ``top_k`` documents of each query.

    Returns:
        ``(qid, docid)`` pairs in file order (runs: query order, then rank).
    """
    fmt = None
    pairs: list[Pair] = []
    run: dict[str, dict[str, float]] = {}
    widths = {2: "pairs", 3: "beir", 4: "trec-qrels", 6: "trec-run"}
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if fmt is None:
            fmt = widths.get(len(parts))
            if fmt is None:
                raise DataError(
                    f"cannot tell the pairs format from {len(parts)} columns; expected 2 (pairs TSV: qid docid), "
                    f"3 (BEIR qrels), 4 (TREC qrels: qid 0 docid rel) or 6 (TREC run: qid Q0 docid rank score tag)",
                    path=path,
                    line=lineno,
                )
            if parts[0].lower() in ("query-id", "query_id", "qid", "query") and fmt in ("pairs", "beir"):
                continue  # header
        if len(parts) != [k for k, v in widths.items() if v == fmt][0]:
            raise DataError(
                f"expected {[k for k, v in widths.items() if v == fmt][0]} columns ({fmt}), got {len(parts)}",
                path=path,
                line=lineno,
            )
        if fmt == "trec-run":
            try:
                score = float(parts[4])
            except ValueError:
                raise DataError(f"score {parts[4]!r} is not a number", path=path, line=lineno) from None
            run.setdefault(parts[0], {})[parts[2]] = score
        elif fmt == "trec-qrels":
            pairs.append((parts[0], parts[2]))
        else:
            pairs.append((parts[0], parts[1]))
    if fmt is None:
        raise DataError("no pairs in the file", path=path)
    if fmt == "trec-run":
        for qid, scores in run.items():
            ranked = sorted_ranking(scores)
            pairs.extend((qid, d) for d, _ in (ranked[:top_k] if top_k else ranked))
    return pairs


def check_pairs(
    pairs: Sequence[Pair],
    queries: dict[str, Query],
    corpus: dict[str, Document],
    *,
    on_missing: str = "error",
    source: str | None = None,
) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into known and unknown (query or document missing).

    Args:
        pairs: ``(qid, docid)`` pairs.
        queries: known queries.
        corpus: known documents.
        on_missing: ``"error"``: raise :class:`DataError` naming the unknown ids; ``"skip"``: return them.
        source: file name for the error message.

    Returns:
        ``(known_pairs, unknown_pairs)``.
    """
    if on_missing not in ("error", "skip"):
        raise UsageError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    known, bad = [], []
    for q, d in pairs:
        (known if q in queries and d in corpus else bad).append((q, d))
    if bad and on_missing == "error":
        bad_q = sorted({q for q, _ in bad if q not in queries})
        bad_d = sorted({d for q, d in bad if d not in corpus})
        msg = f"{len(bad)} of {len(pairs)} pairs name unknown ids"
        if bad_q:
            msg += f"; unknown query ids ({len(bad_q)}): {bad_q[:10]}"
        if bad_d:
            msg += f"; unknown document ids ({len(bad_d)}): {bad_d[:10]}"
        raise DataError(
            msg + " (check --queries/--corpus, or pass --on-missing skip to count and skip them)", path=source
        )
    return known, bad


def group_by_query(pairs: Sequence[Pair]) -> list[int]:
    """Indices of ``pairs`` reordered so each query's pairs are adjacent (queries by first appearance)."""
    first: dict[str, int] = {}
    for i, (q, _) in enumerate(pairs):
        first.setdefault(q, i)
    return sorted(range(len(pairs)), key=lambda i: (first[pairs[i][0]], i))


def query_batches(pairs: Sequence[Pair], batch_size: int) -> list[list[int]]:
    """Batches of pair indices with each query's pairs kept together.

    A query with more than ``batch_size`` pairs is split into full batches plus a remainder; small
    queries are packed whole into one batch while they fit. So a batch of a large query shares the
    instructions *and* the query as a prompt prefix (the HF backend runs that prefix once with
    ``prefix_sharing``), and many tiny queries still make full batches.
    """
    groups: dict[str, list[int]] = {}
    for i in group_by_query(pairs):
        groups.setdefault(pairs[i][0], []).append(i)
    batches: list[list[int]] = []
    cur: list[int] = []
    for idx in groups.values():
        if cur and len(cur) + len(idx) > batch_size:
            batches.append(cur)
            cur = []
        while len(idx) >= batch_size:
            batches.append(idx[:batch_size])
            idx = idx[batch_size:]
        cur.extend(idx)
    if cur:
        batches.append(cur)
    return batches


# --------------------------------------------------------------------------- judging


def _from_probs(
    p: dict[str, float] | None, template: JudgeTemplate, thresholds: Sequence[float] | None
) -> tuple[int, float, dict[str, float]] | None:
    """(grade, expected, normalised probs), or None when the backend could not score the pair."""
    labels, values = template.labels, template.values
    try:
        raw = [float((p or {}).get(lab, 0.0)) for lab in labels]
    except (TypeError, ValueError, AttributeError):
        return None
    total = sum(raw)
    if not all(math.isfinite(x) and x >= 0 for x in raw) or not total > 0:
        return None
    probs = {lab: x / total for lab, x in zip(labels, raw, strict=True)}
    expected = sum(v * probs[lab] for lab, v in zip(labels, values, strict=True))
    if thresholds is not None:
        grade = apply_thresholds([expected], thresholds, values)[0]
    else:
        best = max(range(len(labels)), key=lambda i: (probs[labels[i]], -i))
        grade = values[best]
    return grade, expected, probs


def _check_judge_args(
    template: JudgeTemplate, mode: str, thresholds: Sequence[float] | None, batch_size: int
) -> list[float] | None:
    """Raise :class:`UsageError` on a bad mode, template, thresholds or batch size; thresholds as floats."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {list(MODES)}, got {mode!r} (set --mode)")
    if mode == "probs" and template.reasoning:
        raise UsageError(
            "probs mode scores the grade as the first output token; a reasoning template needs "
            "--mode generate"
        )
    if thresholds is not None:
        thresholds = [float(t) for t in thresholds]
        if len(thresholds) != len(template.labels) - 1 or thresholds != sorted(thresholds):
            raise UsageError(
                f"thresholds must be {len(template.labels) - 1} non-decreasing cut points for the "
                f"scale {template.labels}, got {thresholds} (set --thresholds)"
            )
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    return thresholds


def _judge_probs(
    llm: LLM,
    template: JudgeTemplate,
    pairs: Sequence[Pair],
    idx: list[int],
    chats: list[Chat],
    out: list,
    model: str,
    thresholds: Sequence[float] | None,
) -> None:
    """Probs mode for one batch: fills ``out[i]`` for each ``i`` of ``idx``."""
    for i, p in zip(idx, llm.score_choices(chats, template.labels), strict=True):
        got = _from_probs(p, template, thresholds)
        if got is None:  # the backend could not score it (e.g. no log-probs): unlabelled, counted
            raw = f"no distribution over {template.labels}: {p!r}"[:500]
            out[i] = Judgment(
                *pairs[i], None, None, None, "probs", model, template.hash, raw=raw, parse_ok=False
            )
            continue
        grade, expected, probs = got
        out[i] = Judgment(*pairs[i], grade, expected, probs, "probs", model, template.hash)


def _batch_chats(
    template: JudgeTemplate,
    queries: dict[str, Query],
    corpus: dict[str, Document],
    pairs: Sequence[Pair],
    idx: list[int],
    tok: Any,
    max_doc_tokens: int | None,
) -> list[Chat]:
    """The judge prompts of the pairs ``idx``."""
    return [
        template.build_chat(
            queries[pairs[i][0]], corpus[pairs[i][1]], tokenizer=tok, max_doc_tokens=max_doc_tokens
        )
        for i in idx
    ]


def _fill_stats(
    stats: dict[str, Any],
    llm: LLM,
    template: JudgeTemplate,
    judgments: list[Judgment],
    seconds: float,
    counts: dict[str, int],
    thresholds: list[float] | None,
    max_doc_tokens: int | None,
) -> None:
    """Fill ``stats`` with the run summary: :func:`summarize`, timing, counts and the backend's stats."""
    stats.update(summarize(judgments, template))
    stats.update(
        {
            "seconds": round(seconds, 3),
            "pairs_per_s": round(len(judgments) / seconds, 3) if seconds > 0 else None,
            **counts,
            "thresholds": thresholds,
            "max_doc_tokens": max_doc_tokens if max_doc_tokens is not None else template.max_doc_tokens,
        }
    )
    llm_stats = getattr(llm, "stats", None)
    if llm_stats is not None:
        stats["llm_stats"] = {k: v for k, v in vars(llm_stats).items() if k != "extra"} | dict(
            getattr(llm_stats, "extra", {}) or {}
        )


def judge_pairs(
    llm: LLM,
    template: JudgeTemplate,
    queries: dict[str, Query],
    corpus: dict[str, Document],
    pairs: Sequence[Pair],
    *,
    mode: str = "probs",
    tokenizer: Any = None,
    progress: bool = True,
    thresholds: Sequence[float] | None = None,
    batch_size: int = 16,
    max_doc_tokens: int | None = None,
    on_missing: str = "error",
    max_new_tokens: int | None = None,
    retry_temperature: float = 0.7,
    seed: int = 0,
    stats: dict[str, Any] | None = None,
) -> list[Judgment]:
    """Judge ``(qid, docid)`` pairs with an LLM.

    Args:
        llm: any :class:`relforge.llm.base.LLM` (``relforge.llm.load_llm(spec)``).
        template: the judge prompt (:class:`JudgeTemplate`).
        queries: queries by id.
        corpus: documents by id.
        pairs: the pairs to judge; duplicates are judged once.
        mode: ``"probs"`` (distribution over the grade labels) or ``"generate"`` (decode and parse).
        tokenizer: tokenizer for the document token budget; default ``llm.tokenizer`` if present,
            else a word-count approximation.
        progress: show a progress bar (stderr).
        thresholds: cut points on the expected grade replacing argmax (probs mode), see
            :func:`relforge.judge.calibrate.fit_thresholds`.
        batch_size: chats per backend call.
        max_doc_tokens: document token budget (default: the template's).
        on_missing: pairs with unknown ids: ``"error"`` raises a :class:`DataError` naming them,
            ``"skip"`` leaves them out and counts them in ``stats["skipped_unknown"]``.
        max_new_tokens: generate mode reply length (default 8, or 256 for reasoning templates).
        retry_temperature: temperature of the one retry of an unparseable reply (seed ``seed + 1``).
        seed: generation seed.
        stats: if given, filled with the run summary (:func:`summarize` plus timing and counts).

    Returns:
        One :class:`Judgment` per distinct known pair, in input order.
    """
    thresholds = _check_judge_args(template, mode, thresholds, batch_size)
    unique = list(dict.fromkeys((str(q), str(d)) for q, d in pairs))
    known, unknown = check_pairs(unique, queries, corpus, on_missing=on_missing)
    tok = tokenizer if tokenizer is not None else getattr(llm, "tokenizer", None)
    model = getattr(llm, "name", type(llm).__name__)
    out: list[Judgment | None] = [None] * len(known)
    retried = 0
    t0 = time.perf_counter()
    from relforge.progress import progress as _steady_progress  # plain done/total/rate/ETA lines off a TTY

    with _steady_progress(len(known), f"judging ({mode})", enabled=progress) as advance:
        for idx in query_batches(known, batch_size):
            chats = _batch_chats(template, queries, corpus, known, idx, tok, max_doc_tokens)
            if mode == "probs":
                _judge_probs(llm, template, known, idx, chats, out, model, thresholds)
            else:
                retried += _judge_generate(
                    llm, template, known, idx, chats, out, model, max_new_tokens, retry_temperature, seed
                )
            advance(len(idx))
    seconds = time.perf_counter() - t0
    judgments = [j for j in out if j is not None]
    if stats is not None:
        counts = {"skipped_unknown": len(unknown), "duplicates": len(pairs) - len(unique), "retried": retried}
        _fill_stats(stats, llm, template, judgments, seconds, counts, thresholds, max_doc_tokens)
    return judgments


def _judge_generate(
    llm: LLM,
    template: JudgeTemplate,
    pairs: Sequence[Pair],
    idx: list[int],
    chats: list[Chat],
    out: list,
    model: str,
    max_new_tokens: int | None,
    retry_temperature: float,
    seed: int,
) -> int:
    n_new = max_new_tokens or (256 if template.reasoning else 8)
    params = GenParams(max_new_tokens=n_new, temperature=0.0, seed=seed)
    replies = [c.text for c in llm.generate(chats, params)]
    labels = [parse_grade_label(r, template.labels)[0] for r in replies]
    bad = [k for k, lab in enumerate(labels) if lab is None]
    if bad:  # one retry, sampled with a different seed
        retry = GenParams(max_new_tokens=n_new, temperature=retry_temperature, seed=seed + 1)
        for k, c in zip(bad, llm.generate([chats[k] for k in bad], retry), strict=True):
            replies[k] = c.text
            labels[k] = parse_grade_label(c.text, template.labels)[0]
    value_of = dict(zip(template.labels, template.values, strict=True))
    for k, i in enumerate(idx):
        lab = labels[k]
        out[i] = Judgment(
            pairs[i][0],
            pairs[i][1],
            value_of[lab] if lab is not None else None,
            None,
            None,
            "generate",
            model,
            template.hash,
            raw=replies[k],
            parse_ok=lab is not None,
            attempts=2 if k in bad else 1,
        )
    return len(bad)


# --------------------------------------------------------------------------- outputs


def summarize(judgments: Sequence[Judgment], template: JudgeTemplate | None = None) -> dict[str, Any]:
    """Counts of a judging run: pairs, queries, grade distribution, unparsed, mean expected grade."""
    grades = Counter(j.grade for j in judgments if j.grade is not None)
    values = template.values if template is not None else sorted(grades)
    exp = [j.expected for j in judgments if j.expected is not None]
    return {
        "pairs": len(judgments),
        "queries": len({j.qid for j in judgments}),
        "grades": {str(v): grades.get(v, 0) for v in values},
        "unparsed": sum(1 for j in judgments if not j.parse_ok),
        "mean_expected": round(sum(exp) / len(exp), 4) if exp else None,
        "mode": judgments[0].mode if judgments else None,
        "model": judgments[0].model if judgments else None,
        "template_hash": judgments[0].template_hash if judgments else None,
    }


def write_judgments(path: str | Path, judgments: Iterable[Judgment]) -> int:
    """Write judgments as JSON lines, atomically; returns the number written."""
    n = 0
    with atomic_write(path) as fh:
        for j in judgments:
            fh.write(json.dumps(j.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def _check_judgment(obj: dict[str, Any], path, lineno: int, max_grade: int) -> None:
    """Grades on the scale (0..``max_grade``, or the labels of ``probs``), finite scores; else file:line."""
    g, probs, exp = obj["grade"], obj.get("probs"), obj.get("expected")
    if g is not None and (
        isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g != int(g)
    ):
        raise DataError(f"grade {g!r} is not an integer or null", path=path, line=lineno)
    if isinstance(probs, dict) and probs:
        vals = list(probs.values())
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise DataError(
                f"probs {probs!r} has a value that is not a finite number", path=path, line=lineno
            )
        try:
            scale = sorted(int(k) for k in probs)
        except ValueError:
            scale = list(range(max_grade + 1))
    else:
        scale = list(range(max_grade + 1))
    if g is not None and int(g) not in scale:
        raise DataError(
            f"grade {g!r} is outside the judging scale {scale[0]}..{scale[-1]}", path=path, line=lineno
        )
    if exp is not None and (not isinstance(exp, (int, float)) or not math.isfinite(exp)):
        raise DataError(f"expected {exp!r} is not a finite number", path=path, line=lineno)


def read_judgments(path: str | Path, *, max_grade: int = 3) -> list[Judgment]:
    """Read a ``judgments.jsonl`` (needs ``qid``, ``docid`` and ``grade`` on each line).

    Grades outside 0..``max_grade`` (or outside the labels of the line's ``probs``) and non-finite
    ``expected`` / ``probs`` raise a :class:`DataError` naming the file and line."""
    out = []
    for lineno, obj in iter_jsonl(path):
        missing = [k for k in ("qid", "docid", "grade") if k not in obj]
        if missing:
            raise DataError(f"judgment misses fields {missing}", path=path, line=lineno)
        _check_judgment(obj, path, lineno, max_grade)
        out.append(Judgment.from_dict(obj))
    return out


def judgments_to_qrels(judgments: Iterable[Judgment]) -> Qrels:
    """Graded qrels from judgments; unlabelled (unparsed) judgments are left out."""
    qrels: Qrels = {}
    for j in judgments:
        if j.grade is not None:
            qrels.setdefault(j.qid, {})[j.docid] = int(j.grade)
    return qrels


def write_judgment_qrels(path: str | Path, judgments: Iterable[Judgment]) -> int:
    """Write the judgments' grades as TREC qrels (``qid 0 docid grade``), atomically."""
    return write_qrels(path, judgments_to_qrels(judgments), format="trec")
