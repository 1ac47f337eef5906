"""Losses relforge adds to sentence-transformers' (one file per loss)."""

from relforge.train.losses.lce import LCELoss

__all__ = ["LCELoss"]
