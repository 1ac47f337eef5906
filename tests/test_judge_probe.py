"""The hidden-state probe (relforge.judge.probe): features from a tiny random Llama, the ridge head."""

from __future__ import annotations

import numpy as np
import pytest

from relforge.errors import UsageError
from relforge.judge.probe import RidgeProbe, hidden_features, inner_cv, probe_chat, ridge_dual, select
from relforge.llm.hf import HFBackend

QUERIES = ["what causes gout", "is ibuprofen safe in pregnancy", "what causes gout"]
DOCS = [
    "Gout is caused by uric acid crystals in the joints.",
    "Short.",
    "A much longer document about diet, purines, alcohol, kidney function and the many other reasons "
    "why uric acid can build up in the blood and form crystals.",
]


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir):
    return HFBackend.load(tiny_llm_dir, batch_size=3, progress=False)


def test_hidden_features_batched_equal_one_at_a_time(tiny):
    """Rows of different lengths in one left-padded batch give the states of each row run alone."""
    batched = hidden_features(tiny, QUERIES, DOCS, prompt="judge", layers=[1, 2])
    assert batched["hidden"].shape == (3, 2, 2, 64)
    assert batched["layers"].tolist() == [1, 2]
    tiny.batch_size = 1
    try:
        alone = hidden_features(tiny, QUERIES, DOCS, prompt="judge", layers=[1, 2])
    finally:
        tiny.batch_size = 3
    np.testing.assert_allclose(batched["hidden"], alone["hidden"], atol=1e-4)
    assert not np.allclose(batched["hidden"][0], batched["hidden"][1])  # the pairs differ


def test_last_token_state_is_the_models_own(tiny):
    import torch

    feats = hidden_features(tiny, QUERIES[:1], DOCS[:1], prompt="judge", layers=[2])
    chat, cont = probe_chat("judge", QUERIES[0], DOCS[0])
    ids = torch.tensor([tiny.encode_chat(chat, continue_final=cont)])
    with torch.no_grad():
        out = tiny.model(input_ids=ids, output_hidden_states=True)
    np.testing.assert_allclose(feats["hidden"][0, 0, 0], out.hidden_states[2][0, -1].numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["hidden"][0, 1, 0], out.hidden_states[2][0].mean(0).numpy(), atol=1e-5)


def test_ql_prompt_gives_the_query_likelihood_of_judge_ql(tiny):
    from relforge.judge.ql import query_likelihood

    feats = hidden_features(tiny, QUERIES, DOCS, prompt="ql", max_doc_tokens=16)
    ref = query_likelihood(tiny, QUERIES, DOCS, max_doc_tokens=16)
    np.testing.assert_allclose(feats["ql_cond"], ref["ql_cond"], atol=1e-4)
    assert feats["layers"].tolist() == [0, 1, 2]  # default: 5 evenly spaced layers, deduplicated


def test_bad_arguments_are_refused(tiny):
    with pytest.raises(UsageError, match="unknown probe prompt"):
        probe_chat("chatty", "q", "d")
    with pytest.raises(UsageError, match="layers must be in 0..2"):
        hidden_features(tiny, QUERIES, DOCS, layers=[5])
    with pytest.raises(UsageError, match="local transformers model"):
        hidden_features(object(), QUERIES, DOCS)
    h = np.zeros((2, 2, 1, 4))
    with pytest.raises(UsageError, match=r"layers \[3\] were not extracted"):
        select(h, np.array([2]), "last", [3])


def _linear_data(n=240, d=30, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 5, size=d) + 3
    y = x[:, :3] @ np.array([1.0, -0.5, 0.2]) + rng.normal(size=n) * noise
    return x, y, np.array([f"q{i % 12}" for i in range(n)])


def test_ridge_dual_equals_scikit_learn_ridge():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    x, y, _ = _linear_data()
    z = StandardScaler().fit_transform(x)  # the kernel route centres the training subset itself
    tr, te = np.arange(0, 180), np.arange(180, 240)
    _, pred = ridge_dual(z @ z.T, y, tr, te, [0.5, 50.0])
    for j, a in enumerate([0.5, 50.0]):
        np.testing.assert_allclose(pred[:, j], Ridge(alpha=a).fit(z[tr], y[tr]).predict(z[te]), atol=1e-8)


def test_ridge_probe_learns_a_linear_signal_and_not_noise():
    from scipy.stats import kendalltau

    x, y, g = _linear_data(noise=0.5)
    probe = RidgeProbe(inner_k=4).fit(x[:180], y[:180], g[:180])
    assert kendalltau(probe.predict(x[180:]), y[180:]).statistic > 0.6
    assert probe.oof.shape == (180,) and probe.alpha < 1e4
    rng = np.random.default_rng(1)
    xn = rng.normal(size=(240, 30))
    noise = RidgeProbe(inner_k=4).fit(xn[:180], y[:180], g[:180])
    assert abs(kendalltau(noise.predict(xn[180:]), y[180:]).statistic) < 0.2


def test_inner_cv_never_scores_a_group_with_a_model_that_saw_it():
    """y is a per-group constant and the features are group one-hots: a model that saw the group would
    predict it (tau ~1); out of group it can only predict the mean of the other groups, which is lower
    the higher the held-out group's y, so the pooled out-of-fold tau is negative."""
    groups = np.array([f"q{i % 8}" for i in range(160)])
    y = np.array([int(g[1:]) for g in groups], dtype=float)
    x = np.eye(8)[[int(g[1:]) for g in groups]]
    tau, oof, bag = inner_cv(x @ x.T, y, groups, np.arange(160), 4, 0, [1e-3], extra=np.arange(4))
    assert oof.shape == (1, 160) and bag.shape == (1, 4)
    assert tau[0] < 0
    _, in_sample = ridge_dual(x @ x.T, y, np.arange(160), np.arange(160), [1e-3])
    assert kendall(in_sample[:, 0], y) > 0.9


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def _fitted_spec(tiny, layers=(1, 2)):
    """A ProbeSpec fitted on the tiny model's states of 24 made-up pairs (8 queries x 3 documents)."""
    from relforge.judge.probe import ProbeSpec

    qs = [f"question {i} about gout" for i in range(8) for _ in range(3)]
    ds = [f"document {j} on uric acid and joints, part {i}" for i in range(8) for j in range(3)]
    f = hidden_features(tiny, qs, ds, prompt="ql", layers=list(layers))
    y = np.tile([0.0, 1.0, 3.0], 8)
    ridge = RidgeProbe(alphas=[1.0, 100.0], inner_k=4).fit(select(f["hidden"], f["layers"], "last", list(layers)), y,
                                                           [q for q in qs])  # fmt: skip
    return (
        ProbeSpec.from_ridge(ridge, prompt="ql", pool="last", layers=list(layers), meta={"variant": "t"}),
        ridge,
        f,
    )


def test_probe_spec_scores_like_the_fitted_ridge_in_chunks(tiny):
    """The shipped form of a probe (rounded weights, a JSON round trip) scores pairs as the ridge it came
    from, and chunked extraction changes nothing."""
    from relforge.judge.probe import ProbeSpec

    spec, ridge, f = _fitted_spec(tiny)
    spec = ProbeSpec.model_validate_json(spec.model_dump_json())
    assert spec.meta["variant"] == "t" and spec.meta["alpha"] == ridge.alpha and len(spec.coef) == 2 * 64
    direct = ridge.predict(select(f["hidden"], f["layers"], "last", [1, 2]))
    np.testing.assert_allclose(spec.predict(f["hidden"], f["layers"]), direct, atol=1e-4)  # 7-digit weights
    qs, ds = QUERIES * 3, DOCS * 3
    whole = spec.score(tiny, qs, ds, chunk=100)
    np.testing.assert_allclose(spec.score(tiny, qs, ds, chunk=2), whole, atol=1e-4)
    assert np.ptp(whole[:3]) > 0  # different pairs, different scores


def test_probe_spec_refuses_a_mismatched_model_and_bad_weights(tiny):
    from pydantic import ValidationError

    from relforge.judge.probe import ProbeSpec

    spec, _, f = _fitted_spec(tiny, layers=(1,))
    with pytest.raises(UsageError, match="layers \\[2\\] were not extracted"):
        spec.model_copy(update={"layers": [2]}).predict(f["hidden"], f["layers"])
    wide = spec.model_copy(update={"layers": [1, 2]})  # twice the features the weights expect
    f2 = hidden_features(tiny, QUERIES, DOCS, prompt="ql", layers=[1, 2])
    with pytest.raises(UsageError, match="expects 64 features, the model's states give 128"):
        wide.predict(f2["hidden"], f2["layers"])
    with pytest.raises(ValidationError, match="one equal, non-zero length"):
        ProbeSpec(layers=[1], mean=[0.0], scale=[1.0, 1.0], coef=[1.0], intercept=0.0)
