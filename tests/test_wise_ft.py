"""WiSE-FT weight interpolation as a dev-selected candidate (train.interpolate, issue 17)."""

from __future__ import annotations

import math

import pytest
import torch

from relforge.train import TrainConfig
from relforge.train.trainer import interpolate_states, select_weights


def _model(w: float) -> torch.nn.Module:
    m = torch.nn.Linear(1, 1, bias=False)
    m.register_buffer("ids", torch.arange(3))
    with torch.no_grad():
        m.weight.fill_(w)
    return m


def _state(m: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_interpolate_states_mixes_floats_and_keeps_integer_buffers():
    start, trained = _state(_model(1.0)), _state(_model(3.0))
    trained["ids"] = torch.tensor([5, 6, 7])
    mixed = interpolate_states(start, trained, 0.25)
    assert mixed["weight"].item() == pytest.approx(1.5)
    assert mixed["ids"].tolist() == [5, 6, 7] and mixed["ids"].dtype == torch.int64


def _select(target: float, alphas: list[float], start_w=0.0, trained_w=1.0, **kw) -> tuple[dict, float]:
    """A dev score peaking at weight ``target`` (start 0, trained 1), on 30 "queries" that scatter
    +-0.05 around it, differently for each weight."""
    model, start = _model(trained_w), _state(_model(start_w))

    def score(m):
        value = -abs(m.weight.item() - target)
        w = m.weight.item()
        return value, [value + 0.05 * math.sin(7.3 * i + 1000 * w) for i in range(30)]

    summary = {"dev_curve": [{"step": 4, "ndcg@10": score(model)[0]}], "best_dev_ndcg@10": score(model)[0]}
    select_weights(model, score, alphas, summary, score(_model(start_w)), start, **kw)
    return summary, model.weight.item()


def test_the_interpolation_between_start_and_checkpoint_is_kept_when_dev_rates_it_best():
    summary, w = _select(0.3, [0.25, 0.5, 0.75])
    assert summary["selected"] == "interpolated" and summary["interpolation_alpha"] == 0.25
    assert w == pytest.approx(0.25)  # the written weights are the interpolation, not the checkpoint
    assert [p["alpha"] for p in summary["interpolation_curve"]] == [0.25, 0.5, 0.75]
    assert summary["best_dev_ndcg@10"] == pytest.approx(-0.05)
    assert summary["dev_curve"][0]["step"] == 0
    assert summary["dev_curve"][0]["ndcg@10"] == pytest.approx(-0.3)


def test_start_or_checkpoint_win_when_no_interpolation_beats_them():
    summary, w = _select(1.2, [0.5])  # past the checkpoint: the checkpoint is best
    assert summary["selected"] == "trained" and w == 1.0 and "interpolation_alpha" not in summary
    summary, w = _select(-0.5, [0.5])  # before the start: the start is best
    assert summary["selected"] == "start" and w == 0.0 and summary["best_checkpoint_step"] == 0
    summary, w = _select(0.5, [])  # off: a tie between start and checkpoint goes to the start
    assert summary["selected"] == "start" and "interpolation_curve" not in summary


def test_closest_keeps_the_candidate_nearest_the_start_that_dev_cannot_tell_from_the_best():
    """Dev peaks at the checkpoint (1.0): ``best`` keeps it; ``closest`` keeps the smallest alpha whose
    per-query scores are not significantly below the checkpoint's."""
    best, w = _select(1.0, [0.25, 0.5, 0.75, 0.999])
    assert best["selected"] == "trained" and w == 1.0
    near, w = _select(1.0, [0.25, 0.5, 0.75, 0.999], rule="closest")
    assert near["selected"] == "interpolated" and near["interpolation_alpha"] == 0.999
    assert w == pytest.approx(0.999)
    tests = near["selection_tests"]
    assert [t["alpha"] for t in tests] == [0.0, 0.25, 0.5, 0.75, 0.999, 1.0]
    assert [t["p_vs_best"] < 0.05 for t in tests] == [True, True, True, True, False, False]
    assert tests[-1]["p_vs_best"] == 1.0
    # a candidate nearer the start that is as good as the best is kept, whatever its rank
    near, w = _select(0.0, [0.5], rule="closest")
    assert near["selected"] == "start" and w == 0.0


def test_interpolate_is_validated():
    assert TrainConfig(interpolate=[0.5, 0.25, 0.5]).interpolate == [0.25, 0.5]
    for bad in ([0.0], [1.0], [1.5]):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            TrainConfig(interpolate=bad)


def test_the_report_says_which_variant_kept_an_interpolation():
    from relforge.artifacts import Manifest, StageRecord
    from relforge.report.render import _selection_notes

    train = {
        "plain": {"selected": "start", "start_dev_ndcg@10": 0.9, "best_dev_ndcg@10": 0.9},
        "judged": {
            "selected": "interpolated",
            "interpolation_alpha": 0.25,
            "best_checkpoint_step": 40,
            "start_dev_ndcg@10": 0.9,
            "best_dev_ndcg@10": 0.92,
        },
    }
    m = Manifest(stages={"train": StageRecord(status="done", counts=train)})
    (note,) = _selection_notes(m)
    assert "plain kept the untrained start" in note
    assert (
        "judged: weights 0.25 of the way from the start to step 40 (dev nDCG@10 0.9200 vs 0.9000 at the start)"
        in note
    )
