"""relforge.judge: an LLM relevance judge (graded labels with probabilities) and its agreement with humans."""

from relforge.judge.calibrate import apply_thresholds, fit_thresholds
from relforge.judge.judge import (
    Judgment,
    check_pairs,
    judge_pairs,
    judgments_to_qrels,
    read_judgments,
    read_pairs,
    summarize,
    write_judgment_qrels,
    write_judgments,
)
from relforge.judge.parse import parse_grade
from relforge.judge.prompt import JudgeTemplate

__all__ = [
    "Judgment",
    "JudgeTemplate",
    "apply_thresholds",
    "check_pairs",
    "fit_thresholds",
    "judge_pairs",
    "judgments_to_qrels",
    "parse_grade",
    "read_judgments",
    "read_pairs",
    "summarize",
    "write_judgment_qrels",
    "write_judgments",
]
