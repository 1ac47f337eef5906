"""Evaluation: ir_measures metrics, per-query values and paired significance tests.

``evaluate(qrels, {"bm25": run_a, "reranker": run_b})`` returns an :class:`EvalResult` with the mean
of every measure per run, the per-query values, and for each run other than the baseline (the first run
unless ``baseline=`` says otherwise) a paired t-test (``scipy.stats.ttest_rel``) and a paired
randomisation test (``permutation_rounds`` random sign flips of the per-query differences with a fixed
``seed``: deterministic; exact enumeration by ``scipy.stats.permutation_test`` when
``2**n_queries <= permutation_rounds``) on every measure. ``relforge evaluate`` prints it as a table and writes
JSON/CSV.

Policies (the same in the CLI, the pipeline and the report):

* **Metrics come from ir_measures** (never hand-written): the ``pytrec_eval`` provider (trec_eval's
  code) for every measure it supports; ``RR@k`` goes to ir_measures' ``msmarco`` provider (trec_eval's
  ``recip_rank`` has no cutoff) and ``Judged@k`` to its ``judged`` provider. Measures are named with
  ir_measures strings (``"nDCG@10"``, ``"MRR@10"`` = ``"RR@10"``, ``"RR(rel=2)@10"``, ``"P(rel=2)@10"``,
  ``"MAP@100"`` = ``"AP@100"``, ``"R@100"``, ``"Judged@10"``), parsed once.
* **Graded qrels**: nDCG uses the grades as gains. Binary measures count grade >= 1 as relevant unless
  they say ``rel=k``; ``rel=k`` (``--rel``) applies that threshold to every binary measure that does not
  set its own (MRR with rel >= 2: ``--rel 2`` or ``"RR(rel=2)@10"``).
* **Ties**: relforge ranks by score descending, then doc id ascending (:func:`relforge.types.sorted_ranking`).
  trec_eval breaks ties its own way (doc id descending), so before a run reaches ir_measures each
  query's ranking is re-scored n, n-1, ..., 1 in relforge's order (:func:`strict_scores`): every
  provider then sees exactly that order.
* **Missing queries**: a query in the qrels that a run lacks scores 0 on every measure (ir_measures'
  default) and stays in the mean; ``EvalResult.missing_queries`` lists them. Run queries absent from the
  qrels are ignored (counted in ``extra_queries``).
* **Queries with no relevant document** (every judgment grade <= 0): dropped from every measure and
  listed in ``skipped_queries`` (``empty_queries="skip"``, default) — no system can score on them, so they
  would only dilute the means. ``empty_queries="zero"`` keeps them (score 0, like trec_eval). A query
  with relevant documents below a measure's ``rel`` threshold is kept and scores 0 on that measure.
* **Significance**: two-sided, paired over the evaluated queries. Marks: † t-test p < alpha,
  ‡ randomisation p < alpha (alpha 0.05). No multiple-comparison correction is applied. If every
  per-query difference is 0 both p-values are 1.0; with fewer than 2 queries they are NaN (``null``
  in JSON).
"""

from relforge.evaluate.config import DEFAULT_MEASURES, EvalConfig
from relforge.evaluate.core import EvalResult, evaluate, strict_scores
from relforge.evaluate.measures import MeasureSpec, parse_measures, split_measures
from relforge.evaluate.significance import PairedTest, paired_tests

__all__ = [
    "DEFAULT_MEASURES",
    "EvalConfig",
    "EvalResult",
    "MeasureSpec",
    "PairedTest",
    "evaluate",
    "paired_tests",
    "parse_measures",
    "split_measures",
    "strict_scores",
]
