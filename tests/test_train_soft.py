"""Soft losses (listwise KL, margin-MSE) on hand-computed groups, and training with them end to end."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from relforge.train.losses import DenseSoftGroupLoss, SoftGroupLoss, listwise_kl, margin_mse

S = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.5, -1.0]])
T = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.0, 0.0]])


def _softmax(xs):
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_listwise_kl_equals_hand_computation():
    want = 0.0
    for s, t in zip(S.tolist(), (T / 2.0).tolist(), strict=True):
        p, q = _softmax(t), _softmax(s)
        want += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    want /= 2
    assert abs(float(listwise_kl(S, T, temperature=2.0)) - want) < 1e-6
    # a teacher equal to the student gives 0; KL is never negative
    assert abs(float(listwise_kl(S, S))) < 1e-7
    assert float(listwise_kl(S, -T)) > 0


def test_margin_mse_equals_hand_computation():
    # row 0: student margins (2, 1), teacher (2, 3); row 1: (-1, 1.5), teacher (0, 2)
    want = ((2 - 2) ** 2 + (1 - 3) ** 2 + (-1 - 0) ** 2 + (1.5 - 2) ** 2) / 4
    assert abs(float(margin_mse(S, T)) - want) < 1e-6
    # shifting every student score of a row by a constant changes no margin
    assert abs(float(margin_mse(S + torch.tensor([[5.0], [-3.0]]), T)) - want) < 1e-6


def test_gradients_point_towards_the_teacher():
    s = torch.tensor([[0.0, 1.0, 1.0]], requires_grad=True)
    t = torch.tensor([[3.0, 0.0, 0.0]])  # teacher: the positive is clearly best
    listwise_kl(s, t).backward()
    assert s.grad[0, 0] < 0 < s.grad[0, 1]  # descent raises the positive, lowers the negatives
    assert s.grad[0, 2] > 0
    s2 = torch.tensor([[0.0, 1.0, 1.0]], requires_grad=True)
    margin_mse(s2, t).backward()
    assert s2.grad[0, 0] < 0 < s2.grad[0, 1]
    # a student already past the teacher's margin is pulled back (margin-MSE is not a ranking hinge)
    s3 = torch.tensor([[10.0, 0.0]], requires_grad=True)
    margin_mse(s3, torch.tensor([[3.0, 0.0]])).backward()
    assert s3.grad[0, 0] > 0


@pytest.mark.parametrize("fn", [listwise_kl, margin_mse])
def test_soft_losses_are_invariant_to_the_order_of_negatives(fn):
    perm = [0, 2, 1]
    assert abs(float(fn(S, T)) - float(fn(S[:, perm], T[:, perm]))) < 1e-6


@pytest.fixture(scope="module")
def tiny_ce_dir(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from relforge.models import resolve_model

    out = tmp_path_factory.mktemp("tiny-ce-soft")
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


Q = ["what causes gout", "symptoms of anemia"]
POS = ["gout is caused by uric acid crystals", "anemia makes you tired and pale"]
N1 = ["glaucoma damages the optic nerve", "measles gives a rash"]
N2 = ["rickets comes from a lack of vitamin d in children", "tetanus"]
TEACH = [[3.0, 1.2, 0.1], [2.5, 0.0, 0.8]]


@pytest.mark.parametrize("kind", ["kl", "margin_mse"])
def test_cross_encoder_soft_loss_matches_its_logits_and_ignores_negative_order(tiny_ce_dir, kind):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(tiny_ce_dir, max_length=64)
    model.eval()
    loss = SoftGroupLoss(model, kind=kind, teacher_temperature=0.5)
    labels = [torch.tensor(t) for t in TEACH]  # what the CrossEncoder collator passes
    value = loss([Q, POS, N1, N2], labels)
    logits = loss.group_logits([Q, POS, N1, N2])
    t = torch.tensor(TEACH)
    ref = listwise_kl(logits, t, 0.5) if kind == "kl" else margin_mse(logits, t)
    assert abs(float(value) - float(ref)) < 1e-6
    swapped = loss([Q, POS, N2, N1], [torch.tensor([a, c, b]) for a, b, c in TEACH])
    assert abs(float(value) - float(swapped)) < 1e-5
    with pytest.raises(ValueError, match="one score per document"):
        loss([Q, POS, N1], labels)
    with pytest.raises(ValueError, match="need teacher scores"):
        loss([Q, POS, N1, N2], None)


def test_dense_soft_loss_uses_scaled_cosines():
    q = torch.tensor([[1.0, 0.0]])
    pos, neg = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    loss = DenseSoftGroupLoss(model=None, kind="margin_mse", scale=10.0)
    logits = loss.group_logits([q, pos, neg])  # (10, 0)
    value = loss.soft_loss(logits, torch.tensor([[3.0, 1.0]]))
    assert abs(float(value) - (10.0 - 2.0) ** 2) < 1e-5
    with pytest.raises(ValueError, match="kind must be"):
        DenseSoftGroupLoss(model=None, kind="hinge")


def _groups():
    import datasets

    rows = {"query": Q * 2, "positive": POS * 2, "negative_1": N1 * 2, "negative_2": N2 * 2}
    rows["teacher"] = TEACH * 2
    rows["labels"] = TEACH * 2
    return datasets.Dataset.from_dict(rows)


def test_soft_format_carries_teacher_scores_and_errors_without_them():
    from relforge.errors import DataError
    from relforge.train.trainer import to_format

    ds = to_format(_groups(), "soft", negatives=1)
    assert ds.column_names == ["query", "positive", "negative_1", "scores"]
    assert ds[0]["scores"] == pytest.approx(TEACH[0][:2])
    assert to_format(_groups(), "soft", kind="bi").column_names[0] == "anchor"
    with pytest.raises(DataError, match="'teacher' column"):
        to_format(_groups().remove_columns("teacher"), "soft")


@pytest.mark.parametrize("loss", ["kl", "margin_mse"])
def test_cross_encoder_trains_with_a_soft_loss(tiny_ce_dir, tmp_path, loss):
    from relforge.train import TrainConfig, train_cross_encoder

    cfg = TrainConfig(base=tiny_ce_dir, loss=loss, max_steps=2, batch_groups=2, max_length=32, lr=1e-3)
    summary = train_cross_encoder(_groups(), tmp_path / "ce", cfg)
    assert summary["steps"] == 2 and summary["loss"] == loss
    assert all(math.isfinite(p["loss"]) for p in summary["loss_curve"])


def test_bi_encoder_trains_with_kl(tmp_path):
    from relforge.train import TrainConfig, train_bi_encoder

    cfg = TrainConfig(kind="bi", loss="kl", max_steps=1, batch_groups=2, max_length=16, logging_steps=1)
    summary = train_bi_encoder(copy.deepcopy(_groups()), tmp_path / "bi", cfg)
    assert summary["steps"] == 1 and summary["kind"] == "bi"
    assert math.isfinite(summary["loss_curve"][0]["loss"])
