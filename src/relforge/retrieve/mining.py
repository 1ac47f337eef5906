"""Hard-negative mining from a run, in small stages: candidates -> filter -> sample.

``mine_negatives`` excludes known positives, keeps ranks inside a window, drops candidates whose
score is too close to the positive's (margin), takes ``num_negatives`` per query and optionally
replaces a share of them by random corpus documents (pure hard negatives can hurt: many are
unlabelled positives; sentence-transformers issue 3085). Every skipped candidate is counted by
reason in ``stats`` — nothing is dropped silently.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from collections.abc import Iterable

from relforge.retrieve.config import MiningConfig
from relforge.types import Qrels, Run, sorted_ranking

#: skip reasons, in the order they are checked
SKIP_REASONS = ("positive", "rank_window", "margin")


def candidates(
    scores: dict[str, float], positives: Iterable[str], config: MiningConfig, skips: Counter
) -> list[tuple[str, int, float]]:
    """Ranked ``(docid, rank, score)`` inside ``[rank_min, rank_max]``, positives removed.

    Ranks are positions in the run itself (1-based, relforge tie policy), positives included.
    """
    pos = set(positives)
    out = []
    for rank, (docid, score) in enumerate(sorted_ranking(scores), start=1):
        if docid in pos:
            skips["positive"] += 1
        elif not config.rank_min <= rank <= config.rank_max:
            skips["rank_window"] += 1
        else:
            out.append((docid, rank, score))
    return out


def margin_ceiling(pos_score: float | None, config: MiningConfig) -> float | None:
    """The highest score a negative may have given the positive's score, or None for no limit."""
    if pos_score is None:
        return None
    limits = []
    if config.margin is not None:
        limits.append(pos_score - config.margin)
    if config.relative_margin is not None:
        limits.append(pos_score * (1.0 - config.relative_margin))
    return min(limits) if limits else None


def filter_margin(
    cands: list[tuple[str, int, float]], ceiling: float | None, skips: Counter
) -> list[tuple[str, int, float]]:
    """Drop candidates scoring at or above ``ceiling`` (too close to the positive: likely false negatives)."""
    if ceiling is None:
        return cands
    kept = [c for c in cands if c[2] < ceiling]
    skips["margin"] += len(cands) - len(kept)
    return kept


def sample(cands: list[tuple[str, int, float]], n: int, strategy: str, rng: random.Random) -> list[str]:
    """Take ``n`` candidates: the best-ranked (``"top"``) or a uniform subset kept in rank order (``"random"``)."""
    if strategy == "random" and len(cands) > n:
        chosen = sorted(rng.sample(range(len(cands)), n))
        return [cands[i][0] for i in chosen]
    return [c[0] for c in cands[:n]]


def sample_random(pool: list[str], exclude: set[str], n: int, rng: random.Random) -> list[str]:
    """``n`` distinct documents from ``pool`` not in ``exclude`` (fewer if the pool is too small)."""
    if n <= 0:
        return []
    picked: list[str] = []
    tries = 0
    while len(picked) < n and tries < 20 * n + 100:
        tries += 1
        d = pool[rng.randrange(len(pool))]
        if d not in exclude:
            exclude.add(d)
            picked.append(d)
    if len(picked) < n:  # small pool: fall back to an exact draw
        rest = [d for d in pool if d not in exclude]
        picked += rng.sample(rest, min(n - len(picked), len(rest)))
    return picked


def mine_negatives(
    run: Run,
    positives: Qrels,
    config: MiningConfig | None = None,
    *,
    corpus_ids: Iterable[str] | None = None,
    stats: dict | None = None,
) -> dict[str, list[str]]:
    """Choose negatives for every query that has a positive: hard ones in rank order, then random ones.

    Same arguments as :func:`mine_negatives_split`, which keeps the hard and random lists apart.
    """
    split = mine_negatives_split(run, positives, config, corpus_ids=corpus_ids, stats=stats)
    return {qid: hard + rand for qid, (hard, rand) in split.items()}


def mine_negatives_split(
    run: Run,
    positives: Qrels,
    config: MiningConfig | None = None,
    *,
    corpus_ids: Iterable[str] | None = None,
    stats: dict | None = None,
) -> dict[str, tuple[list[str], list[str]]]:
    """Choose negatives for every query that has a positive.

    Args:
        run: retrieved candidates ``{qid: {docid: score}}``.
        positives: ``{qid: {docid: grade}}``; every listed doc with grade > 0 is a positive and never
            a negative (grade-0 entries are known non-relevant and stay eligible).
        config: rank window, number, random share, sampling, margins (:class:`MiningConfig`).
        corpus_ids: pool for random negatives; defaults to every doc id seen in the run.
        stats: if given, filled with counts: ``queries``, ``queries_without_positive``,
            ``queries_not_in_run``, ``queries_short`` (fewer negatives than asked), ``skipped``
            (per reason, see :data:`SKIP_REASONS`), ``hard``, ``random``, and mean positive / negative scores.

    Returns:
        ``{qid: (hard negatives in rank order, random negatives)}``.
    """
    config = config or MiningConfig()
    rng = random.Random(config.seed)
    n_random = round(config.num_negatives * config.random_share)
    n_hard = config.num_negatives - n_random
    pool = sorted(set(corpus_ids) if corpus_ids is not None else {d for s in run.values() for d in s})
    skips: Counter = Counter({r: 0 for r in SKIP_REASONS})
    counts: Counter = Counter()
    pos_scores: list[float] = []
    neg_scores: list[float] = []
    out: dict[str, tuple[list[str], list[str]]] = {}
    for qid in sorted(positives):
        pos = {d for d, g in positives[qid].items() if g > 0}
        if not pos:
            counts["queries_without_positive"] += 1
            continue
        scores = run.get(qid, {})
        if not scores:
            counts["queries_not_in_run"] += 1
        pos_in_run = [scores[d] for d in pos if d in scores]
        pos_score = max(pos_in_run) if pos_in_run else None
        if pos_score is not None:
            pos_scores.append(pos_score)
        elif config.margin is not None or config.relative_margin is not None:
            counts["queries_margin_unchecked"] += 1  # positive not retrieved: no score to compare with
        cands = filter_margin(
            candidates(scores, pos, config, skips), margin_ceiling(pos_score, config), skips
        )
        hard = sample(cands, n_hard, config.sampling, rng)
        rand = sample_random(pool, set(pos) | set(hard), n_random, rng) if pool else []
        neg_scores += [scores[d] for d in hard]
        counts["hard"] += len(hard)
        counts["random"] += len(rand)
        counts["queries_short"] += len(hard) + len(rand) < config.num_negatives
        out[qid] = (hard, rand)
    if stats is not None:
        stats.update(
            {
                "queries": len(out),
                **{
                    k: counts[k]
                    for k in (
                        "queries_without_positive",
                        "queries_not_in_run",
                        "queries_margin_unchecked",
                        "queries_short",
                        "hard",
                        "random",
                    )
                },
                "skipped": dict(skips),
                "mean_positive_score": _mean(pos_scores),
                "mean_negative_score": _mean(neg_scores),
            }
        )
    return out


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def read_negatives(path: str | os.PathLike) -> dict[str, list[str]]:
    """Mined negatives per query, ``{qid: [docid, ...]}`` in mined order (hard then random): a candidates
    file (``relforge retrieve mine``, a pipeline run's ``retrieve/candidates.jsonl``) or an old one (the old
    mine JSONL, a run's ``retrieve/negatives.json``), read by :func:`relforge.retrieve.candidates.read_candidates`.

    The one reader of mined negatives (the groups stage's ``negatives``, the judge stage's candidates)."""
    from relforge.retrieve.candidates import negatives_by_query, read_candidates

    return negatives_by_query(read_candidates(path))
