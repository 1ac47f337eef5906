"""Losses relforge adds to sentence-transformers' (one file per loss family)."""

from relforge.train.losses.dense_lce import DenseLCELoss
from relforge.train.losses.lce import LCELoss
from relforge.train.losses.soft import DenseSoftGroupLoss, SoftGroupLoss, listwise_kl, margin_mse

__all__ = ["DenseLCELoss", "DenseSoftGroupLoss", "LCELoss", "SoftGroupLoss", "listwise_kl", "margin_mse"]
