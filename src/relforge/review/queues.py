"""The curation queues: which pair an annotator sees next.

- ``balanced``: toward a target per class and split (the source paper's class-balanced 1,000 + 250).
  Pairs are drawn by the **judge's** grade from the class whose **human** count is furthest below its
  target, most confident judge first, so human labels fill the classes evenly; a class is no longer
  drawn once its target is met. The split (train / validation) furthest from its targets goes first.
- ``uncertain``: highest entropy of the judge's distribution first.
- ``disagreement``: judge vs retriever: ``|retriever rank percentile - expected grade / max grade|``
  largest first (needs a TREC run as ``--pairs``).
- ``random``: a fixed seeded order; offers pairs others labelled too (how doubly labelled pairs arise).
- ``overlap``: pairs another annotator labelled and you did not (for inter-annotator agreement).
- ``recheck``: pairs where two annotators, or the latest human label and the judge, disagree; biggest
  gap first; a pair leaves your re-check queue once you act on it from there (until someone relabels it).

The coverage queues (balanced, uncertain, disagreement) offer only pairs nobody has labelled. Every
queue leaves out pairs you skipped or flagged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from relforge.review.store import PairRow, Store

SPLITS = ("train", "validation")


def class_targets(total: int, values: list[int]) -> dict[int, int]:
    """``total`` split evenly over ``values``; the remainder goes to the lowest grades."""
    base, rest = divmod(total, len(values))
    return {v: base + (1 if i < rest else 0) for i, v in enumerate(values)}


def entropy(probs: dict[int, float] | None) -> float:
    if not probs:
        return -1.0
    return -sum(p * math.log(p) for p in probs.values() if p > 0)


def _hash_order(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


@dataclass
class Snapshot:
    """What the queues need to know about the labels right now (read once per request)."""

    annotator: str
    labels: dict[int, dict[str, tuple[int, int]]]
    flags: dict[int, set[str]]
    mine_done: set[int] = field(default_factory=set)  # skipped or flagged by the annotator
    recheck: dict[int, int] = field(default_factory=dict)
    latest_grades: dict[int, int] | None = None

    @classmethod
    def read(cls, store: Store, annotator: str) -> Snapshot:
        labels = store.current_labels()
        flags = store.flags()
        skipped = set(store.last_events(annotator, ("skip",)))
        flagged = {p for p, who in flags.items() if annotator in who}
        return cls(
            annotator, labels, flags, skipped | flagged, store.recheck_marks(annotator), store.latest_labels()
        )

    def latest(self, pair_id: int) -> int | None:
        """The pair's grade by its most recent label (anyone)."""
        if self.latest_grades is not None:
            return self.latest_grades.get(pair_id)
        got = self.labels.get(pair_id)
        return max(got.values(), key=lambda ge: ge[1])[0] if got else None

    def mine(self, pair_id: int) -> int | None:
        got = self.labels.get(pair_id, {}).get(self.annotator)
        return got[0] if got else None


class Queues:
    """Static orders computed once per server start; :meth:`next` applies the live labels."""

    def __init__(self, pairs: list[PairRow], values: list[int], targets: dict[str, dict[int, int]], seed=0):
        self.pairs = {p.id: p for p in pairs}
        self.values = values
        self.targets = targets
        self.has_judge = any(p.judge_grade is not None for p in pairs)
        self.has_retriever = any(p.retriever_rank is not None for p in pairs)
        # balanced: per (split, judge grade), most confident first
        self.strata: dict[tuple[str, int], list[int]] = {}
        for p in pairs:
            if p.judge_grade is not None:
                self.strata.setdefault((p.split, p.judge_grade), []).append(p.id)
        for key, ids in self.strata.items():
            ids.sort(key=lambda i: (-self._conf(self.pairs[i], key[1]), i))
        judged = [p for p in pairs if p.judge_probs]
        self.by_entropy = [p.id for p in sorted(judged, key=lambda p: (-entropy(p.judge_probs), p.id))]
        self.by_disagreement = self._disagreement_order(pairs)
        self.by_random = [p.id for p in sorted(pairs, key=lambda p: _hash_order(seed, str(p.id)))]

    @staticmethod
    def _conf(p: PairRow, grade: int) -> float:
        return (p.judge_probs or {}).get(grade, 1.0)

    def _disagreement_order(self, pairs: list[PairRow]) -> list[int]:
        top = max(self.values) or 1
        depth: dict[str, int] = {}
        for p in pairs:
            if p.retriever_rank is not None:
                depth[p.qid] = max(depth.get(p.qid, 1), p.retriever_rank)
        scored = []
        for p in pairs:
            if p.retriever_rank is None or (p.judge_expected is None and p.judge_grade is None):
                continue
            n = depth[p.qid]
            pct = 1.0 - (p.retriever_rank - 1) / (n - 1) if n > 1 else 1.0
            judge = (p.judge_expected if p.judge_expected is not None else p.judge_grade) / top
            scored.append((-abs(pct - judge), p.id))
        return [i for _, i in sorted(scored)]

    def available(self) -> list[str]:
        """The queues that have what they need (judgments, a retriever run)."""
        need = {"balanced": self.has_judge, "uncertain": self.has_judge, "disagreement": self.has_retriever}
        from relforge.review.config import QUEUES

        return [q for q in QUEUES if need.get(q, True)]

    # ------------------------------------------------------------------ progress
    def progress(self, snap: Snapshot) -> dict[str, dict[int, int]]:
        """Human-labelled pairs per split and grade (the latest label of each pair)."""
        done = {s: dict.fromkeys(self.values, 0) for s in SPLITS}
        for pid in snap.labels:
            g = snap.latest(pid)
            p = self.pairs.get(pid)
            if p is not None and g in done[p.split]:
                done[p.split][g] += 1
        return done

    # ------------------------------------------------------------------ next
    def next(self, queue: str, snap: Snapshot, exclude: set[int] = frozenset()) -> int | None:
        """The next pair id for ``snap.annotator`` in ``queue`` (None: the queue is empty)."""
        skip = snap.mine_done | set(exclude)

        def free(i: int) -> bool:  # nobody labelled it and I did not skip or flag it
            return i not in snap.labels and i not in skip

        def not_mine(i: int) -> bool:
            return snap.mine(i) is None and i not in skip

        pick: dict[str, Callable[[], int | None]] = {
            "balanced": lambda: self._balanced(snap, free),
            "uncertain": lambda: _first(self.by_entropy, free),
            "disagreement": lambda: _first(self.by_disagreement, free),
            "random": lambda: _first(self.by_random, not_mine),
            "overlap": lambda: self._overlap(snap, not_mine),
            "recheck": lambda: self._recheck(snap, skip),
        }
        if queue not in pick:
            raise ValueError(f"unknown queue {queue!r}; queues: {sorted(pick)}")
        return pick[queue]()

    def _balanced(self, snap: Snapshot, free: Callable[[int], bool]) -> int | None:
        done = self.progress(snap)

        def ratio(split: str) -> float:
            tot = sum(self.targets[split].values())
            return sum(min(done[split][v], t) for v, t in self.targets[split].items()) / tot if tot else 1.0

        for split in sorted(SPLITS, key=lambda s: (ratio(s), SPLITS.index(s))):
            tgt = self.targets[split]
            short = [v for v in self.values if done[split][v] < tgt[v]]
            short.sort(key=lambda v: (-(tgt[v] - done[split][v]) / tgt[v], v))
            for v in short:
                got = _first(self.strata.get((split, v), []), free)
                if got is not None:
                    return got
        return None

    def _overlap(self, snap: Snapshot, ok: Callable[[int], bool]) -> int | None:
        cands = [(-len(who), pid) for pid, who in snap.labels.items() if ok(pid) and pid in self.pairs]
        return min(cands)[1] if cands else None

    def gap(self, snap: Snapshot, pair_id: int) -> int:
        """Largest difference between the pair's current human labels and the judge's grade."""
        grades = [g for g, _ in snap.labels.get(pair_id, {}).values()]
        if not grades:
            return 0
        p = self.pairs[pair_id]
        human_gap = max(grades) - min(grades)
        judge_gap = abs(snap.latest(pair_id) - p.judge_grade) if p.judge_grade is not None else 0
        return max(human_gap, judge_gap)

    def _recheck(self, snap: Snapshot, skip: set[int]) -> int | None:
        best = None
        for pid, who in snap.labels.items():
            if pid in skip or pid not in self.pairs:
                continue
            last_change = max((eid for name, (_, eid) in who.items() if name != snap.annotator), default=0)
            if snap.annotator in who and len(who) == 1:
                last_change = 0  # only my label: re-checked once I act on it from this queue
            if snap.recheck.get(pid, -1) > last_change:
                continue
            g = self.gap(snap, pid)
            if g > 0 and (best is None or (-g, pid) < best):
                best = (-g, pid)
        return best[1] if best else None


def _first(order: list[int], ok: Callable[[int], bool]) -> int | None:
    for i in order:
        if ok(i):
            return i
    return None
