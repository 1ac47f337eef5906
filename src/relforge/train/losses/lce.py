"""Localized Contrastive Estimation (LCE) for cross-encoders."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LCELoss(nn.Module):
    def __init__(self, model, *, temperature: float = 1.0) -> None:
        r"""Localized Contrastive Estimation: softmax cross-entropy over one query's group.

        For a query ``q`` with positive ``d+`` and its own hard negatives ``d-_1..d-_n``, the
        cross-encoder scores every pair and the loss is

        .. math:: L = -\log \frac{\exp(s(q, d^+) / T)}{\exp(s(q, d^+) / T) + \sum_i \exp(s(q, d^-_i) / T)}

        averaged over the queries of the batch. Logits have shape ``(B, 1 + n)`` with the positive at
        index 0. No in-batch negatives, no sigmoid, no scale: with ``T = 1`` this is exactly the loss of
        Gao et al. (unlike ``MultipleNegativesRankingLoss``, which adds in-batch negatives and
        ``sigmoid × 10``).

        Args:
            model: a :class:`~sentence_transformers.cross_encoder.CrossEncoder` with ``num_labels=1``.
            temperature: divides the logits before the softmax (``T``); 1.0 is plain LCE.

        References:
            - Gao, Dai, Callan: Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline,
              ECIR 2021. https://arxiv.org/abs/2101.08751

        Requirements:
            1. A CrossEncoder with ``num_labels = 1``.
            2. Every row has the same number of negatives (groups of fixed size).

        Inputs:
            +------------------------------------------------+--------+-------------------------------+
            | Inputs                                         | Labels | Number of Model Output Labels |
            +================================================+========+===============================+
            | (query, positive, negative_1, ..., negative_n) | none   | 1                             |
            +------------------------------------------------+--------+-------------------------------+

        Recommendations:
            - Build the groups with :func:`relforge.dataset.build_groups`: judge-filtered hard negatives
              (false negatives removed) are what LCE needs.

        Relations:
            - ``MultipleNegativesRankingLoss(model, num_negatives=n, scale=1, activation_fn=Identity)``
              still adds in-batch negatives; :class:`LCELoss` scores only the query's own group.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
                from relforge.models import resolve_model
                from relforge.train.losses import LCELoss

                model = CrossEncoder(resolve_model("minilm"), num_labels=1, max_length=128)
                train = Dataset.from_dict({
                    "query": ["what causes gout?"],
                    "positive": ["Gout is caused by uric acid crystals in a joint."],
                    "negative_1": ["Glaucoma damages the optic nerve."],
                    "negative_2": ["Anemia is a lack of healthy red blood cells."],
                })
                trainer = CrossEncoderTrainer(model=model, train_dataset=train, loss=LCELoss(model))
                trainer.train()
        """
        super().__init__()
        if getattr(model, "num_labels", 1) != 1:
            raise ValueError(
                f"{self.__class__.__name__} expects a model with 1 output label, "
                f"but got a model with {model.num_labels} output labels."
            )
        if not temperature > 0:
            raise ValueError(f"{self.__class__.__name__}: temperature must be > 0, got {temperature}.")
        self.model = model
        self.temperature = float(temperature)

    def group_logits(
        self, inputs: list[list[str]], prompt: str | None = None, task: str | None = None
    ) -> Tensor:
        """Score the ``(B, 1 + n)`` pairs query-major in one forward pass; returns float32 logits."""
        from sentence_transformers.util import batch_to_device

        if len(inputs) < 3:
            raise ValueError(
                f"{self.__class__.__name__} expects at least 3 columns (query, positive, negative_1, ...), "
                f"but got {len(inputs)} columns."
            )
        queries, docs = inputs[0], inputs[1:]
        width = len(docs)
        pairs = [(q, docs[j][i]) for i, q in enumerate(queries) for j in range(width)]
        features = batch_to_device(self.model.preprocess(pairs, prompt=prompt, task=task), self.model.device)
        return self.model(features)["scores"].view(len(queries), width).float()

    def forward(
        self,
        inputs: list[list[str]],
        labels: Tensor | None = None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        logits = self.group_logits(inputs, prompt=prompt, task=task)
        return self.loss_from_logits(logits)

    def loss_from_logits(self, logits: Tensor) -> Tensor:
        """The LCE value of a ``(B, 1 + n)`` logit tensor with the positive at column 0."""
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return nn.functional.cross_entropy(logits / self.temperature, target)

    def get_config_dict(self) -> dict[str, float]:
        return {"temperature": self.temperature}

    @property
    def citation(self) -> str:
        return """
@inproceedings{gao2021lce,
  title={Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline},
  author={Gao, Luyu and Dai, Zhuyun and Callan, Jamie},
  booktitle={ECIR},
  year={2021}
}
"""
