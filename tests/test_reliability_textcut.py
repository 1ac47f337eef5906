"""Issue 15, huge documents: a 50 MB document is cut by characters before it is tokenised, wherever
relforge tokenises document text (judge prompt, generate prompt, rerank). Asserts on lengths."""

from __future__ import annotations

from relforge.textcut import CHARS_PER_TOKEN

HUGE = "word " * 10_000_000  # 50 MB


class CountingTokenizer:
    """Wraps a real tokenizer and records the longest text it was asked to encode."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def encode(self, text, **kw):
        self.longest = max(self.longest, len(text))
        return self.tok.encode(text, **kw)

    def decode(self, ids, **kw):
        return self.tok.decode(ids, **kw)

    def __call__(self, a, b, **kw):
        self.longest = max(self.longest, *map(len, a), *map(len, b))
        return self.tok(a, b, **kw)


def test_judge_prompt_cuts_characters_first(tiny_llm_dir):
    from transformers import AutoTokenizer

    from relforge.judge.prompt import JudgeTemplate

    t = JudgeTemplate.load("relevance-0to3")
    tok = CountingTokenizer(AutoTokenizer.from_pretrained(tiny_llm_dir))
    out = t.truncate(HUGE, tok, 64)
    assert tok.longest <= 64 * CHARS_PER_TOKEN
    assert len(tok.tok.encode(out, add_special_tokens=False)) <= 64 + 8 and out.endswith(t.truncation_marker)
    assert t.truncate("a short document", tok, 64) == "a short document"
    words = t.truncate(HUGE, None, 64)  # no tokenizer: words
    assert len(words.split()) <= 64


def test_generate_prompt_cuts_characters_first():
    from relforge.generate.prompts import truncate_words

    out = truncate_words(HUGE, 100)
    assert len(out.split()) == 101 and out.endswith("...")  # 100 words + the marker
    assert truncate_words("one two three", 100) == "one two three"


def test_rerank_tokenisation_cuts_characters_first():
    from transformers import AutoTokenizer

    from relforge.models import resolve_model
    from relforge.train.rerank import encode_sorted

    tok = CountingTokenizer(AutoTokenizer.from_pretrained(resolve_model("minilm")))
    enc, order = encode_sorted(tok, [("what is a word", HUGE), ("q", "short doc")], 48)
    assert tok.longest <= 48 * CHARS_PER_TOKEN
    assert [len(e["input_ids"]) for e in enc][0] == 48 and list(order) == [0, 1]
