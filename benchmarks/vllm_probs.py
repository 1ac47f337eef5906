"""Grade probabilities through a REAL vLLM server vs the local backend, on the same pairs, per scoring method.

Same model (the packaged SmolLM2-135M-Instruct; vLLM serves its converted folder in bf16), same chats (the
relevance-0to3 judge template over the first N human-judged liveqa-med pairs, documents cut to
--max-doc-tokens), no adapter (the base model ranks grade tokens low, the hard case for top-k). Rows:

- local bf16 vs local fp32: the yardstick of "bf16 tolerance";
- vLLM token_logprobs (``logprob_token_ids``, exact), prompt_logprobs (continuation, exact), top_logprobs
  (top-20, approximate: what relforge did before), and which one ``auto`` picks.

Columns: pairs/s, max and mean |p - p_local_fp32|, Pearson of the expected grade vs local fp32, pairs with
a grade at exactly 0 (impossible for an exact method), pairs unscorable.

Run (starts vLLM, 4-5 min on 2 cores, and stops it):
    HF_HUB_OFFLINE=1 python benchmarks/vllm_probs.py [--pairs 69] [--url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def judge_chats(n: int, max_doc_tokens: int, tokenizer):
    from importlib import resources
    from pathlib import Path

    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.judge import JudgeTemplate

    root = Path(str(resources.files("relforge.data") / "samples" / "liveqa-med"))
    qrels = read_qrels(root / "qrels" / "test.tsv")
    corpus, queries = read_corpus(root / "corpus.jsonl"), read_queries(root / "queries.jsonl")
    pairs = [(q, d) for q in qrels for d in qrels[q]][:n]
    t = JudgeTemplate.load()
    chats = [
        t.build_chat(queries[q], corpus[d], tokenizer=tokenizer, max_doc_tokens=max_doc_tokens)
        for q, d in pairs
    ]
    return chats, t.labels


def compare(got: list[dict], ref: list[dict], labels: list[str]) -> dict:
    import numpy as np

    ok = [(g, r) for g, r in zip(got, ref, strict=True) if g]
    dp = [abs(g.get(k, 0.0) - r[k]) for g, r in ok for k in labels]
    e = np.array([sum(int(k) * g.get(k, 0.0) for k in labels) for g, _ in ok])
    er = np.array([sum(int(k) * r[k] for k in labels) for _, r in ok])
    pearson = (
        float(np.corrcoef(e, er)[0, 1]) if len(ok) > 2 and e.std() > 0 and er.std() > 0 else float("nan")
    )
    return {
        "max_dp": max(dp) if dp else float("nan"),
        "mean_dp": float(np.mean(dp)) if dp else float("nan"),
        "pearson": pearson,
        "zero": sum(1 for g in got if g and min(g.get(k, 0.0) for k in labels) == 0.0),
        "unscorable": sum(1 for g in got if not g),
    }


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(url: str, chats, labels, local: dict) -> list[tuple]:
    from relforge.llm.openai_compat import OpenAIBackend

    rows = []
    ref = local["fp32"][0]
    rows.append(("local bf16 (yardstick)", local["bf16"][1], compare(local["bf16"][0], ref, labels), "-"))
    auto = OpenAIBackend(url, "smollm2", progress=False)
    picked = auto.resolve_score_method(labels)
    for method in ("token_logprobs", "prompt_logprobs", "top_logprobs"):
        b = OpenAIBackend(url, "smollm2", score_method=method, concurrency=4, progress=False)
        b.score_choices(chats[:2], labels)  # warm-up
        got, sec = timed(lambda b=b: b.score_choices(chats, labels))
        rows.append((f"vLLM {method}", sec, compare(got, ref, labels), "yes" if method == picked else ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=69)
    ap.add_argument("--max-doc-tokens", type=int, default=96)
    ap.add_argument(
        "--url", default=None, help="a running vLLM server serving 'smollm2' (else one is started)"
    )
    ap.add_argument("--log", default="vllm-server.log")
    args = ap.parse_args()

    from relforge.llm.hf import HFBackend
    from relforge.llm.vllm_server import smollm2_folder, vllm_server

    local = {}
    for prec in ("fp32", "bf16"):
        b = HFBackend.load("smollm2", precision=prec, batch_size=8, prefix_sharing=True, progress=False)
        chats, labels = judge_chats(args.pairs, args.max_doc_tokens, b.tokenizer)
        local[prec] = timed(lambda b=b, c=chats, lab=labels: b.score_choices(c, lab))
        del b
    ctx = contextlib.nullcontext(args.url) if args.url else vllm_server(smollm2_folder(), log_path=args.log)
    with ctx as url:
        rows = run(url, chats, labels, local)
    n = len(chats)
    print(f"{n} judge chats (liveqa-med, max_doc_tokens {args.max_doc_tokens}), grades {labels}; local fp32 "
          f"{n / local['fp32'][1]:.2f} pairs/s (machine shared, numbers under load)")  # fmt: skip
    print(
        f"\n{'vs local fp32':<26} {'pairs/s':>8} {'max|dp|':>8} {'mean|dp|':>9} {'r(E)':>7} {'p=0':>5} {'unsc.':>6} {'auto':>5}"
    )
    for name, sec, q, picked in rows:
        print(
            f"{name:<26} {n / sec:8.2f} {q['max_dp']:8.4f} {q['mean_dp']:9.4f} {q['pearson']:7.4f} "
            f"{q['zero']:5d} {q['unscorable']:6d} {picked:>5}"
        )
    best = next(q for name, _, q, p in rows if p == "yes")
    print(
        f"RESULT auto over vLLM: r(E) {best['pearson']:.4f}, max|dp| {best['max_dp']:.4f}, grades at 0: {best['zero']}"
    )


if __name__ == "__main__":
    main()
