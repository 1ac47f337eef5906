"""Generation filters on hand-made cases, driven through generate_queries with a scripted LLM.

``ScriptedLLM`` is a test double implementing the LLM Protocol: it answers each chat with a fixed
string chosen by the target document's text, so every filter decision is known in advance.
"""

from __future__ import annotations

import pytest

from relforge.generate import FILTERS, FilterConfig, GenerateConfig, generate_queries
from relforge.generate.filters import clean_output, copy_overlap, looks_like_question, normalize
from relforge.llm.base import Completion, GenParams
from relforge.types import Document

GOUT = (
    "Gout is a type of arthritis caused by a buildup of uric acid crystals in a joint, most often "
    "the big toe. Attacks come on suddenly with swelling, redness and intense pain."
)


class ScriptedLLM:
    """Returns ``script[key]`` where key is the first script key found in the chat's last message."""

    name = "scripted"

    def __init__(self, script: dict[str, str | list[str]]):
        self.script = script
        self.calls: list[GenParams] = []

    def generate(self, chats, params=None):
        self.calls.append(params)
        out = []
        for chat in chats:
            last = chat[-1]["content"]
            key = next(k for k in self.script if k in last)
            reply = self.script[key]
            if isinstance(reply, list):
                reply = reply[params.seed % len(reply)]
            out.append(Completion(text=reply, finish_reason="error" if reply == "<error>" else "stop"))
        return out

    def score_choices(self, chats, choices):  # pragma: no cover - not used by generation
        raise NotImplementedError


def _docs(n: int) -> list[Document]:
    return [Document(f"d{i}", f"doc{i} " + GOUT, title=f"Gout {i}") for i in range(n)]


def test_each_filter_on_hand_made_cases():
    docs = _docs(9)
    script = {
        "doc0 ": "Query: which foods make gout attacks worse?",  # valid question: kept (label stripped)
        "doc1 ": "Gout is a type of arthritis caused by a buildup of uric acid crystals in a joint",  # copy
        "doc2 ": "which foods make gout attacks worse?",  # duplicate of doc0's (normalised)
        "doc3 ": "gout toe diet list",  # not a question in question style
        "doc4 ": "",  # empty
        "doc5 ": "gout?",  # too short
        "doc6 ": "which foods should I avoid to prevent gout attacks?",  # the few-shot example copied back
        "doc7 ": "<error>",  # backend error
        "doc8 ": "is gout in the big toe hereditary",  # question word, no '?': kept
    }
    res = generate_queries(ScriptedLLM(script), docs, GenerateConfig(seed=0, n_examples=4))
    assert [q.text for q in res.queries] == [
        "which foods make gout attacks worse?",
        "is gout in the big toe hereditary",
    ]
    assert res.summary["dropped"] == {
        "llm_error": 1,
        "empty": 1,
        "too_short": 1,
        "too_long": 0,
        "copies_document": 1,
        "copies_example": 1,
        "wrong_style": 1,
        "duplicate": 1,
        "round_trip": 0,
    }
    assert list(res.summary["dropped"]) == list(FILTERS)
    assert res.summary["generated"] == 9 and res.summary["kept"] == 2
    assert sum(res.summary["dropped"].values()) + res.summary["kept"] == res.summary["generated"]
    assert {r["doc_id"]: r["reason"] for r in res.rejected}["d1"] == "copies_document"
    q = res.queries[0]
    assert q.id == "gen-d0-0"
    assert q.metadata["doc_id"] == "d0" and q.metadata["model"] == "scripted"
    assert q.metadata["prompt_id"] == "inpars-question" and len(q.metadata["prompt_hash"]) == 16
    assert res.qrels == {"gen-d0-0": {"d0": 3}, "gen-d8-0": {"d8": 3}}


def test_keyword_style_rejects_questions_and_too_long():
    docs = _docs(3)
    script = {"doc0 ": "gout diet uric acid", "doc1 ": "what causes gout in the toe?", "doc2 ": "gout " * 40}
    res = generate_queries(ScriptedLLM(script), docs, GenerateConfig(style="keyword", grade=2))
    assert [q.text for q in res.queries] == ["gout diet uric acid"]
    assert res.summary["dropped"]["wrong_style"] == 1 and res.summary["dropped"]["too_long"] == 1
    assert res.qrels == {"gen-d0-0": {"d0": 2}}


def test_per_doc_uses_distinct_seeds():
    llm = ScriptedLLM({"doc0 ": ["how is gout treated?", "can gout come back after treatment?"]})
    res = generate_queries(llm, _docs(1), GenerateConfig(per_doc=2, seed=4))
    assert [p.seed for p in llm.calls] == [4, 5]
    assert sorted(q.text for q in res.queries) == [
        "can gout come back after treatment?",
        "how is gout treated?",
    ]
    assert {q.id for q in res.queries} == {"gen-d0-0", "gen-d0-1"}


def test_round_trip_bm25():
    docs = [
        Document("gout", GOUT, title="Gout"),
        Document("flu", "Influenza spreads by droplets; the flu vaccine is updated every year.", title="Flu"),
        Document("skin", "Eczema makes skin dry and itchy; moisturisers help.", title="Eczema"),
    ]
    script = {
        "Gout": "does uric acid cause swelling in the big toe?",  # finds its doc
        "Influenza": "why is my skin dry and itchy all winter?",
    }  # points at another doc
    cfg = GenerateConfig(filters=FilterConfig(round_trip="bm25", round_trip_k=1))
    res = generate_queries(ScriptedLLM(script), docs[:2], cfg, corpus=docs)
    assert [q.metadata["doc_id"] for q in res.queries] == ["gout"]
    assert res.summary["dropped"]["round_trip"] == 1


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Question: how do I treat gout?\nDocument: ...", "how do I treat gout?"),
        ('  "what is gout?"  ', "what is gout?"),
        ("\n\n1. what is gout?", "what is gout?"),
        ("", ""),
    ],
)
def test_clean_output(raw, clean):
    assert clean_output(raw) == clean


def test_small_helpers():
    assert normalize("What IS  gout?!") == normalize("what is gout") == "what is gout"
    assert copy_overlap("a b c d e", "x a b c d e y", 4) == 1.0
    assert copy_overlap("a b c", "a b c", 4) == 0.0  # shorter than n: never a copy
    assert looks_like_question("does gout hurt") and not looks_like_question("gout pain toe")
