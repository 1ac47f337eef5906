"""Query-generation prompt length: speed and query quality of few-shot settings, measured in one run.

On CPU, generation with per-document nearest examples is prefill-bound: each document's prompt carries its
own examples (no shared prefix), 4 examples of up to 200 words make ~1,300 tokens. This script writes queries
for the same documents under several settings ``n_examples:max_example_words`` (e.g. ``4:200`` = the CPU
recipe, ``4:60`` = the same examples cut to 60 words, ``2:200``), with the same LLM object and no cache, and
prints per setting:

- docs/s (model load excluded) and the mean prompt length in tokens, and the speed ratio to the first setting;
- kept: the share of documents whose query survived the recipe's filters;
- type match: the share of kept queries whose question type (a keyword rule: symptom, treat, inherit, cause,
  diagnos/test, ...) is the document's MedQuAD ``qtype`` — the measure that showed fixed examples failing
  (38 %) and nearest examples working (69 %), docs/training.md item 6-7;
- cos to human: mean MiniLM cosine between each kept query and the human MedQuAD question of its document
  (``metadata.question``; not shown to the LLM), a proxy for how human-like the queries are.

Settings run one after another on the same documents (keep the machine idle); a single run, seed 0.

Run:  HF_HUB_OFFLINE=1 python benchmarks/generate_prompt.py --corpus RUN/data/corpus.jsonl \
          [--config configs/medquad-cpu.yaml] [--docs 48] [--settings 4:200 4:60 2:200]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: question-type keyword rules, checked in order; a query matching none is an "information" question
TYPE_RULES = [
    ("symptoms", r"symptom|sign"),
    ("complications", r"complication"),
    ("treatment", r"treat|therap|cure|manag|medication|drug"),
    ("prevention", r"prevent|avoid"),
    ("inheritance", r"inherit|passed down|hereditary"),
    ("genetic changes", r"gene|genetic|mutation|chromosom"),
    ("frequency", r"how many|how common|prevalen|frequen"),
    ("exams and tests", r"diagnos|test|exam|screen"),
    ("outlook", r"outlook|prognos|life expectancy|surviv"),
    ("susceptibility", r"risk|who (?:is|are|gets|get)"),
    ("causes", r"cause|why"),
    ("stages", r"stage"),
    ("research", r"research|clinical trial|stud"),
    ("support groups", r"support"),
]


def question_type(query: str) -> str:
    q = query.lower()
    for name, pat in TYPE_RULES:
        if re.search(pat, q):
            return name
    return "information"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a MedQuAD corpus (BEIR JSONL with qtype)")
    ap.add_argument("--config", type=Path, default=Path("configs/medquad-cpu.yaml"))
    ap.add_argument("--docs", type=int, default=48)
    ap.add_argument("--settings", nargs="+", default=["4:200", "4:60", "2:200"])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from relforge.config import load_config, stage_part
    from relforge.data import read_corpus
    from relforge.generate import generate_queries, select_documents
    from relforge.generate.config import GenerateConfig, SelectConfig
    from relforge.generate.queries import load_prompt
    from relforge.llm import load_llm
    from relforge.retrieve.dense import encode_texts, load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_config(args.config)  # the recipe's generate settings and LLM, as the pipeline reads them
    opts = pipe.llm_options("generate")
    precision = opts.get("precision")
    llm = load_llm(pipe.llm_for("generate"), cache=None, batch_size=pipe.llm.batch_size, **opts)
    corpus = read_corpus(args.corpus)
    docs = select_documents(corpus, SelectConfig(sample=args.docs, seed=0))
    encode_chat = getattr(llm, "encode_chat", None)
    enc = load_encoder("minilm")
    qtype = {d.id: str(d.metadata.get("qtype", "")) for d in docs}
    human = {d.id: str(d.metadata.get("question", "")).rstrip(" ?") + "?" for d in docs}
    print(f"{len(docs)} documents of {args.corpus}, {precision}, settings {args.settings}")
    rows = []
    for s in args.settings:
        n, w = (int(x) for x in s.split(":"))
        cfg = stage_part(pipe.generate, GenerateConfig, n_examples=n, max_example_words=w)
        prompt = load_prompt(cfg)
        n_tok = float("nan")
        if encode_chat is not None and cfg.example_selection == "nearest":
            picks = prompt.nearest_examples(docs, lambda t: encode_texts(enc, t))
            lens = [len(encode_chat(prompt.build_chat(d, ex))) for d, ex in zip(docs, picks, strict=True)]
            n_tok = float(np.mean(lens))
        t0 = time.perf_counter()
        res = generate_queries(llm, docs, cfg, corpus=corpus)
        dt = time.perf_counter() - t0
        kept = res.queries
        types = [question_type(q.text) == qtype[q.metadata["doc_id"]] for q in kept]
        qv = np.asarray(encode_texts(enc, [q.text for q in kept]))
        hv = np.asarray(encode_texts(enc, [human[q.metadata["doc_id"]] for q in kept]))
        cos = float(np.mean(np.sum(qv * hv, axis=1))) if kept else float("nan")
        rows.append((s, len(docs) / dt, n_tok, len(kept) / len(docs), float(np.mean(types)), cos, dt))
        print(f"  {s}: {dt:.0f} s, {len(kept)} kept; e.g. {[q.text for q in kept[:3]]}", flush=True)
    print(
        "\n| n_examples:max_example_words | docs/s | ratio | prompt tokens | kept | type match | cos to human |"
    )
    print("|---|---|---|---|---|---|---|")
    for s, rate, n_tok, keep, tm, cos, _ in rows:
        print(
            f"| {s} | {rate:.3f} | {rate / rows[0][1]:.2f}x | {n_tok:.0f} | {keep:.0%} | {tm:.0%} | {cos:.3f} |"
        )


if __name__ == "__main__":
    main()
