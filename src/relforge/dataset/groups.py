"""Judged candidates -> LCE training groups (1 positive + n negatives), in four small steps.

``bucket_query`` (candidates of one query -> buckets by judge grade) -> ``sample_negatives``
(draw n negatives by the configured mix) -> ``group_rows`` (texts, ids, grades, labels) ->
``build_groups`` (all queries + the summary). ``write_groups`` saves the dataset, JSONL and summary.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relforge.dataset.config import BUCKETS, GroupConfig, parse_mix
from relforge.errors import DataError
from relforge.types import Document, Qrels, Query, Run, doc_text, sorted_ranking

#: grade stored for a document the judge did not grade (or whose judgment failed to parse)
UNJUDGED = -1


def _as_map(items: Mapping[str, Any] | Iterable[Any]) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return dict(items)
    return {it.id: it for it in items}


def judgment_grades(
    judgments: Iterable[Any], expected: dict[tuple[str, str], float] | None = None
) -> tuple[dict[tuple[str, str], int | None], Counter]:
    """Map ``(qid, docid) -> grade`` from :class:`relforge.judge.Judgment` objects or plain dicts.

    A judgment whose grade is ``None`` (the judge's output could not be parsed) stays ``None`` —
    never a grade — and is counted as ``failed``. A later judgment of the same pair wins (counted).
    When ``expected`` is given it is filled with each pair's expected grade (the judge's
    ``expected``, else its grade): the teacher scores of the soft losses.
    """
    grades: dict[tuple[str, str], int | None] = {}
    counts: Counter = Counter()
    for j in judgments:
        get = j.get if isinstance(j, Mapping) else lambda k, _j=j: getattr(_j, k, None)
        qid, docid, grade = get("qid"), get("docid"), get("grade")
        if qid is None or docid is None:
            raise ValueError(f"judgment {j!r} has no qid/docid; expected relforge.judge.Judgment or a dict")
        key = (str(qid), str(docid))
        counts["duplicate"] += key in grades
        grades[key] = None if grade is None else int(grade)
        counts["given"] += 1
        counts["failed"] += grade is None
        if expected is not None:
            e = get("expected")
            if e is not None or grade is not None:
                expected[key] = float(e if e is not None else grade)
            else:
                expected.pop(key, None)
    return grades, counts


@dataclass
class QueryBuckets:
    """One query's documents sorted into buckets (lists of ``(docid, grade)``, run order).

    ``tags`` names documents a policy changed (``bad-positive-kept``, ``bad-positive-demoted``,
    ``false-demoted``, ``false-kept``, ``false-promoted-positive``); ``caps`` caps the label and
    teacher score of demoted documents. ``policy`` counts what each policy did for this query.
    """

    positives: list[tuple[str, int]] = field(default_factory=list)  # (docid, label grade)
    promoted: list[tuple[str, int]] = field(default_factory=list)
    hard: list[tuple[str, int]] = field(default_factory=list)
    soft: list[tuple[str, int]] = field(default_factory=list)
    unjudged: list[tuple[str, int]] = field(default_factory=list)
    false: list[tuple[str, int]] = field(default_factory=list)
    #: mining's random candidates (mined order; judged grade or UNJUDGED); None: none were mined, so the
    #: ``random`` bucket draws from the corpus (a groups build without a mining file is the only sampler)
    random: list[tuple[str, int]] | None = None
    skipped_unjudged: int = 0
    unjudged_positives: int = 0
    exclude: set[str] = field(default_factory=set)  # never usable as a random negative
    drop_reason: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    policy: Counter = field(default_factory=Counter)


def _false_negative(docid: str, g: int, config: GroupConfig, b: QueryBuckets) -> None:
    """A candidate graded >= ``false_negative_grade`` under the false-negative policy (``demote`` and
    ``keep-as-soft`` put it in ``hard``, tagged; ``drop`` and ``promote`` in ``false``)."""
    b.policy["false_negatives"] += 1
    if config.false_negatives in ("demote", "keep-as-soft"):
        b.hard.append((docid, g))
        demote = config.false_negatives == "demote"
        b.tags[docid] = "false-demoted" if demote else "false-kept"
        if demote:
            b.caps[docid] = config.false_negative_grade - 1
    else:
        b.false.append((docid, g))


def _bucket_candidates(qid, source, ranked, grades, config: GroupConfig, b: QueryBuckets) -> None:
    """Candidates (not the query's own documents) into hard/soft/unjudged/false, applying the
    false-negative policy."""
    for docid in ranked[: config.depth]:
        if docid in source:
            continue
        g = None if grades is None else grades.get((qid, docid))
        if g is None:
            if grades is not None and config.unjudged == "drop":
                b.skipped_unjudged += 1
            else:
                b.unjudged.append((docid, UNJUDGED))
        elif g >= config.false_negative_grade:
            _false_negative(docid, g, config, b)
        elif g >= 1:
            b.hard.append((docid, g))
        else:
            b.soft.append((docid, g))


def _bucket_random(qid, source, mined: list[str], grades, config: GroupConfig, b: QueryBuckets) -> None:
    """Mining's random candidates into the ``random`` bucket (their judged grade kept for the teacher
    score); one the judge grades >= ``false_negative_grade`` is a false negative like any other."""
    b.random = []
    for docid in mined:
        if docid in source:
            continue
        g = None if grades is None else grades.get((qid, docid))
        if g is not None and g >= config.false_negative_grade:
            _false_negative(docid, g, config, b)
        else:
            b.random.append((docid, UNJUDGED if g is None else g))


def bucket_query(
    qid: str,
    source: dict[str, int],
    ranked: list[str],
    grades: dict[tuple[str, str], int | None] | None,
    config: GroupConfig,
    random_candidates: list[str] | None = None,
) -> QueryBuckets:
    """Sort one query's source positives and top-``depth`` candidates into buckets.

    Args:
        qid: the query id.
        source: the query's positives from the qrels (grade > 0 counts as a positive).
        ranked: candidate doc ids in run order (best first).
        grades: judge grades by ``(qid, docid)``; ``None`` = the unlabelled baseline (all candidates
            are plain negatives in the ``unjudged`` bucket).
        config: the rules and the two bucket policies (``bad_positive``, ``false_negatives``).
        random_candidates: mining's random candidates of the query (mined order), the ``random``
            bucket; None: the bucket draws from the corpus when sampled (no mining file was given).

    Returns:
        QueryBuckets; ``drop_reason`` is set when no usable positive is left.
    """
    b = QueryBuckets(exclude=set(source) | set(ranked))
    demoted: list[tuple[str, int]] = []
    for docid, qgrade in source.items():
        if qgrade <= 0:
            continue
        g = None if grades is None else grades.get((qid, docid))
        if g is None:
            b.unjudged_positives += grades is not None
            b.positives.append((docid, config.unjudged_positive_grade))
        elif g >= config.min_positive_grade:
            b.positives.append((docid, g))
        else:
            b.policy["bad_positive"] += 1
            if config.bad_positive == "keep-as-soft":
                b.positives.append((docid, g))
                b.tags[docid] = "bad-positive-kept"
            elif config.bad_positive == "demote":
                demoted.append((docid, g))
                b.tags[docid] = "bad-positive-demoted"
    if not b.positives and not demoted:
        b.drop_reason = "bad_positive" if any(v > 0 for v in source.values()) else "no_positive"
        return b
    _bucket_candidates(qid, source, ranked, grades, config, b)
    if random_candidates is not None:
        _bucket_random(qid, source, random_candidates, grades, config, b)
    b.hard = demoted + b.hard  # a demoted own document is the hardest negative
    if not b.positives:  # demote: the best false negative becomes the positive
        if not b.false:
            b.drop_reason = "bad_positive"
            return b
        best = max(b.false, key=lambda dg: dg[1])  # highest grade, first in run order on ties
        b.false.remove(best)
        b.positives.append(best)
        b.tags[best[0]] = "false-promoted-positive"
        b.policy["rescued"] += 1
    if config.false_negatives == "promote":
        b.promoted = list(b.false)
    return b


def sample_negatives(
    b: QueryBuckets, n: int, corpus_ids: list[str], rng: random.Random, config: GroupConfig
) -> list[tuple[str, str, int]]:
    """Draw up to ``n`` negatives ``(docid, bucket, grade)`` from the buckets in ``config.mix`` order."""
    out: list[tuple[str, str, int]] = []
    for name, cap in parse_mix(config.mix):
        want = n - len(out) if cap is None else min(cap, n - len(out))
        if want <= 0:
            break
        if name == "random" and b.random is None:
            out += [(d, "random", UNJUDGED) for d in _random_docs(corpus_ids, b.exclude, want, rng)]
            continue
        pool = getattr(b, name)
        picked = pool[:want] if config.sampling == "rank" else rng.sample(pool, min(want, len(pool)))
        out += [(d, name, g) for d, g in picked]
    return out


def _random_docs(corpus_ids: list[str], exclude: set[str], k: int, rng: random.Random) -> list[str]:
    picked: list[str] = []
    seen: set[str] = set()
    for _ in range(20 * k + 100):  # rejection sampling; bounded for tiny corpora
        if len(picked) == k:
            break
        d = corpus_ids[rng.randrange(len(corpus_ids))]
        if d not in exclude and d not in seen:
            seen.add(d)
            picked.append(d)
    return picked


def group_rows(
    query: Query,
    pos: tuple[str, int],
    negs: list[tuple[str, str, int]],
    corpus: dict[str, Document],
    config: GroupConfig,
    expected: dict[tuple[str, str], float] | None = None,
    b: QueryBuckets | None = None,
) -> dict[str, Any]:
    """One dataset row: texts for LCE (``query, positive, negative_1..n``) plus ids, buckets and grades.

    ``labels`` (for listwise losses) is the positive's grade, then each negative's grade with
    unjudged/random negatives at 0. ``teacher`` (for the soft losses) is the judge's expected grade
    of each document (its label where the judge gave none; ``config.teacher_unjudged`` for unjudged
    and random negatives). A demoted document's label and teacher are capped by its policy.
    """
    tags, caps = (b.tags, b.caps) if b is not None else ({}, {})

    def teacher(docid: str, grade: int) -> float:
        if grade == UNJUDGED:
            return float(config.teacher_unjudged)
        t = float(grade) if expected is None else expected.get((query.id, docid), float(grade))
        return min(t, float(caps[docid])) if docid in caps else t

    def label(docid: str, grade: int) -> float:
        g = float(max(grade, 0))
        return min(g, float(caps[docid])) if docid in caps else g

    row: dict[str, Any] = {
        "qid": query.id,
        "pos_id": pos[0],
        "query": query.text,
        "positive": doc_text(corpus[pos[0]], config.doc_fields),
    }
    for i, (docid, _, _) in enumerate(negs, start=1):
        row[f"negative_{i}"] = doc_text(corpus[docid], config.doc_fields)
    row["doc_ids"] = [pos[0]] + [d for d, _, _ in negs]
    row["buckets"] = ["positive"] + [tags.get(d, bk) for d, bk, _ in negs]
    row["grades"] = [pos[1]] + [g for _, _, g in negs]
    row["labels"] = [float(pos[1])] + [label(d, g) for d, _, g in negs]
    row["teacher"] = [teacher(pos[0], pos[1])] + [teacher(d, g) for d, _, g in negs]
    return row


def _percentiles(values: list[int]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    a = np.asarray(values, dtype=float)
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return {
        "min": float(a.min()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "max": float(a.max()),
        "mean": round(float(a.mean()), 3),
    }


@dataclass
class _Tally:
    """What :func:`build_groups` counts while it walks the queries."""

    pol: Counter = field(default_factory=Counter)
    dropped: dict[str, list[str]] = field(
        default_factory=lambda: {r: [] for r in ("bad_positive", "no_positive", "too_few_negatives")}
    )
    cand_total: Counter = field(default_factory=Counter)
    drawn: Counter = field(default_factory=Counter)
    per_query: dict[str, list[int]] = field(
        default_factory=lambda: {k: [] for k in ("hard", "soft", "false", "unjudged", "random")}
    )
    pos_counts: Counter = field(default_factory=Counter)
    mined_random: bool = False  # the random bucket holds mining's random candidates (else corpus draws)


def _candidate_keys(t: _Tally) -> tuple[str, ...]:
    """The summary's candidate counts: ``random`` only when mining supplied the random bucket."""
    keys = ("hard", "soft", "false", "unjudged") + (("random",) if t.mined_random else ())
    return keys + ("unjudged_dropped",)


def _judgment_counts(judgments, queries: dict, corpus: dict):
    """``(grades, expected, counts)`` of the judgments (``grades`` None without judgments)."""
    expected: dict[tuple[str, str], float] = {}
    grades, jcounts = judgment_grades(judgments, expected) if judgments is not None else (None, Counter())
    for qid, docid in grades or {}:  # judgments naming ids this build does not know: counted, printed
        jcounts["unknown_query"] += qid not in queries
        jcounts["unknown_document"] += qid in queries and docid not in corpus
    return grades, expected, jcounts


def _ranked_candidates(
    qid: str, positives: Qrels, run: Run, queries: dict, corpus: dict, depth: int
) -> list[str]:
    """The query's candidates in run order, after checking its ids are known (DataError)."""
    if qid not in queries:
        raise DataError(f"positives name query {qid!r}, which is not in the queries")
    for docid in positives[qid]:
        if docid not in corpus:
            raise DataError(f"positives name document {docid!r} (query {qid!r}), which is not in the corpus")
    ranked = [d for d, _ in sorted_ranking(run.get(qid, {}))]
    for d in ranked[:depth]:
        if d not in corpus:
            raise DataError(f"the run names document {d!r} (query {qid!r}), which is not in the corpus")
    return ranked


def _query_groups(
    qid: str, query: Query, b: QueryBuckets, corpus, corpus_ids, expected, config: GroupConfig, t: _Tally
):
    """One query's rows: a group per source and promoted positive with enough negatives."""
    n_neg = config.group_size - 1
    q_rows = []
    for kind, pos_list in (("source", b.positives), ("promoted", b.promoted)):
        for pos in pos_list:
            rng = random.Random(f"{config.seed}\x1f{qid}\x1f{pos[0]}")
            negs = sample_negatives(b, n_neg, corpus_ids, rng, config)
            if len(negs) < n_neg:
                continue
            q_rows.append(group_rows(query, pos, negs, corpus, config, expected, b))
            t.drawn.update(bk for _, bk, _ in negs)
            t.pol.update(f"drawn:{b.tags[d]}" for d, _, _ in negs if d in b.tags)
            t.pos_counts[kind] += 1
    return q_rows


def _count_kept(b: QueryBuckets, config: GroupConfig, t: _Tally) -> None:
    """Add a kept query's policy, positive and candidate counts."""
    t.pol["bp_kept"] += b.policy["bad_positive"] > 0
    t.pol["fn_removed"] += len(b.false) if config.false_negatives == "drop" else 0
    t.pos_counts["unjudged"] += b.unjudged_positives
    t.cand_total["unjudged_dropped"] += b.skipped_unjudged
    for k in t.per_query:
        t.per_query[k].append(len(getattr(b, k) or ()))
        t.cand_total[k] += len(getattr(b, k) or ())


def _groups_summary(rows, positives: Qrels, grades, jcounts: Counter, config: GroupConfig, t: _Tally) -> dict:
    return {
        "queries_in": len(positives),
        "queries_kept": len({r["qid"] for r in rows}),
        "groups": len(rows),
        "group_size": config.group_size,
        "judged": grades is not None,
        "dropped_queries": {k: len(v) for k, v in t.dropped.items()},
        "dropped_qids": {k: v[:100] for k, v in t.dropped.items()},
        "candidates": {k: int(t.cand_total[k]) for k in _candidate_keys(t)},
        "per_query": {k: _percentiles(v) for k, v in t.per_query.items() if k != "random" or t.mined_random},
        "negatives_drawn": {k: int(t.drawn[k]) for k in BUCKETS},
        "positives": {k: int(t.pos_counts[k]) for k in ("source", "promoted", "unjudged")},
        "judgments": {
            k: int(jcounts[k]) for k in ("given", "failed", "duplicate", "unknown_query", "unknown_document")
        },
        "policies": policy_summary(t.pol, t.pos_counts, config),
        "config": config.model_dump(),
    }


def build_groups(
    queries: Mapping[str, Query] | Iterable[Query],
    positives: Qrels,
    run: Run,
    corpus: Mapping[str, Document] | Iterable[Document],
    judgments: Iterable[Any] | None = None,
    config: GroupConfig | None = None,
    random_negatives: Mapping[str, list[str]] | None = None,
):
    """Build LCE training groups from source positives, a candidate run and (optional) judgments.

    Rules (see :class:`GroupConfig`): a query whose source positive is graded below
    ``min_positive_grade`` is dropped; candidates graded >= ``false_negative_grade`` are false hard
    negatives (dropped or promoted to extra positives); grade 1 -> ``hard``, grade 0 -> ``soft``;
    unjudged candidates -> ``unjudged`` (used or dropped per ``config.unjudged``). Without judgments
    every candidate is a plain negative. Negatives are drawn by ``config.mix``; random choices are
    seeded per query. With ``random_negatives`` (mining's random candidates) the ``random`` bucket is
    those documents, so random negatives are sampled once, by mining; without, it draws from the corpus.

    Args:
        queries: ``{qid: Query}`` or Query objects.
        positives: qrels of the source documents (grade > 0 = positive).
        run: candidates per query (BM25/dense), ranked by relforge's tie policy.
        corpus: ``{docid: Document}`` or Document objects.
        judgments: Judgment objects or dicts with ``qid, docid, grade``; ``None`` for the baseline.
        config: the rules; defaults to ``GroupConfig()``.
        random_negatives: ``{qid: [docid, ...]}``, mining's random candidates in mined order (a query
            missing from it has none); ``None``: the ``random`` bucket draws from the corpus.

    Returns:
        ``(datasets.Dataset, summary)``: one row per (query, positive); the summary holds counts
        per bucket, per-query percentiles and dropped queries by reason.
    """
    import datasets

    config = config or GroupConfig()
    queries, corpus = _as_map(queries), _as_map(corpus)
    grades, expected, jcounts = _judgment_counts(judgments, queries, corpus)
    corpus_ids = sorted(corpus)
    n_neg = config.group_size - 1
    rows: list[dict[str, Any]] = []
    t = _Tally(mined_random=random_negatives is not None)
    for qid in sorted(positives):
        ranked = _ranked_candidates(qid, positives, run, queries, corpus, config.depth)
        rand = None if random_negatives is None else list(random_negatives.get(qid, []))
        if rand:
            for d in rand:
                if d not in corpus:
                    raise DataError(f"mined random negative {d!r} (query {qid!r}) is not in the corpus")
            mined_random = set(rand)
            ranked = [d for d in ranked if d not in mined_random]
        b = bucket_query(qid, positives[qid], ranked, grades, config, rand)
        caught = b.policy["bad_positive"] > 0
        t.pol["bp_caught"] += caught
        t.pol["bp_rescued"] += b.policy["rescued"]
        t.pol["fn_caught"] += b.policy["false_negatives"]
        if b.drop_reason:
            t.dropped[b.drop_reason].append(qid)
            t.pol["bp_dropped"] += caught
            continue
        q_rows = _query_groups(qid, queries[qid], b, corpus, corpus_ids, expected, config, t)
        if not q_rows:
            t.dropped["too_few_negatives"].append(qid)
            t.pol["bp_dropped"] += caught
            continue
        _count_kept(b, config, t)
        rows += q_rows
    columns = ["qid", "pos_id", "query", "positive"] + [f"negative_{i}" for i in range(1, n_neg + 1)]
    columns += ["doc_ids", "buckets", "grades", "labels", "teacher"]
    ds = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    return ds, _groups_summary(rows, positives, grades, jcounts, config, t)


def policy_summary(pol: Counter, pos_counts: Counter, config: GroupConfig) -> dict[str, dict[str, Any]]:
    """Per bucket policy: what its rule caught and what the policy kept, changed or removed."""
    return {
        "bad_positive": {
            "policy": config.bad_positive,
            "rule": f"own document graded < {config.min_positive_grade}",
            "queries_caught": int(pol["bp_caught"]),
            "queries_kept": int(pol["bp_kept"]),
            "queries_dropped": int(pol["bp_dropped"]),
            "queries_rescued": int(pol["bp_rescued"]),  # demote: a candidate became the positive
            "negatives_from_demoted_positives": int(pol["drawn:bad-positive-demoted"]),
        },
        "false_negatives": {
            "policy": config.false_negatives,
            "rule": f"candidate graded >= {config.false_negative_grade}",
            "negatives_caught": int(pol["fn_caught"]),
            "negatives_removed": int(pol["fn_removed"]),
            "negatives_demoted": int(pol["drawn:false-demoted"]),
            "negatives_kept_as_soft": int(pol["drawn:false-kept"]),
            "extra_positive_groups": int(pos_counts["promoted"]),
        },
    }


def policy_lines(summary: dict[str, Any], name: str = "groups") -> list[str]:
    """Console lines: one per policy, counts of what it caught and did."""
    out = []
    for rule, d in (summary.get("policies") or {}).items():
        counts = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("policy", "rule"))
        out.append(f"{name}: {rule} policy {d['policy']!r} ({d['rule']}): {counts}")
    return out


def write_groups(ds, summary, out_dir: str | Path) -> Path:
    """Write ``out_dir/dataset`` (``save_to_disk``), ``groups.jsonl`` and ``summary.json`` atomically.

    ``summary``: :func:`build_groups`' summary, or that summary as a
    :class:`~relforge.dataset.summary.GroupSetSummary` (the class that writes and reads the file)."""
    from relforge.data import write_jsonl
    from relforge.dataset.summary import GroupSetSummary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dataset.", dir=out))
    try:
        ds.save_to_disk(str(tmp))
        if (out / "dataset").exists():
            shutil.rmtree(out / "dataset")
        tmp.rename(out / "dataset")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_jsonl(out / "groups.jsonl", ds.to_list())
    GroupSetSummary.model_validate(summary).write(out / "summary.json")
    return out


def load_groups(path: str | Path):
    """Load groups written by :func:`write_groups`: the output folder, its ``dataset/`` folder,
    any ``save_to_disk`` folder, or a ``groups.jsonl`` file."""
    import datasets

    from relforge.errors import MissingInputError

    p = Path(path)
    if p.is_file() and p.suffix in (".jsonl", ".json"):
        return datasets.Dataset.from_json(str(p))
    if (p / "dataset").is_dir():
        p = p / "dataset"
    if (p / "state.json").exists() or (p / "dataset_info.json").exists():
        return datasets.load_from_disk(str(p))
    if (p / "groups.jsonl").exists():
        return datasets.Dataset.from_json(str(p / "groups.jsonl"))
    raise MissingInputError(
        f"{p}: no groups found (expected a folder from `relforge dataset build` or a groups.jsonl)"
    )
