"""The run folder's layout: every artifact path the pipeline stages read or write, named once.

Paths are relative to the run folder (what :meth:`~relforge.pipeline.runner.StageContext.path` takes and
what the manifest records as stage inputs and outputs)::

    manifest.json             per stage: config hash, input/output hashes, wall time, LLM tokens, counts
    config.yaml               the validated configuration (all defaults filled in)
    llm-cache.sqlite          every LLM call (generate + judge); makes interrupted stages resumable
    data/                     corpus.jsonl, test-queries.jsonl, test-qrels.tsv, summary.json
    generate/                 queries.jsonl, qrels.tsv (query -> its source document), summary.json
    retrieve/                 candidates.trec (synthetic queries), negatives.jsonl,
                              test-{bm25,dense,hybrid}.trec (held-out human questions), summary.json
    judge_finetune/           (optional) the LoRA adapter trained inside the pipeline + metrics.jsonl
    judge/                    judgments.jsonl, qrels.tsv, summary.json, agreement.json, confusion PNGs
    dataset/{plain,judged}/   LCE groups (HF dataset + groups.jsonl + summary.json); dataset/summary.json
    train/{plain,judged}/     reranker folders (CrossEncoder, or SentenceTransformer with train.kind bi);
                              manifest key ``reranker_model`` names the final one
    rerank/*.trec             the held-out questions' first-stage candidates reranked
    eval/                     metrics.json, metrics.csv
    ablation/ + ablation.json (optional) dataset-size ablation
    report.html

The strings are part of every cached run's manifest (input and output hashes are keyed by them): a
changed spelling re-runs the stages that name it.
"""

from __future__ import annotations

# the files the report reads too: named in relforge.artifacts (which the report imports), re-exported here
from relforge.artifacts import (  # noqa: F401
    ABLATION_JSON,
    AGREEMENT,
    DATASET_SUMMARY,
    EXTRA_SUMMARY,
    JUDGE_FINETUNE_METRICS,
    JUDGMENTS,
    MANIFEST,
    METRICS_CSV,
    METRICS_JSON,
    REPORT,
    extra_dir,
)

# --------------------------------------------------------------------------- data (stage import)

CORPUS = "data/corpus.jsonl"
TEST_QUERIES = "data/test-queries.jsonl"
TEST_QRELS = "data/test-qrels.tsv"
TRAIN_QUERIES = "data/train-queries.jsonl"
TRAIN_QRELS = "data/train-qrels.tsv"
DEV_QUERIES = "data/dev-queries.jsonl"
DEV_QRELS = "data/dev-qrels.tsv"
DATA_SUMMARY = "data/summary.json"
#: the BEIR folder a MedQuAD archive is converted to
MEDQUAD_DIR = "data/medquad"

# --------------------------------------------------------------------------- generate

GEN_QUERIES = "generate/queries.jsonl"
GEN_QRELS = "generate/qrels.tsv"
GEN_REJECTED = "generate/rejected.jsonl"
GEN_SUMMARY = "generate/summary.json"

# --------------------------------------------------------------------------- retrieve

CANDIDATES = "retrieve/candidates.trec"
NEGATIVES = "retrieve/negatives.jsonl"
RETRIEVE_SUMMARY = "retrieve/summary.json"
BM25_INDEX = "retrieve/cache/bm25-index"
EMBEDDINGS = "retrieve/cache/embeddings"


def first_stage_test(method: str) -> str:
    """The held-out questions' first-stage run of ``method`` (bm25, dense, hybrid)."""
    return f"retrieve/test-{method}.trec"


def first_stage_dev(method: str) -> str:
    """The dev questions' first-stage run of ``method`` (``data.dev_split``)."""
    return f"retrieve/dev-{method}.trec"


# --------------------------------------------------------------------------- judge

#: the LoRA adapter trained inside the pipeline (also ``judge.adapter: finetune``'s relative folder)
JUDGE_FINETUNE = "judge_finetune"
JUDGE_FINETUNE_SUMMARY = f"{JUDGE_FINETUNE}/summary.json"
JUDGE_FINETUNE_SOURCE = f"{JUDGE_FINETUNE}/source.json"
JUDGE_QRELS = "judge/qrels.tsv"
JUDGE_SUMMARY = "judge/summary.json"


def judge_finetune_file(name: str) -> str:
    return f"{JUDGE_FINETUNE}/{name}"


def confusion_png(key: str) -> str:
    """The confusion-matrix plot of agreement.json's entry ``key``."""
    return f"judge/confusion-{key}.png"


# --------------------------------------------------------------------------- groups / train / rerank


def dataset(variant: str) -> str:
    """The LCE groups folder of a training variant (plain, judged, soft)."""
    return f"dataset/{variant}"


def train_model(variant: str) -> str:
    """The trained reranker folder of a variant."""
    return f"train/{variant}"


def train_summary(variant: str) -> str:
    """The training summary of a variant (what the trainer returns)."""
    return f"train/{variant}-summary.json"


RERANK_DIR = "rerank/"


def rerank_run(name: str) -> str:
    """The held-out questions reranked by system ``name`` (backbone or a variant)."""
    return f"{RERANK_DIR}{name}.trec"


BACKBONE_RUN = rerank_run("backbone")

# --------------------------------------------------------------------------- evaluate / ablation / report


def ablation_model(variant: str, n: int) -> str:
    """The ablation's model folder for ``n`` groups of ``variant`` (deleted after reranking)."""
    return f"ablation/{variant}-{n}"
