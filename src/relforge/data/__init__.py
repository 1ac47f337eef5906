"""Data model and I/O in the field's formats (BEIR, TREC), plus importers (MedQuAD)."""

from relforge.data.io import (
    atomic_write,
    iter_corpus,
    iter_jsonl,
    iter_qrels,
    iter_queries,
    iter_run,
    read_beir,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    validate_qrels,
    write_corpus,
    write_jsonl,
    write_qrels,
    write_queries,
    write_run,
)

__all__ = [
    "atomic_write", "iter_corpus", "iter_jsonl", "iter_qrels", "iter_queries", "iter_run", "read_beir",
    "read_corpus", "read_qrels", "read_queries", "read_run", "validate_qrels", "write_corpus", "write_jsonl",
    "write_qrels", "write_queries", "write_run",
]
