"""Generation precision: fp32 vs bf16 vs int8 throughput as ratios in one run, quality beside it.

Same model (the packaged SmolLM2-135M-Instruct, as `relforge generate --llm smollm2` loads it), same chats
(the built-in InPars question prompt with its few-shot turns over the first N documents of the bundled
liveqa-med corpus), greedy decoding of --new-tokens tokens, batch 8. All variants are loaded at once and run
batch by batch in rotation, so a machine whose load changes slows them alike.

Quality vs fp32 (greedy outputs should stay the same): share of identical completions, mean length of the
common token prefix relative to the fp32 completion, and share of completions that still end in a question
mark (what the query filters look at).

Run:  HF_HUB_OFFLINE=1 python benchmarks/precision_generate.py [--docs 24] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = {
    "fp32": {"precision": "fp32"},
    "bf16-weights": {"precision": "bf16", "autocast": False},
    "bf16-autocast": {"precision": "bf16", "autocast": True},
    "int8": {"precision": "int8"},
}


def chats(n: int):
    from relforge.data import read_corpus
    from relforge.generate.prompts import QueryPrompt

    corpus = read_corpus(
        Path(str(resources.files("relforge.data") / "samples" / "liveqa-med")) / "corpus.jsonl"
    )
    prompt = QueryPrompt.load(style="question")
    return [prompt.build_chat(d) for d in list(corpus.values())[:n]]


def run(llms: dict, chats: list, new_tokens: int, batch: int) -> dict:
    from relforge.llm.base import GenParams

    params = GenParams(max_new_tokens=new_tokens)
    for llm in llms.values():
        llm.generate(chats[:2], GenParams(max_new_tokens=2))  # warm-up
    names = list(llms)
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    out: dict[str, list] = {n: [] for n in names}
    for k, start in enumerate(range(0, len(chats), batch)):
        part = chats[start : start + batch]
        shift = k % len(names)
        for name in names[shift:] + names[:shift]:
            t0, c0 = time.perf_counter(), time.process_time()
            out[name].append(llms[name].generate(part, params))
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    return {n: (wall[n], cpu[n], [c for batch in out[n] for c in batch]) for n in names}


def quality(got, ref, tok) -> dict:
    same = sum(g.text == r.text for g, r in zip(got, ref, strict=True))
    prefix = []
    for g, r in zip(got, ref, strict=True):
        a, b = tok(g.text)["input_ids"], tok(r.text)["input_ids"]
        k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix.append(k / max(1, len(b)))
    q = sum(g.text.strip().endswith("?") for g in got)
    return {"same": same / len(ref), "prefix": sum(prefix) / len(prefix), "question": q / len(ref)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()

    import torch

    from relforge.llm.hf import HFBackend
    from relforge.precision import cpu_has_bf16

    llms = {
        n: HFBackend.load("smollm2", batch_size=args.batch_size, progress=False, **VARIANTS[n])
        for n in args.variants.split(",")
    }
    cs = chats(args.docs)
    print(
        f"{len(cs)} generate chats (inpars-question, liveqa-med docs), greedy {args.new_tokens} new tokens, "
        f"batch {args.batch_size}; torch threads {torch.get_num_threads()}; CPU bf16: {cpu_has_bf16()}"
    )
    res = run(llms, cs, args.new_tokens, args.batch_size)
    ref_w, ref_c, ref = res["fp32"]
    tok = llms["fp32"].tokenizer
    print(
        f"\n{'precision':<14} {'wall s':>7} {'tok/s':>7} {'vs fp32':>8} {'CPU s':>7} {'vs fp32':>8} {'same':>6} {'prefix':>7} {'ends ?':>7}"
    )
    for name, (w, c, out) in res.items():
        toks = sum(x.completion_tokens for x in out)
        q = quality(out, ref, tok)
        print(
            f"{name:<14} {w:7.1f} {toks / w:7.1f} {ref_w / w:7.2f}x {c:7.1f} {ref_c / c:7.2f}x "
            f"{q['same']:6.0%} {q['prefix']:7.0%} {q['question']:7.0%}"
        )


if __name__ == "__main__":
    main()
