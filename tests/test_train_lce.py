"""LCELoss: hand computation and the property tests of style-anchors habit 2; the loss registry."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_ce_dir(tmp_path_factory):
    """A 1-layer random BERT cross-encoder (num_labels=1) with the MiniLM tokenizer, saved as a folder."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from relforge.models import resolve_model

    out = tmp_path_factory.mktemp("tiny-ce")
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


@pytest.fixture(scope="module")
def _tiny_ce(tiny_ce_dir):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(tiny_ce_dir, max_length=64)


@pytest.fixture()
def tiny_ce(_tiny_ce):
    model = copy.deepcopy(_tiny_ce)
    model.eval()  # no dropout: property tests compare exact values
    return model


Q = ["what causes gout", "symptoms of anemia"]
POS = ["gout is caused by uric acid crystals", "anemia makes you tired and pale"]
N1 = ["glaucoma damages the optic nerve", "measles gives a rash"]
N2 = ["rickets comes from a lack of vitamin d in children", "tetanus"]


def test_lce_equals_hand_computation_on_2x3_logits(tiny_ce):
    from relforge.train.losses import LCELoss

    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
    hand = (
        -(1.0 - math.log(math.e**1 + math.e**2 + math.e**3))
        - (0.5 - math.log(math.e**0.5 + 1.0 + math.e**-1))
    ) / 2
    assert LCELoss(tiny_ce).loss_from_logits(logits).item() == pytest.approx(hand, abs=1e-6)
    hand_t2 = (
        -(0.5 - math.log(math.e**0.5 + math.e**1 + math.e**1.5))
        - (0.25 - math.log(math.e**0.25 + 1.0 + math.e**-0.5))
    ) / 2
    assert LCELoss(tiny_ce, temperature=2.0).loss_from_logits(logits).item() == pytest.approx(
        hand_t2, abs=1e-6
    )


def test_lce_forward_scores_groups_query_major(tiny_ce):
    from relforge.train.losses import LCELoss

    loss_fn = LCELoss(tiny_ce)
    logits = loss_fn.group_logits([Q, POS, N1, N2])
    direct = torch.tensor(
        tiny_ce.predict(
            [(q, d) for i, q in enumerate(Q) for d in (POS[i], N1[i], N2[i])],
            activation_fn=torch.nn.Identity(),
        )
    ).view(2, 3)
    torch.testing.assert_close(logits, direct, rtol=0, atol=1e-5)
    expected = torch.nn.functional.cross_entropy(direct, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(loss_fn([Q, POS, N1, N2], None), expected, rtol=0, atol=1e-5)


def test_lce_is_invariant_to_the_order_of_negatives(tiny_ce):
    from relforge.train.losses import LCELoss

    loss_fn = LCELoss(tiny_ce)
    a = loss_fn([Q, POS, N1, N2], None)
    b = loss_fn([Q, POS, N2, N1], None)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_batched_loss_is_mean_of_per_query_losses(tiny_ce):
    from relforge.train.losses import LCELoss

    loss_fn = LCELoss(tiny_ce)
    batched = loss_fn([Q, POS, N1, N2], None)
    singles = [loss_fn([[Q[i]], [POS[i]], [N1[i]], [N2[i]]], None) for i in range(2)]
    torch.testing.assert_close(batched, torch.stack(singles).mean(), rtol=0, atol=1e-5)


def test_lce_in_bf16_is_finite_float32_with_finite_gradients(tiny_ce):
    from relforge.train.losses import LCELoss

    tiny_ce.to(torch.bfloat16)
    loss = LCELoss(tiny_ce)([Q, POS, N1, N2], None)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in tiny_ce.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g.float()).all() for g in grads)


def test_lce_errors_have_exact_messages(tiny_ce):
    from types import SimpleNamespace

    from relforge.train.losses import LCELoss

    with pytest.raises(
        ValueError,
        match=re.escape(
            "LCELoss expects at least 3 columns (query, positive, negative_1, ...), but got 2 columns."
        ),
    ):
        LCELoss(tiny_ce)([Q, POS], None)
    two = SimpleNamespace(num_labels=2)  # only the label count is checked
    with pytest.raises(
        ValueError,
        match=re.escape("LCELoss expects a model with 1 output label, but got a model with 2 output labels."),
    ):
        LCELoss(two)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        LCELoss(tiny_ce, temperature=0)


def test_loss_registry_errors_are_built_from_the_registry():
    from relforge.errors import UsageError
    from relforge.train.trainer import LOSSES, check_loss

    assert sorted(LOSSES) == ["bce", "kl", "lambda", "lce", "listnet", "margin_mse", "mnrl"]
    with pytest.raises(
        UsageError,
        match=re.escape(
            "loss 'foo' is not one of bce, kl, lambda, lce, listnet, margin_mse, mnrl (set --loss)"
        ),
    ):
        check_loss("foo", "cross")
    with pytest.raises(
        UsageError,
        match=re.escape("loss 'bce' does not train kind 'bi'; for bi use one of kl, lce, margin_mse, mnrl"),
    ):
        check_loss("bce", "bi")


def test_group_formats_for_pointwise_and_listwise_losses():
    import datasets

    from relforge.train.trainer import to_format

    groups = datasets.Dataset.from_dict(
        {
            "qid": ["q1"],
            "query": ["q"],
            "positive": ["p"],
            "negative_1": ["n1"],
            "negative_2": ["n2"],
            "labels": [[3.0, 1.0, 0.0]],
        }
    )
    assert to_format(groups, "group").column_names == ["query", "positive", "negative_1", "negative_2"]
    assert to_format(groups, "group", kind="bi").column_names[0] == "anchor"
    assert to_format(groups, "group", negatives=1).column_names == ["query", "positive", "negative_1"]
    pairs = to_format(groups, "pairs")
    assert pairs["doc"] == ["p", "n1", "n2"] and pairs["label"] == [1.0, 0.0, 0.0]
    lst = to_format(groups, "list")
    assert lst[0] == {"query": "q", "docs": ["p", "n1", "n2"], "labels": [3.0, 1.0, 0.0]}


def test_dense_lce_equals_hand_computation():
    from relforge.train.losses import DenseLCELoss

    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    logits = DenseLCELoss(model=None, scale=10.0).group_logits([q, pos, neg])
    # cosines: query 0 -> (1, 0); query 1 -> (1/sqrt(2), 1)
    want = torch.tensor([[10.0, 0.0], [10 / math.sqrt(2), 10.0]])
    torch.testing.assert_close(logits, want)
    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(2, dtype=torch.long))
    hand = (
        -math.log(math.exp(10) / (math.exp(10) + 1))
        - math.log(math.exp(10 / math.sqrt(2)) / (math.exp(10 / math.sqrt(2)) + math.exp(10)))
    ) / 2
    assert abs(float(loss) - hand) < 1e-5
    with pytest.raises(ValueError, match="at least 3 columns"):
        DenseLCELoss(model=None).group_logits([q, pos])
