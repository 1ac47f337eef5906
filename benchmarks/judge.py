"""Judge throughput: relforge's probs path vs the naive generate-and-parse loop, in one run.

Same model (the packaged SmolLM2-135M-Instruct), same pairs (the first N judged pairs of
liveqa-med-judged, i.e. a few whole queries), same prompt (the relevance-0to3 template, documents cut
to --max-doc-tokens model tokens). Methods:

- naive: one pair at a time, ``model.generate`` up to 10 new tokens (greedy), then parse the grade:
  how common judge tools run local models.
- relforge probs: ``judge_pairs(mode="probs")`` — one prefill per pair, batched by query, the grade
  distribution read from the next-token logits; with and without shared-prefix KV reuse.
- relforge generate (batched): ``judge_pairs(mode="generate")``, 10 new tokens, batched by query.

Run:  HF_HUB_OFFLINE=1 python benchmarks/judge.py [--pairs 40] [--max-doc-tokens 256] [--batch-size 8]
Prints pairs/s per method and the ratio to the naive baseline (target for probs: >= 3x).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "liveqa-med-judged"


def naive(llm, template, queries, corpus, pairs, max_doc_tokens: int) -> tuple[float, list[int | None]]:
    """One pair at a time: chat template -> model.generate(10 new tokens) -> parse."""
    import torch

    from relforge.judge.parse import parse_grade

    tok, model = llm.tokenizer, llm.model
    grades = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for q, d in pairs:
            chat = template.build_chat(queries[q], corpus[d], tokenizer=tok, max_doc_tokens=max_doc_tokens)
            text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.eos_token_id)
            reply = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            grades.append(parse_grade(reply, template.labels, template.values))
    return time.perf_counter() - t0, grades


class _Results(dict):
    """Prints each method's time as soon as it is measured (long runs on a busy machine)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def __setitem__(self, name, value):
        super().__setitem__(name, value)
        print(f"  measured {name}: {value[0]:.1f} s, {self.n / value[0]:.2f} pairs/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--max-doc-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    import torch

    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.judge import JudgeTemplate, judge_pairs
    from relforge.llm.hf import HFBackend

    corpus = read_corpus(Path(args.data) / "corpus.jsonl")
    queries = read_queries(Path(args.data) / "queries.jsonl")
    qrels = read_qrels(Path(args.data) / "qrels.tsv")
    pairs = [(q, d) for q in qrels for d in qrels[q]][: args.pairs]
    template = JudgeTemplate.load()
    t0 = time.perf_counter()
    llm = HFBackend.load("smollm2", batch_size=args.batch_size, progress=False)
    print(
        f"model {llm.name} loaded in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}; "
        f"{len(pairs)} pairs of {len({q for q, _ in pairs})} queries; max_doc_tokens {args.max_doc_tokens}; "
        f"batch size {args.batch_size}"
    )
    # warm-up (first calls allocate): one short forward + one short generate
    judge_pairs(llm, template, queries, corpus, pairs[:2], progress=False, max_doc_tokens=32)
    naive(llm, template, queries, corpus, pairs[:1], 32)

    results: dict[str, tuple[float, list]] = _Results(len(pairs))
    results["naive (1 pair/call, generate 10, parse)"] = naive(
        llm, template, queries, corpus, pairs, args.max_doc_tokens
    )
    for share in (False, True):
        llm.prefix_sharing = share
        t0 = time.perf_counter()
        js = judge_pairs(
            llm,
            template,
            queries,
            corpus,
            pairs,
            progress=False,
            max_doc_tokens=args.max_doc_tokens,
            batch_size=args.batch_size,
        )
        results[f"relforge probs, prefix reuse {'on' if share else 'off'}"] = (time.perf_counter() - t0, js)
    llm.prefix_sharing = False
    t0 = time.perf_counter()
    js = judge_pairs(
        llm,
        template,
        queries,
        corpus,
        pairs,
        mode="generate",
        progress=False,
        max_doc_tokens=args.max_doc_tokens,
        batch_size=args.batch_size,
        max_new_tokens=10,
    )
    results["relforge generate (batched, 10 tokens)"] = (time.perf_counter() - t0, js)

    base = len(pairs) / results["naive (1 pair/call, generate 10, parse)"][0]
    print(f"\n{'method':<44} {'seconds':>8} {'pairs/s':>8} {'vs naive':>9} {'unparsed':>9}")
    for name, (sec, out) in results.items():
        unparsed = sum(1 for x in out if (x is None if not hasattr(x, "grade") else x.grade is None))
        rate = len(pairs) / sec
        print(f"{name:<44} {sec:8.2f} {rate:8.2f} {rate / base:8.2f}x {unparsed:9d}")
    off = results["relforge probs, prefix reuse off"][1]
    on = results["relforge probs, prefix reuse on"][1]
    diff = max(abs(a.probs[k] - b.probs[k]) for a, b in zip(off, on, strict=True) for k in a.probs)
    same = sum(a.grade == b.grade for a, b in zip(off, on, strict=True))
    print(
        f"\nprefix reuse on vs off: max |p diff| = {diff:.2e}; same argmax grade on {same}/{len(pairs)} pairs"
    )
    probs_best = max(len(pairs) / results[k][0] for k in results if k.startswith("relforge probs"))
    print(f"RESULT relforge probs vs naive: {probs_best / base:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
