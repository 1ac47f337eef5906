"""Judge precision: fp32 vs bf16 vs int8 throughput as ratios in one run, quality beside it.

Same model (the packaged SmolLM2-135M-Instruct with the shipped LoRA adapter, ``--adapter auto``), same
pairs (the first N human-judged pairs of the bundled liveqa-med sample, whole queries, in file order), same
prompt (relevance-0to3, documents cut to the adapter's budget), same batching (by query, batch 8, shared
prompt prefix on), as ``relforge judge --adapter auto`` runs them. Variants:

- fp32: today's numbers (the reference);
- bf16-weights: bfloat16 weights (``precision: bf16`` with ``autocast=False``; what a GPU gets);
- bf16-autocast: fp32 weights under ``torch.autocast("cpu", bfloat16)`` (``precision: bf16`` on CPU);
- int8: dynamic int8 quantisation of the merged Linear layers (``precision: int8``, lm_head kept float).

Quality: pair-level Kendall tau_b of the expected grade vs the human grades (and its change vs fp32),
Pearson of the expected grades vs fp32's, max |p - p_fp32| and the share of pairs with the same argmax grade.
Target: >= 2x fp32 pairs/s with tau_b within 0.01 of fp32.

Run:  HF_HUB_OFFLINE=1 python benchmarks/precision_judge.py [--pairs 160] [--repeats 1]
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


def load_pairs(n: int):
    from relforge.data import read_corpus, read_qrels, read_queries

    root = Path(str(resources.files("relforge.data") / "samples" / "liveqa-med"))
    qrels = read_qrels(root / "qrels" / "test.tsv")
    pairs = [(q, d) for q in qrels for d in qrels[q]][:n]
    human = [qrels[q][d] for q, d in pairs]
    return read_corpus(root / "corpus.jsonl"), read_queries(root / "queries.jsonl"), pairs, human


def load_variant(kw: dict, adapter: Path, batch_size: int):
    from relforge.llm.hf import HFBackend

    llm = HFBackend.load(
        "smollm2", adapter=str(adapter), batch_size=batch_size, prefix_sharing=True, progress=False, **kw
    )
    assert llm.precision.resolved == kw["precision"], llm.describe()
    return llm


def run_interleaved(llms: dict, data, budget: int, batch_size: int, repeats: int):
    """Judge query by query, every variant on the same query in turn (rotating who goes first), so a
    machine whose load changes during the run slows every variant alike. Returns per variant
    ``(wall seconds, CPU seconds, judgments)``."""
    from relforge.judge import JudgeTemplate, judge_pairs

    corpus, queries, pairs, _ = data
    template = JudgeTemplate.load()
    for llm in llms.values():  # warm-up: first calls allocate
        judge_pairs(llm, template, queries, corpus, pairs[:8], progress=False, max_doc_tokens=budget)
    by_q: dict[str, list] = {}
    for p in pairs:
        by_q.setdefault(p[0], []).append(p)
    wall = dict.fromkeys(llms, 0.0)
    cpu = dict.fromkeys(llms, 0.0)
    out: dict[str, dict] = {name: {} for name in llms}
    names = list(llms)
    for r in range(repeats):
        for k, group in enumerate(by_q.values()):
            shift = (k + r) % len(names)
            for name in names[shift:] + names[:shift]:
                t0, c0 = time.perf_counter(), time.process_time()
                js = judge_pairs(
                    llms[name],
                    template,
                    queries,
                    corpus,
                    group,
                    progress=False,
                    max_doc_tokens=budget,
                    batch_size=batch_size,
                )
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
                out[name].update({(j.qid, j.docid): j for j in js})
        print(f"  round {r + 1}/{repeats} done", flush=True)
    return {n: (wall[n] / repeats, cpu[n] / repeats, [out[n][p] for p in pairs]) for n in names}


def quality(js, ref, human, qids) -> dict:
    import numpy as np
    from scipy.stats import kendalltau, pearsonr

    e = np.array([j.expected for j in js])
    r = np.array([j.expected for j in ref])
    return {
        "tau_b": kendalltau(e, human, variant="b").statistic,
        "pearson_vs_fp32": pearsonr(e, r).statistic if np.std(e) > 0 and np.std(r) > 0 else float("nan"),
        "max_dp": max(abs(a.probs[k] - b.probs[k]) for a, b in zip(js, ref, strict=True) for k in a.probs),
        "same_grade": float(np.mean([a.grade == b.grade for a, b in zip(js, ref, strict=True)])),
        "queries": len(set(qids)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all pairs (times are averaged)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()

    import torch

    from relforge.judge.config import JudgeConfig
    from relforge.judge.run import resolve_adapter
    from relforge.precision import cpu_has_bf16

    adapter, cfg = resolve_adapter("auto", JudgeConfig())
    data = load_pairs(args.pairs)
    _, _, pairs, human = data
    print(
        f"{len(pairs)} human-judged pairs of {len({q for q, _ in pairs})} liveqa-med queries; adapter {adapter.name}; "
        f"max_doc_tokens {cfg.max_doc_tokens}; batch {args.batch_size}; torch threads {torch.get_num_threads()}; "
        f"CPU bf16 (AVX-512 BF16/AMX): {cpu_has_bf16()}"
    )
    llms = {name: load_variant(VARIANTS[name], adapter, args.batch_size) for name in args.variants.split(",")}
    results = run_interleaved(llms, data, cfg.max_doc_tokens, args.batch_size, args.repeats)
    ref_t, ref_c, ref = results["fp32"]
    qids = [q for q, _ in pairs]
    print(
        f"\n{'precision':<14} {'wall s':>7} {'pairs/s':>8} {'vs fp32':>8} {'CPU s':>7} {'vs fp32':>8} "
        f"{'tau_b':>7} {'d tau_b':>8} {'r(E) vs fp32':>12} {'max|dp|':>8} {'same grade':>10}"
    )
    base_q = quality(ref, ref, human, qids)
    for name, (sec, cs, js) in results.items():
        q = quality(js, ref, human, qids)
        print(
            f"{name:<14} {sec:7.1f} {len(pairs) / sec:8.2f} {ref_t / sec:7.2f}x {cs:7.1f} {ref_c / cs:7.2f}x "
            f"{q['tau_b']:7.3f} {q['tau_b'] - base_q['tau_b']:+8.3f} {q['pearson_vs_fp32']:12.4f} "
            f"{q['max_dp']:8.4f} {q['same_grade']:9.1%}"
        )
    for name, (sec, _, js) in results.items():
        if name == "fp32":
            continue
        q = quality(js, ref, human, qids)
        ok = ref_t / sec >= 2 and abs(q["tau_b"] - base_q["tau_b"]) <= 0.01
        print(
            f"RESULT {name}: {ref_t / sec:.2f}x fp32 pairs/s, tau_b {q['tau_b'] - base_q['tau_b']:+.3f} "
            f"(target >= 2x, |d tau_b| <= 0.01): {'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
