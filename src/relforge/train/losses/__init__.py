"""Losses relforge adds to sentence-transformers' (one file per loss)."""

from relforge.train.losses.dense_lce import DenseLCELoss
from relforge.train.losses.lce import LCELoss

__all__ = ["DenseLCELoss", "LCELoss"]
