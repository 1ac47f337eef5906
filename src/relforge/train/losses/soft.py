"""Soft (distillation) losses over one query's group: the judge's expected grades are the teacher.

Each group row carries ``(query, positive, negative_1..n)`` and a ``scores`` column with one teacher
score per document (the judge's expected grade, positive first; see
:func:`relforge.dataset.build_groups`). The student scores the same documents — a cross-encoder's
logits or a bi-encoder's scaled cosines, exactly as :class:`~relforge.train.losses.LCELoss` /
:class:`~relforge.train.losses.DenseLCELoss` do — and the loss compares the two lists:

- :func:`listwise_kl`: ``KL(softmax(t / T) || softmax(s))`` (listwise distillation; with a one-hot
  teacher it is LCE);
- :func:`margin_mse`: ``mean_i ((s_+ - s_i) - (t_+ - t_i))^2`` (GPL's margin-MSE, Hofstätter et al.).

Both are invariant to the order of the negatives (tests check it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relforge.train.losses.dense_lce import DenseLCELoss
from relforge.train.losses.lce import LCELoss


def _teacher(labels, like: Tensor) -> Tensor:
    """The ``(B, 1 + n)`` teacher tensor from the collator's labels (a tensor or a list of tensors)."""
    if labels is None:
        raise ValueError(
            "soft losses need teacher scores: a 'scores' column (one score per document of the group); "
            "build the groups with judgments (`relforge dataset build --judgments ...`)"
        )
    t = torch.stack([torch.as_tensor(x) for x in labels]) if isinstance(labels, (list, tuple)) else labels
    t = t.to(device=like.device, dtype=torch.float32)
    if t.shape != like.shape:
        raise ValueError(
            f"teacher scores have shape {tuple(t.shape)} but the group has {tuple(like.shape)} documents; "
            "the 'scores' column must hold one score per document (positive first)"
        )
    return t


def listwise_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Batch mean of ``KL(softmax(teacher / temperature) || softmax(student))`` over each row."""
    target = torch.softmax(teacher / temperature, dim=-1)
    return nn.functional.kl_div(torch.log_softmax(student, dim=-1), target, reduction="batchmean")


def margin_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over rows and negatives of ``((s_pos - s_neg) - (t_pos - t_neg))^2`` (positive at column 0)."""
    s_margin = student[:, :1] - student[:, 1:]
    t_margin = teacher[:, :1] - teacher[:, 1:]
    return nn.functional.mse_loss(s_margin, t_margin)


class _Soft:
    """Mixin: which comparison (``kl`` or ``margin_mse``) and the teacher temperature."""

    def _init_soft(self, kind: str, teacher_temperature: float) -> None:
        if kind not in ("kl", "margin_mse"):
            raise ValueError(f"{type(self).__name__}: kind must be 'kl' or 'margin_mse', got {kind!r}")
        if not teacher_temperature > 0:
            raise ValueError(f"{type(self).__name__}: teacher_temperature must be > 0")
        self.kind = kind
        self.teacher_temperature = float(teacher_temperature)

    def soft_loss(self, logits: Tensor, labels) -> Tensor:
        teacher = _teacher(labels, logits)
        if self.kind == "kl":
            return listwise_kl(logits, teacher, self.teacher_temperature)
        return margin_mse(logits, teacher)


class SoftGroupLoss(_Soft, LCELoss):
    def __init__(
        self, model, *, kind: str = "kl", teacher_temperature: float = 1.0, temperature: float = 1.0
    ) -> None:
        """Listwise KL or margin-MSE for a CrossEncoder (``num_labels=1``) against teacher scores.

        Args:
            model: a CrossEncoder with one output label.
            kind: ``kl`` (softmax of teacher / ``teacher_temperature`` vs softmax of the logits) or
                ``margin_mse`` (positive-minus-negative margins, GPL).
            teacher_temperature: divides the teacher scores before their softmax (``kl`` only).
            temperature: divides the student logits (as in :class:`LCELoss`).

        Inputs: ``(query, positive, negative_1..n)`` columns plus ``scores`` (list of 1 + n floats).
        """
        LCELoss.__init__(self, model, temperature=temperature)
        self._init_soft(kind, teacher_temperature)

    def forward(self, inputs, labels=None, prompt=None, task=None) -> Tensor:
        logits = self.group_logits(inputs, prompt=prompt, task=task) / self.temperature
        return self.soft_loss(logits, labels)

    def get_config_dict(self) -> dict:
        return {
            "kind": self.kind,
            "teacher_temperature": self.teacher_temperature,
            "temperature": self.temperature,
        }


class DenseSoftGroupLoss(_Soft, DenseLCELoss):
    def __init__(
        self, model, *, kind: str = "kl", teacher_temperature: float = 1.0, scale: float = 20.0
    ) -> None:
        """Listwise KL or margin-MSE for a SentenceTransformer: student = cosine × ``scale`` per document.

        Inputs: ``(anchor, positive, negative_1..n)`` columns plus ``scores`` (list of 1 + n floats).
        """
        DenseLCELoss.__init__(self, model, scale=scale)
        self._init_soft(kind, teacher_temperature)

    def forward(self, sentence_features, labels=None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        logits = self.group_logits(embed_columns(self.model, sentence_features))
        return self.soft_loss(logits, labels)

    def get_config_dict(self) -> dict:
        return {"kind": self.kind, "teacher_temperature": self.teacher_temperature, "scale": self.scale}
