"""Prompt rendering (few-shot examples become chat turns) and document selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from relforge.data import write_jsonl
from relforge.errors import DataError, UsageError
from relforge.generate import QueryPrompt, SelectConfig, builtin_prompts, select_documents
from relforge.types import Document


def test_few_shot_examples_become_chat_turns():
    p = QueryPrompt.load(n_examples=2, domain="pet health questions")
    chat = p.build_chat(Document("d", "Cats need taurine in their diet.", title="Cat food"))
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "pet health questions" in chat[0]["content"]
    assert chat[2]["content"] == p.turn_examples()[0].query  # assistant turn = the example query
    assert p.turn_examples()[0].document.split()[0] in chat[1]["content"]
    assert "Cat food\nCats need taurine" in chat[-1]["content"]
    assert p.hash != QueryPrompt.load(n_examples=2).hash  # the domain is part of the hash


def test_builtin_prompts_and_styles():
    assert {"inpars-question", "inpars-keyword"} <= set(builtin_prompts())
    kw = QueryPrompt.load(style="keyword")
    assert kw.id == "inpars-keyword"
    assert kw.build_chat("doc")[2]["content"] == kw.turn_examples()[0].query
    assert "?" not in kw.turn_examples()[0].query
    with pytest.raises(UsageError, match="style"):
        QueryPrompt.load("inpars-keyword", style="question")
    with pytest.raises(UsageError, match="inpars-question"):
        QueryPrompt.load("no-such-prompt")


def test_user_examples_file_and_prompt_file(tmp_path):
    write_jsonl(
        tmp_path / "ex.jsonl",
        [
            {"document": "Aspirin thins the blood.", "query": "does aspirin thin blood?"},
            {"text": "my knee clicks when I walk is that bad"},
        ],
    )
    p = QueryPrompt.load(examples=str(tmp_path / "ex.jsonl"))
    chat = p.build_chat("Ibuprofen reduces inflammation.")
    assert [m["content"] for m in chat if m["role"] == "assistant"] == ["does aspirin thin blood?"]
    assert "my knee clicks" in chat[0]["content"]  # a real query without a document: a style example
    (tmp_path / "p.yaml").write_text(
        "id: mine\nstyle: question\nsystem: 'Ask about {{ domain }}.'\nuser: 'Text: {{ document }}'\ndomain: cars\n"
        "examples: " + str(tmp_path / "ex.jsonl") + "\n",
        encoding="utf-8",
    )
    own = QueryPrompt.load(str(tmp_path / "p.yaml"))
    assert own.build_chat("Brakes squeak.")[-1]["content"] == "Text: Brakes squeak."
    assert own.build_chat("x")[0]["content"].startswith("Ask about cars.")
    (tmp_path / "bad.yaml").write_text(
        "id: bad\nstyle: question\nsystem: '{{ nope }}'\nuser: u\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match="bad.yaml"):
        QueryPrompt.load(str(tmp_path / "bad.yaml"))
    write_jsonl(tmp_path / "broken.jsonl", [{"document": "no query here"}])
    with pytest.raises(DataError, match="broken.jsonl:1"):
        QueryPrompt.load(examples=str(tmp_path / "broken.jsonl"))


def _strata_corpus() -> list[Document]:
    sources = ["GARD"] * 30 + ["NIDDK"] * 5 + ["CDC"] * 3 + ["MPlus"] * 2
    return [Document(f"d{i:02d}", f"text {i}", metadata={"source": s}) for i, s in enumerate(sources)]


def test_select_all_random_and_deterministic():
    docs = _strata_corpus()
    assert select_documents(docs, SelectConfig()) == docs
    a = select_documents(docs, SelectConfig(sample=7, seed=3))
    assert len(a) == 7 and len({d.id for d in a}) == 7
    assert a == select_documents(docs, SelectConfig(sample=7, seed=3))
    assert a != select_documents(docs, SelectConfig(sample=7, seed=4))


def test_select_diverse_by_field_covers_strata():
    docs = _strata_corpus()
    stats: dict = {}
    picked = select_documents(docs, SelectConfig(sample=8, diverse_by="source", seed=0), stats=stats)
    assert {d.metadata["source"] for d in picked} == {"GARD", "NIDDK", "CDC", "MPlus"}
    assert stats["groups"] == {"CDC": 2, "GARD": 2, "MPlus": 2, "NIDDK": 2}
    assert picked == select_documents(docs, SelectConfig(sample=8, diverse_by="source", seed=0))
    with pytest.raises(UsageError, match="source"):
        select_documents(docs, SelectConfig(sample=3, diverse_by="qtype"))


def test_select_diverse_by_embeddings_covers_clusters(tmp_path):
    topics = {
        "heart": "heart attack chest pain cardiology",
        "skin": "eczema rash itchy skin dermatology",
        "eye": "glaucoma vision loss eye pressure",
    }
    docs = [Document(f"{t}{i}", f"{words} case {i}") for t, words in topics.items() for i in range(4)]
    cfg = SelectConfig(sample=3, diverse_by="embeddings", n_clusters=3, cache_dir=str(tmp_path), seed=0)
    picked = select_documents(docs, cfg)
    assert sorted(d.id.rstrip("0123456789") for d in picked) == ["eye", "heart", "skin"]
    assert picked == select_documents(docs, cfg)


def _pool_file(tmp_path):
    rows = [
        {
            "document": "Gout is inherited in an autosomal dominant pattern from a parent.",
            "query": "Is gout inherited?",
        },
        {
            "document": "Eczema is treated with moisturisers and steroid creams.",
            "query": "How to treat eczema?",
        },
        {
            "document": "Glaucoma affects about 1 in 100 adults over forty.",
            "query": "How many people get glaucoma?",
        },
        {
            "document": "Asthma is treated with inhaled corticosteroids.",
            "query": "What are the treatments for asthma?",
        },
    ]
    write_jsonl(tmp_path / "pool.jsonl", rows)
    return str(tmp_path / "pool.jsonl")


def test_nearest_examples_follow_each_document(tmp_path):
    from relforge.retrieve.dense import encode_texts, load_encoder

    enc = load_encoder("minilm")
    p = QueryPrompt.load(examples=_pool_file(tmp_path), n_examples=2, selection="nearest")
    docs = [
        Document("a", "Psoriasis is treated with creams, light therapy and steroid ointments."),
        Document("b", "Asthma is treated with inhaled corticosteroids."),  # the pool's own document
        Document("c", "Migraine is inherited in an autosomal dominant pattern."),
    ]
    picks = p.nearest_examples(docs, lambda t: encode_texts(enc, t))
    assert [len(x) for x in picks] == [2, 2, 2]
    assert picks[0][-1].query == "How to treat eczema?"  # the most similar example sits next to the document
    assert "What are the treatments for asthma?" not in [e.query for e in picks[1]]  # never its own question
    assert picks[2][-1].query == "Is gout inherited?"
    chat = p.build_chat(docs[2], picks[2])
    assert [m["content"] for m in chat if m["role"] == "assistant"] == [e.query for e in picks[2]]
    assert p.hash != QueryPrompt.load(examples=_pool_file(tmp_path), n_examples=2).hash
    with pytest.raises(UsageError, match="nearest_examples"):
        p.build_chat(docs[0])  # nearest without the document's examples would show the whole pool
    write_jsonl(tmp_path / "q.jsonl", [{"text": "a query without a document"}])
    with pytest.raises(UsageError, match="needs examples with documents"):
        QueryPrompt.load(examples=str(tmp_path / "q.jsonl"), selection="nearest")


def test_max_example_words_cuts_the_examples_not_the_document():
    long = " ".join(f"w{i}" for i in range(300))
    p = QueryPrompt.load(n_examples=2, max_example_words=5)
    chat = p.build_chat(Document("d", long, title="T"))
    for turn in (chat[1], chat[3]):  # the example documents: 5 words, then the cut marker
        doc = turn["content"].split("Document: ", 1)[1].split("\n\nQuestion:")[0]
        assert len(doc.split()) == 6 and doc.endswith(" ...")
    target = chat[-1]["content"].split("Document: ", 1)[1].split("\n\nQuestion:")[0]
    assert len(target.split()) == p.max_doc_words + 1  # the document keeps max_doc_words (200)
    full = QueryPrompt.load(n_examples=2)
    assert full.max_example_words is None and p.hash != full.hash
    assert len(full.build_chat(Document("d", long))[1]["content"]) > len(chat[1]["content"])


def test_a_prompt_whose_template_does_not_render_names_its_file(tmp_path):
    src = (Path(__file__).parents[1] / "src/relforge/generate/prompts/inpars-question.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.replace("Question:", "Question: {{ document | nosuchfilter }}"), encoding="utf-8")
    with pytest.raises(DataError, match=r"prompt 'user' does not render") as e:
        QueryPrompt.load(bad)
    assert "bad.yaml" in str(e.value)
