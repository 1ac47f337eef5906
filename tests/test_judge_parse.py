"""Parsing grades out of messy judge replies (generate mode)."""

from __future__ import annotations

import pytest

from relforge.judge.parse import parse_grade, parse_grade_label

L = ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("reply", "grade", "pattern"),
    [
        ("Grade: 2", 2, "keyword"),
        ("grade:3", 3, "keyword"),
        ("**Grade:** 1", 1, "keyword"),
        ("Final grade = **3**", 3, "keyword"),
        ("The answer is 3.", 3, "keyword"),
        ("Relevance score: 0", 0, "keyword"),
        ("My rating would be 2 because it partly answers.", 2, "keyword"),
        # reasoning first, then the grade: the final grade wins
        ("The query asks about grade 3 anemia. The document covers causes only. Grade: 1", 1, "keyword"),
        ("Grade: 3\nOn reflection the text is off topic.\nGrade: 0", 0, "keyword"),
        ("I rate it 2 out of 3", 2, "fraction"),
        ("2/3", 2, "fraction"),
        ("**2**", 2, "emphasis"),
        ("The document is related: *1*", 1, "emphasis"),
        ("2", 2, "bare"),
        ("  3.\n", 3, "bare"),
        ("(1)", 1, "bare"),
        ("'0'", 0, "bare"),
        ("2 - partly answers the question", 2, "leading"),
        ("3: perfectly relevant", 3, "leading"),
        ("1 (related, no answer)", 1, "leading"),
        ("The document is on topic but lacks the dose. So I would say 1.", 1, "trailing"),
    ],
)
def test_messy_replies_parse(reply, grade, pattern):
    label, used = parse_grade_label(reply, L)
    assert label == str(grade)
    assert used == pattern
    assert parse_grade(reply, L) == grade


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   ",
        None,
        "Grade: 4",  # out of scale: not a grade
        "Grade: 10/10",
        "2.5",
        "Score: 2.5",
        "I cannot judge this document.",
        # SmolLM2's favourite failure: copying the document back
        "Anemia is caused by a lack of iron in the blood. Call 1-800-555-1234",
        "Take 4 tablets daily.",
    ],
)
def test_unparseable_replies_are_none(reply):
    assert parse_grade_label(reply, L) == (None, None)
    assert parse_grade(reply, L) is None


def test_out_of_scale_keyword_falls_back_to_an_in_scale_grade():
    # the last keyword value is out of scale; an earlier in-scale keyword match is taken
    assert parse_grade("Grade: 2 (on a 0-3 scale). Score: 7", L) == 2


def test_word_labels_and_custom_values():
    assert parse_grade("Answer: No.", ["no", "yes"]) == 0
    assert parse_grade("YES", ["no", "yes"]) == 1
    assert parse_grade("maybe", ["no", "yes"]) is None
    # labels mapped to non-default values
    assert parse_grade("Grade: 2", ["1", "2", "3"], values=[10, 20, 30]) == 20
    # a binary 0/1 scale: a "2" is out of scale
    assert parse_grade("Grade: 2", ["0", "1"]) is None
