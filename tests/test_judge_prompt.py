"""Golden tests of the judge prompt: exact rendered text, truncation, few-shot turns, other scales."""

from __future__ import annotations

import pytest

from relforge.errors import DataError, UsageError
from relforge.judge.prompt import JudgeTemplate, builtin_templates
from relforge.types import Document, Query

QUERY = Query("q1", "What causes anemia?")
DOC = Document(
    "d1",
    "Anemia is caused by a lack of iron in the blood and other factors.",
    title="What is anemia?",
    metadata={"url": "http://x.org/a"},
)

GOLDEN_SYSTEM = (
    "You are a search quality rater. You judge how well a document answers a search query, carefully and "
    "consistently, following the grading guidelines."
)
GOLDEN_USER = """Read the query and the document. Decide how well the document answers the information need behind the query. Judge only the document shown; do not use outside knowledge of other pages.

Grades:
0 = irrelevant: the document has nothing to do with the query.
1 = related: the document is on the topic of the query but does not answer it.
2 = partly answers: the document answers the query partly, or the answer is buried in unrelated material.
3 = perfectly relevant: the document is dedicated to the query and contains the exact answer.

Query: What causes anemia?

Document:
Title: What is anemia?
Text: Anemia is caused by a lack of iron in the blood and other factors.
URL: http://x.org/a

Answer with the grade only: a single digit from 0, 1, 2 or 3."""


def test_default_template_renders_exactly():
    t = JudgeTemplate.load()
    chat = t.build_chat(QUERY, DOC)
    assert [m["role"] for m in chat] == ["system", "user"]
    assert chat[0]["content"] == GOLDEN_SYSTEM
    assert chat[1]["content"] == GOLDEN_USER
    assert t.labels == ["0", "1", "2", "3"] and t.values == [0, 1, 2, 3]
    assert "relevance-0to3" in builtin_templates()


def test_truncation_marker_word_budget():
    t = JudgeTemplate.load()
    user = t.build_chat(QUERY, DOC, max_doc_tokens=8)[1]["content"]
    # 8 tokens ~ 6 words without a tokenizer
    assert "Text: Anemia is caused by a lack [... truncated]\n" in user
    assert t.truncate("short text", max_tokens=8) == "short text"


def test_truncation_marker_with_model_tokenizer(tiny_llm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    t = JudgeTemplate.load()
    cut = t.truncate(DOC.text, tokenizer=tok, max_tokens=5)
    assert cut.endswith(" [... truncated]")
    body = cut[: -len(" [... truncated]")]
    assert len(tok.encode(body, add_special_tokens=False)) <= 5
    assert DOC.text.startswith(body)
    assert t.truncate(DOC.text, tokenizer=tok, max_tokens=500) == DOC.text


def test_query_intent_and_missing_fields():
    t = JudgeTemplate.load()
    q = Query("q2", "anemia causes", metadata={"intent": "causes"})
    d = Document("d2", "Iron deficiency.")  # no title, no url: those lines are left out
    user = t.build_chat(q, d)[1]["content"]
    assert "Query: anemia causes\nQuery intent: causes\n\nDocument:\nText: Iron deficiency.\n\nAnswer" in user
    assert "Title:" not in user and "URL:" not in user


def test_few_shot_examples_are_chat_turns():
    shots = [
        {"query": "flu symptoms", "title": "Flu", "text": "Fever and cough.", "grade": 3},
        {"query": "flu symptoms", "title": "Knee", "text": "Knee surgery.", "grade": 0},
    ]
    t = JudgeTemplate.load(few_shot=shots)
    chat = t.build_chat(QUERY, DOC)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Query: flu symptoms" in chat[1]["content"] and "Text: Fever and cough." in chat[1]["content"]
    assert chat[2]["content"] == "3" and chat[4]["content"] == "0"
    assert chat[5]["content"] == GOLDEN_USER
    assert t.hash != JudgeTemplate.load().hash


def test_binary_scale_config():
    scale = [
        {"label": "0", "name": "not relevant", "definition": "does not answer the query."},
        {"label": "1", "name": "relevant", "definition": "answers the query."},
    ]
    t = JudgeTemplate.load(scale=scale, id="binary")
    user = t.build_chat(QUERY, DOC)[1]["content"]
    assert (
        "Grades:\n0 = not relevant: does not answer the query.\n1 = relevant: answers the query.\n\nQuery:"
        in user
    )
    assert user.endswith("Answer with the grade only: a single digit from 0 or 1.")
    assert t.labels == ["0", "1"] and t.values == [0, 1]


def test_reasoning_format_and_few_shot_reasoning():
    shots = [{"query": "flu", "text": "Fever.", "grade": 2, "reasoning": "Mentions one symptom."}]
    t = JudgeTemplate.load(reasoning=True, few_shot=shots)
    chat = t.build_chat(QUERY, DOC)
    assert chat[2]["content"] == "Mentions one symptom.\nGrade: 2"
    assert chat[-1]["content"].endswith(
        'First explain your judgement in one or two sentences, then write "Grade: " followed by the digit.'
    )


def test_template_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown judge template 'nope'"):
        JudgeTemplate.load("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nrole: r\n")
    with pytest.raises(DataError, match="misses keys"):
        JudgeTemplate.load(bad)
    with pytest.raises(DataError, match="unknown template keys \\['colour'\\]"):
        JudgeTemplate.load(colour="red")
