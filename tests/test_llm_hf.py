"""HF backend on the tiny random Llama (real tokenizer + chat template): shapes, probabilities, padding,
prefix sharing, LoRA adapters, chat-template errors, spec parsing and the `relforge llm try` command."""

from __future__ import annotations

import math

import pytest
import torch

from relforge.errors import RelforgeError, UsageError
from relforge.llm import GenParams, load_llm
from relforge.llm.hf import HFBackend

CHOICES = ["0", "1", "2", "3"]


def chat(text: str, system: str | None = None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


# prompts of clearly different lengths, so batches need padding
CHATS = [
    chat(t) for t in ["hi", "what is asthma and how is it treated in children " * 3, "x y", "tell me a story"]
]


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)


@pytest.fixture(scope="module")
def loud(tiny_llm_dir):
    """The tiny model with weights scaled up: its greedy outputs differ from prompt to prompt, so a padding
    bug would show in generated tokens (the plain random init repeats one token everywhere)."""
    b = HFBackend.load(tiny_llm_dir, batch_size=4, progress=False)
    with torch.no_grad():
        for p in b.model.parameters():
            p.mul_(4)
    return b


def test_generate_shapes_and_finish_reasons(tiny_llm_dir, tiny):
    out = tiny.generate(CHATS, GenParams(max_new_tokens=5))
    assert len(out) == len(CHATS)
    for c, ch in zip(out, CHATS, strict=False):
        assert c.prompt_tokens == len(tiny.encode_chat(ch))
        assert c.completion_tokens == 5 and c.finish_reason == "length" and not c.cached
    # a model whose first greedy token is an EOS token stops with finish_reason "stop" and empty text
    first = tiny.next_token_logprobs(CHATS[:1], 1)[0][0][1]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, first]
    stopper = HFBackend.from_model(model, tiny.tokenizer, progress=False)
    c = stopper.generate(CHATS[:1], GenParams(max_new_tokens=5))[0]
    assert (c.text, c.completion_tokens, c.finish_reason) == ("", 1, "stop")
    # stop strings cut the text and count as "stop"
    c = tiny.generate(CHATS[:1], GenParams(max_new_tokens=5, stop=("\n",)))[0]
    assert "\n" not in c.text and c.finish_reason == "stop"
    assert tiny.stats.misses >= 5 and tiny.stats.completion_tokens > 0


def test_left_padded_batches_equal_single_calls(loud):
    batched = loud.generate(CHATS, GenParams(max_new_tokens=6))
    single = [loud.generate([c], GenParams(max_new_tokens=6))[0] for c in CHATS]
    assert [b.text for b in batched] == [s.text for s in single]
    assert len({b.text for b in batched}) > 1  # the check has teeth: outputs differ across prompts
    # sampling is seeded
    a = loud.generate(CHATS[:2], GenParams(max_new_tokens=6, temperature=1.0, seed=3))
    b = loud.generate(CHATS[:2], GenParams(max_new_tokens=6, temperature=1.0, seed=3))
    assert [x.text for x in a] == [x.text for x in b]


@pytest.mark.parametrize("choices", [CHOICES, ["yes", "no way", "maybe not at all"]])
def test_score_choices_sums_to_one_and_batching_is_exact(loud, choices):
    batched = loud.score_choices(CHATS, choices)
    single = [loud.score_choices([c], choices)[0] for c in CHATS]
    for b, s in zip(batched, single, strict=False):
        assert list(b) == choices
        assert math.isclose(sum(b.values()), 1.0, abs_tol=1e-9)
        assert all(abs(b[k] - s[k]) < 1e-5 for k in choices)
    assert len({round(b[choices[0]], 6) for b in batched}) > 1


def test_multi_token_choice_is_sum_of_token_logprobs(tiny):
    """p("no way") must equal p(no) * p(way | no) from plain forward passes."""
    prompt = tiny.encode_chat(CHATS[1])
    choice_ids = [tiny.tokenizer(c, add_special_tokens=False)["input_ids"] for c in ["yes", "no way"]]
    assert len(choice_ids[1]) == 2
    with torch.no_grad():
        totals = []
        for ids in choice_ids:
            logits = tiny.model(torch.tensor([prompt + ids])).logits[0].log_softmax(-1)
            totals.append(sum(logits[len(prompt) - 1 + j, t].item() for j, t in enumerate(ids)))
    expected = torch.softmax(torch.tensor(totals, dtype=torch.float64), 0).tolist()
    got = tiny.score_choices([CHATS[1]], ["yes", "no way"])[0]
    assert got["yes"] == pytest.approx(expected[0], abs=1e-5)


def test_prefix_sharing_gives_same_scores(loud):
    system = "You judge whether a document answers a medical question. " * 6
    chats = [chat(t, system) for t in ["q one", "a much longer second question " * 4, "third"]]
    loud.prefix_sharing = False
    plain = loud.score_choices(chats, CHOICES)
    plain_multi = loud.score_choices(chats, ["yes", "no way"])
    try:
        loud.prefix_sharing = True
        shared = loud.score_choices(chats, CHOICES)
        assert loud.stats.extra["shared_prefix_tokens"] >= 60
        shared_multi = loud.score_choices(chats, ["yes", "no way"])
    finally:
        loud.prefix_sharing = False
    for a, b in zip(plain + plain_multi, shared + shared_multi, strict=False):
        assert all(abs(a[k] - b[k]) < 1e-5 for k in a)


def test_prefix_cache_follows_weight_updates(tiny_llm_dir, tiny):
    """A model being fine-tuned (from_model) must not be scored with a stale shared-prefix KV cache."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    b = HFBackend.from_model(model, tiny.tokenizer, prefix_sharing=True, progress=False)
    chats = [chat(t, "Judge the relevance of the document. " * 8) for t in ["one", "two two"]]
    before = b.score_choices(chats, CHOICES)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    after = b.score_choices(chats, CHOICES)
    b.prefix_sharing = False
    ref = b.score_choices(chats, CHOICES)
    assert all(abs(a[k] - r[k]) < 1e-5 for a, r in zip(after, ref, strict=True) for k in CHOICES)
    assert max(abs(a[k] - x[k]) for a, x in zip(after, before, strict=True) for k in CHOICES) > 1e-4


def test_lora_adapter_changes_scores(tiny_llm_dir, tmp_path, tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(tmp_path / "adapter")
    with_adapter = load_llm(
        f"hf:{tiny_llm_dir}", adapter=str(tmp_path / "adapter"), cache=None, progress=False
    )
    assert "+lora:" in with_adapter.name and with_adapter.cache_id != tiny.cache_id
    a = with_adapter.score_choices(CHATS, CHOICES)
    b = tiny.score_choices(CHATS, CHOICES)
    assert max(abs(x[k] - y[k]) for x, y in zip(a, b, strict=False) for k in CHOICES) > 1e-4
    with pytest.raises(RelforgeError, match="adapter_config.json"):
        load_llm(f"hf:{tiny_llm_dir}", adapter=str(tmp_path), cache=None)


def test_from_model_restores_training_mode(tiny_llm_dir, tiny):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model.train()
    b = HFBackend.from_model(model, tiny.tokenizer, name="epoch-1", progress=False)
    probs = b.score_choices(CHATS[:2], CHOICES)
    assert model.training and b.name == "epoch-1"
    ref = tiny.score_choices(CHATS[:2], CHOICES)
    assert all(abs(p[k] - r[k]) < 1e-5 for p, r in zip(probs, ref, strict=False) for k in CHOICES)


def test_missing_chat_template_names_plain_option(tiny):
    tok = tiny.tokenizer
    saved, tok.chat_template = tok.chat_template, None
    try:
        b = HFBackend.from_model(tiny.model, tok, progress=False)
        with pytest.raises(RelforgeError, match='chat_template="plain"'):
            b.generate([chat("hi")])
        plain = HFBackend.from_model(tiny.model, tok, chat_template="plain", progress=False)
        assert plain.format_chat(chat("hi", "sys")) == "System: sys\n\nUser: hi\n\nAssistant:\n"
        assert math.isclose(sum(plain.score_choices([chat("hi")], CHOICES)[0].values()), 1.0)
    finally:
        tok.chat_template = saved


def test_spec_errors():
    with pytest.raises(UsageError) as e:
        load_llm("ollama:llama3")
    assert all(s in str(e.value) for s in ("hf:", "openai:", "llamacpp:"))
    with pytest.raises(UsageError, match="openai:<base_url>#<model>"):
        load_llm("openai:http://127.0.0.1:1/v1", cache=None)
    with pytest.raises(RelforgeError, match="model folder not found"):
        load_llm("hf:/nonexistent/model-dir", cache=None)
    with pytest.raises(UsageError, match="choices"):
        load_llm("openai:http://127.0.0.1:1/v1#m", cache=None).score_choices([chat("x")], ["a", "a"])


def test_llamacpp_missing_names_the_extra():
    try:
        import llama_cpp  # noqa: F401

        pytest.skip("llama-cpp-python is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"pip install 'relforge\[llamacpp\]'"):
        load_llm("llamacpp:model.gguf", cache=None)


def test_cli_try(tiny_llm_dir, capsys, tmp_path, monkeypatch):
    from relforge.cli import main

    monkeypatch.setenv("RELFORGE_CACHE", str(tmp_path / "c.sqlite"))
    args = ["llm", "try", "--llm", f"hf:{tiny_llm_dir}", "--max-new-tokens", "4", "Write one query."]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "prompt_tokens=" in err and "completion_tokens=4" in err and "hits=0 misses=1" in err
    assert main(args) == 0
    assert "hits=1 misses=0" in capsys.readouterr().err
    assert main([*args[:-1], "--no-cache", "Write one query."]) == 0
    assert "off (--no-cache)" in capsys.readouterr().err
    assert main(["llm", "try", "--llm", "nope:x", "hi"]) == 2
