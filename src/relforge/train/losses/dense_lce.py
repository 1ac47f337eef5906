"""Localized Contrastive Estimation for dense (bi-encoder) rerankers."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DenseLCELoss(nn.Module):
    def __init__(self, model, *, scale: float = 20.0) -> None:
        r"""LCE for a SentenceTransformer: softmax cross-entropy over one query's own group.

        For a query ``q`` with positive ``d+`` and its hard negatives ``d-_1..d-_n`` the loss is

        .. math:: L = -\log \frac{\exp(s \cos(q, d^+))}{\exp(s \cos(q, d^+)) + \sum_i \exp(s \cos(q, d^-_i))}

        averaged over the batch's queries. Unlike ``MultipleNegativesRankingLoss`` no other query's
        documents enter the softmax: the negatives are the group's (judge-filtered) hard negatives only.

        Args:
            model: a :class:`~sentence_transformers.SentenceTransformer`.
            scale: multiplies the cosine similarities (inverse temperature), as in MNRL.

        Inputs:
            ``(anchor, positive, negative_1, ..., negative_n)`` columns, no labels; every row has the
            same number of negatives.
        """
        super().__init__()
        if not scale > 0:
            raise ValueError(f"{self.__class__.__name__}: scale must be > 0, got {scale}.")
        self.model = model
        self.scale = float(scale)

    def group_logits(self, embeddings: list[Tensor]) -> Tensor:
        """``(B, 1 + n)`` scaled cosines of each query with its own group (positive at column 0)."""
        if len(embeddings) < 3:
            raise ValueError(
                f"{self.__class__.__name__} expects at least 3 columns (anchor, positive, negative_1, ...), "
                f"but got {len(embeddings)} columns."
            )
        q = nn.functional.normalize(embeddings[0], dim=-1)
        docs = nn.functional.normalize(torch.stack(embeddings[1:], dim=1), dim=-1)  # (B, 1+n, d)
        return self.scale * torch.einsum("bd,bkd->bk", q, docs).float()

    def forward(self, sentence_features, labels: Tensor | None = None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        logits = self.group_logits(embed_columns(self.model, sentence_features))
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return nn.functional.cross_entropy(logits, target)

    def get_config_dict(self) -> dict[str, float]:
        return {"scale": self.scale}
