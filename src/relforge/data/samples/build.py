"""Rebuild the packaged samples from the full data.

    python -m relforge.data.samples.build --medquad ../shared/data/medquad/medquad-xml.tar.xz \\
        --liveqa ../shared/data/liveqa-med-judged

The MedQuAD pick is deterministic: split units (whole documents; documents sharing a question text
stay together) are visited in SHA-256 order and taken while their (main source, split) is under its
quota: the source's share of answered pairs times ``TARGET_PAIRS`` (at least ``MIN_PER_SOURCE``),
dealt 60/20/20 over train/dev/test. Units keep the split the full import gives them, so the sample's
train/dev/test agree with ``relforge data medquad`` (no sample test question is in the full train split).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from relforge.data.config import DEFAULT_FRACTIONS, DEFAULT_SEED
from relforge.data.io import atomic_write, read_beir, read_qrels
from relforge.data.medquad import (
    ANSWER_GRADE,
    SPLITS,
    MedQuADPair,
    load_medquad,
    select_answered,
    split_of,
    split_units,
    write_medquad_beir,
)
from relforge.data.samples import _HERE

TARGET_PAIRS = 300
MIN_PER_SOURCE = 16
MAX_UNIT_PAIRS = 25
#: train/dev/test shares of each source's quota: larger dev/test than the full split, so the demo
#: can evaluate; each unit keeps the split the full import gives it
SAMPLE_SPLIT_SHARES = (0.6, 0.2, 0.2)

CITATION_MEDQUAD = (
    "Asma Ben Abacha and Dina Demner-Fushman. A Question-Entailment Approach to Question Answering. "
    "BMC Bioinformatics 20:511, 2019. https://doi.org/10.1186/s12859-019-3119-4"
)
BIBTEX_MEDQUAD = """@article{BenAbacha-BMC-2019,
  author  = {Asma {Ben Abacha} and Dina Demner{-}Fushman},
  title   = {A Question-Entailment Approach to Question Answering},
  journal = {{BMC} Bioinformatics},
  volume  = {20},
  number  = {1},
  pages   = {511},
  year    = {2019},
  doi     = {10.1186/s12859-019-3119-4}
}"""
CITATION_LIVEQA = (
    "Asma Ben Abacha, Eugene Agichtein, Yuval Pinter and Dina Demner-Fushman. Overview of the Medical "
    "Question Answering Task at TREC 2017 LiveQA. TREC 2017."
)
REBUILD = (
    "python -m relforge.data.samples.build --medquad ../shared/data/medquad/medquad-xml.tar.xz "
    "--liveqa ../shared/data/liveqa-med-judged"
)


def pick_units(
    pairs: list[MedQuADPair],
    *,
    target: int = TARGET_PAIRS,
    min_per_source: int = MIN_PER_SOURCE,
    max_unit_pairs: int = MAX_UNIT_PAIRS,
    split_shares=SAMPLE_SPLIT_SHARES,
) -> list[MedQuADPair]:
    """Stratified deterministic pick of whole split units (see the module docstring)."""
    unit_of = split_units(pairs)
    by_unit: dict[str, list[MedQuADPair]] = defaultdict(list)
    for p in pairs:
        by_unit[unit_of[p.document]].append(p)
    share = Counter(p.source for p in pairs)
    quota: dict[tuple[str, str], float] = {}
    for s, n in share.items():
        q = max(min_per_source, round(target * n / len(pairs)))
        for split, frac in zip(SPLITS, split_shares, strict=True):
            quota[(s, split)] = q * frac
    have: Counter = Counter()
    chosen: list[str] = []
    for unit in sorted(by_unit, key=lambda u: hashlib.sha256(f"sample\x00{u}".encode()).hexdigest()):
        members = by_unit[unit]
        main = Counter(p.source for p in members).most_common(1)[0][0]
        key = (main, split_of(unit, DEFAULT_SEED, DEFAULT_FRACTIONS))
        if len(members) > max_unit_pairs or have[key] >= quota[key]:
            continue
        chosen.append(unit)
        have[key] += len(members)
        if all(have[k] >= q for k, q in quota.items()):
            break
    keep = set(chosen)
    return [p for p in pairs if unit_of[p.document] in keep]


def _medquad_readme(summary: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {src} | {c['answered']} | {c.get('train', 0)} | {c.get('dev', 0)} | {c.get('test', 0)} |"
        for src, c in summary["per_source"].items()
    )
    sp = summary["splits"]
    return f"""# MedQuAD sample (packaged with relforge)

A small, deterministic, source-stratified pick of **whole MedQuAD documents**: {summary["answered_pairs"]}
answered question-answer pairs from {len(summary["per_source"])} NIH sources, in BEIR layout.

- `corpus.jsonl`: documents = answers (`title` = the focus; `metadata`: source, url, qtype, focus,
  umls_cuis, semantic_types, semantic_group, category, synonyms, question, document, pid).
- `queries.jsonl`: the original MedQuAD questions (`metadata`: qtype, doc_id, source, document, split).
- `qrels/{{train,dev,test}}.tsv`: each question -> its own answer, grade {ANSWER_GRADE} (top of the 0..3
  scale). Other answers are unjudged. Split by document ({sp["train"]["queries"]} / {sp["dev"]["queries"]} /
  {sp["test"]["queries"]} questions): the same split each question gets in a full
  `relforge data medquad` import (seed {DEFAULT_SEED}, fractions {list(DEFAULT_FRACTIONS)}).
- `summary.json`: counts and how the sample was picked.

| source | pairs | train | dev | test |
|---|---|---|---|---|
{rows}

## Licence and attribution

MedQuAD is published under the Creative Commons Attribution 4.0 International licence (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/) by Asma Ben Abacha and Dina Demner-Fushman
(repository abachaa/MedQuAD). This sample is an unmodified selection of its question-answer pairs,
reformatted (XML -> JSONL, whitespace normalised). If you use it, cite:

{CITATION_MEDQUAD}

```bibtex
{BIBTEX_MEDQUAD}
```

## Rebuild

```bash
{REBUILD}
```
"""


def build_medquad(src: str | Path, out: Path) -> dict[str, Any]:
    coll = load_medquad(src)
    kept, _ = select_answered(coll)
    picked = pick_units(kept)
    if out.exists():
        shutil.rmtree(out)
    summary = write_medquad_beir(picked, out)
    summary = {
        "answered_pairs": len(picked),
        **summary,
        "sample": {
            "picked_from_answered_pairs": len(kept),
            "target_pairs": TARGET_PAIRS,
            "min_per_source": MIN_PER_SOURCE,
            "max_unit_pairs": MAX_UNIT_PAIRS,
            "split_shares": list(SAMPLE_SPLIT_SHARES),
            "grade": ANSWER_GRADE,
            "seed": DEFAULT_SEED,
            "fractions": list(DEFAULT_FRACTIONS),
            "rebuild": REBUILD,
        },
    }
    with atomic_write(out / "summary.json") as fh:
        json.dump(summary, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    with atomic_write(out / "README.md") as fh:
        fh.write(_medquad_readme(summary))
    return summary


def build_liveqa(src: str | Path, out: Path) -> dict[str, Any]:
    src = Path(src)
    if out.exists():
        shutil.rmtree(out)
    (out / "qrels").mkdir(parents=True)
    shutil.copyfile(src / "corpus.jsonl", out / "corpus.jsonl")
    shutil.copyfile(src / "queries.jsonl", out / "queries.jsonl")
    shutil.copyfile(src / "qrels.tsv", out / "qrels" / "test.tsv")
    corpus, queries, qrels = read_beir(out, "test")  # validates ids, grades, encoding
    from relforge.data.stats import beir_stats

    st = beir_stats(out)["qrels"]["test"]
    grades = Counter(g for d in read_qrels(out / "qrels" / "test.tsv").values() for g in d.values())
    upstream = (src / "README.md").read_text(encoding="utf-8").strip()
    upstream = upstream.replace(
        "`qrels.tsv` (BEIR layout, with header)", "`qrels/test.tsv` (BEIR layout, with header)"
    )
    readme = f"""{upstream}

## In relforge

This folder is a byte copy of the judged set packaged with relforge (`relforge data sample liveqa-med --out DIR`;
only `qrels.tsv` moved to `qrels/test.tsv`): {len(queries)} questions, {len(corpus)} answers, {st["rows"]} qrels rows.
**{st["conflicting_duplicates"]} (question, answer) pairs are judged twice upstream with different grades**, so the
rows hold {st["pairs"]} distinct pairs; relforge's readers keep the last row of a pair (here always the higher
grade), giving grades {dict(sorted(grades.items()))} over the distinct pairs (`relforge data stats` reports
this). Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Cite both:

- {CITATION_MEDQUAD}
- {CITATION_LIVEQA}

Rebuild: `{REBUILD}`
"""
    with atomic_write(out / "README.md") as fh:
        fh.write(readme)
    return {
        "queries": len(queries),
        "documents": len(corpus),
        "rows": st["rows"],
        "pairs": st["pairs"],
        "conflicting_duplicates": st["conflicting_duplicates"],
        "grades": dict(sorted(grades.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m relforge.data.samples.build", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--medquad", help="MedQuAD folder or medquad-xml.tar.xz")
    ap.add_argument(
        "--liveqa", help="folder of the LiveQA-Med judged set (corpus.jsonl, queries.jsonl, qrels.tsv)"
    )
    ap.add_argument("--out", default=str(_HERE), help="samples folder (default: inside the package)")
    args = ap.parse_args(argv)
    if not args.medquad and not args.liveqa:
        ap.error("give --medquad and/or --liveqa")
    out = Path(args.out)
    if args.medquad:
        s = build_medquad(args.medquad, out / "medquad")
        print(
            f"medquad: {s['answered_pairs']} pairs, splits "
            f"{ {k: v['queries'] for k, v in s['splits'].items()} }, sources {len(s['per_source'])}"
        )
    if args.liveqa:
        print("liveqa-med:", build_liveqa(args.liveqa, out / "liveqa-med"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
