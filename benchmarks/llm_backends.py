"""LLM backend speed on this machine: SmolLM2-135M-Instruct (the packaged GGUF).

Prints, measured in one run (wall seconds, and CPU seconds of this process since other jobs may share
the cores):
  1. load time: GGUF dequantisation (first load) vs the converted HF folder cache (later loads);
  2. generate tokens/s, HF fp32, batch 1 and batch 8 (greedy);
  3. score_choices pairs/s on ~400-token judge prompts, batch 8, without and with prefix sharing;
  4. llama.cpp generate tokens/s when llama-cpp-python is installed (else says why it is skipped).

Run:  HF_HUB_OFFLINE=1 python benchmarks/llm_backends.py [--new-tokens 64] [--pairs 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "liveqa-med-judged" / "corpus.jsonl"
SYSTEM = (
    "You are a search quality rater. You judge how well a document answers a search query, carefully and "
    "consistently, following the grading guidelines. Read the query and the document. Decide how well the "
    "document answers the information need behind the query. Judge only the document shown.\n"
    "Grades:\n0 = irrelevant: the document has nothing to do with the query.\n"
    "1 = related: the document is on the topic of the query but does not answer it.\n"
    "2 = partly answers: the document answers the query partly, or the answer is buried in unrelated material.\n"
    "3 = perfectly relevant: the document is dedicated to the query and contains the exact answer.\n"
    "Answer with the grade only: a single digit from 0, 1, 2, 3."
)


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:6.1f} s wall, {self.cpu:6.1f} s CPU"


def docs(n: int, tokenizer, target_tokens: int) -> list[str]:
    texts = []
    if CORPUS.exists():
        with open(CORPUS) as f:
            for line in f:
                d = json.loads(line)
                texts.append(f"{d.get('title', '')}\n{d['text']}")
                if len(texts) >= 4 * n:
                    break
    if not texts:
        texts = [f"Asthma is a chronic disease of the airways, document {i}. " * 20 for i in range(n)]
    out = []
    for i in range(n):
        t = texts[i % len(texts)]
        while len(tokenizer(t)["input_ids"]) < target_tokens:
            t += "\n" + texts[(i + len(t)) % len(texts)]
        out.append(tokenizer.decode(tokenizer(t)["input_ids"][:target_tokens]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=32, help="judge prompts scored per mode")
    ap.add_argument(
        "--skip-first-load", action="store_true", help="skip the (slow) GGUF dequantisation timing"
    )
    args = ap.parse_args()

    import torch

    from relforge.llm import GenParams
    from relforge.llm.hf import HFBackend, load_gguf
    from relforge.models import resolve_model

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    gguf = resolve_model("smollm2")
    print(f"model: {gguf}")

    # 1. load times
    if not args.skip_first_load:
        home = tempfile.mkdtemp(prefix="relforge-bench-home-")
        old = os.environ.get("RELFORGE_HOME")
        os.environ["RELFORGE_HOME"] = home
        try:
            with Timer() as t_first:
                load_gguf(gguf, convert=True)  # dequantise + save the converted folder (first run)
            with Timer() as t_cached:
                load_gguf(gguf, convert=True)  # later runs
        finally:
            shutil.rmtree(home, ignore_errors=True)
            if old is None:
                os.environ.pop("RELFORGE_HOME")
            else:
                os.environ["RELFORGE_HOME"] = old
        print(f"load, first (GGUF dequantise + save HF folder): {t_first}")
        print(f"load, converted HF folder cache:                {t_cached}")
        print(f"  -> later loads are {t_first.wall / t_cached.wall:.1f}x faster (wall)")

    llm = HFBackend.load("smollm2", batch_size=8, progress=False)
    print(f"backend: {llm.name}, dtype {llm.model.dtype}, device {llm.device}")

    # 2. generate tokens/s
    prompts = [
        [{"role": "user", "content": f"Write one search query about {topic}."}]
        for topic in ["asthma", "diabetes", "migraine", "anemia", "gout", "eczema", "glaucoma", "lupus"]
    ]
    params = GenParams(max_new_tokens=args.new_tokens)
    llm.generate(prompts[:1], GenParams(max_new_tokens=4))  # warm-up
    with Timer() as t:
        outs = [llm.generate([p], params)[0] for p in prompts[:2]]
    n = sum(o.completion_tokens for o in outs)
    print(f"HF fp32 generate, batch 1: {n / t.wall:6.1f} tokens/s ({n} tokens; {t})")
    with Timer() as t:
        outs = llm.generate(prompts, params)
    n = sum(o.completion_tokens for o in outs)
    print(f"HF fp32 generate, batch 8: {n / t.wall:6.1f} tokens/s ({n} tokens; {t})")

    # 3. score_choices on ~400-token judge prompts
    texts = docs(args.pairs, llm.tokenizer, 300)
    chats = [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Query: what causes asthma? ({i})\n\nDocument: {d}"},
        ]
        for i, d in enumerate(texts)
    ]
    lengths = [len(llm.encode_chat(c)) for c in chats]
    print(f"judge prompts: {len(chats)}, {sum(lengths) / len(lengths):.0f} tokens on average")
    llm.score_choices(chats[:2], ["0", "1", "2", "3"])  # warm-up
    rates = {}
    for sharing in (False, True):
        llm.prefix_sharing = sharing
        llm._prefix_memo = None
        with Timer() as t:
            probs = llm.score_choices(chats, ["0", "1", "2", "3"])
        rates[sharing] = len(chats) / t.wall
        shared = llm.stats.extra.get("shared_prefix_tokens", 0)
        print(
            f"score_choices batch 8, prefix_sharing={sharing!s:5}: {rates[sharing]:5.2f} pairs/s "
            f"(shared prefix {shared} tokens; {t})"
        )
        if sharing:
            print(f"  -> prefix sharing speed-up: {rates[True] / rates[False]:.2f}x")
        assert all(abs(sum(p.values()) - 1) < 1e-6 for p in probs)

    # 4. llama.cpp
    try:
        from relforge.llm.llamacpp import LlamaCppBackend

        cpp = LlamaCppBackend(gguf, progress=False)
    except ImportError as e:
        print(f"llama.cpp: skipped ({str(e).split(':')[0]}: {e})")
        return
    cpp.generate(prompts[:1], GenParams(max_new_tokens=4))
    with Timer() as t:
        outs = [cpp.generate([p], params)[0] for p in prompts[:2]]
    n = sum(o.completion_tokens for o in outs)
    print(f"llama.cpp generate, batch 1: {n / t.wall:6.1f} tokens/s ({n} tokens; {t})")


if __name__ == "__main__":
    main()
