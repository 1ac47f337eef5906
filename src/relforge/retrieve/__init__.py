"""Candidate retrieval (BM25, dense, hybrid RRF) and hard-negative mining."""

from relforge.retrieve.bm25 import bm25_search, build_bm25_index
from relforge.retrieve.config import MiningConfig, RetrieveConfig
from relforge.retrieve.dense import dense_search, encode_corpus
from relforge.retrieve.fusion import rrf
from relforge.retrieve.mining import mine_negatives, mine_negatives_split
from relforge.retrieve.search import retrieve

__all__ = [
    "MiningConfig",
    "RetrieveConfig",
    "bm25_search",
    "build_bm25_index",
    "dense_search",
    "encode_corpus",
    "mine_negatives",
    "mine_negatives_split",
    "retrieve",
    "rrf",
]
