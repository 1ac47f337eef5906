"""A scoring head on a frozen LLM's hidden states (a RankLLaMA-style probe, without the LoRA).

For every (query, document) pair the local transformers model reads one prompt and the hidden states
of a few layers are kept: the last token's (``last``) and the mean over the real tokens (``mean``).
A ridge regression on the standardised states, its strength chosen by an inner cross-validation by
query on the training pairs only, maps them to a relevance score (Ma et al. 2023, "Fine-tuning LLaMA
for multi-stage text retrieval", score a linear head on the last token; here the LLM stays frozen).

Prompts (``prompt=``):

- ``judge``: user ``Query: {q}\\n\\nDocument:\\n{d}\\n\\n{JUDGE_QUESTION}`` and the assistant turn opened,
  so the last token is where the model would write its verdict;
- ``ql``: the query-likelihood chat of :mod:`relforge.judge.ql` (document first, the query as the
  assistant's answer), so the same forward pass also gives ``ql_cond`` (mean log p of the query tokens).

Only :class:`relforge.llm.hf.HFBackend` exposes hidden states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from relforge.errors import UsageError
from relforge.judge.ql import QL_INSTRUCTION, truncate_tokens

JUDGE_QUESTION = "How well does the document answer the query? Grade it from 0 (irrelevant) to 3 (perfect)."
PROMPTS = ("judge", "ql")
POOLS = ("last", "mean")


def probe_chat(prompt: str, query: str, doc: str) -> tuple[list[dict[str, str]], bool]:
    """The chat of one pair and whether its final (assistant) message is continued."""
    if prompt == "judge":
        return [{"role": "user", "content": f"Query: {query}\n\nDocument:\n{doc}\n\n{JUDGE_QUESTION}"}], False
    if prompt == "ql":
        return [
            {"role": "user", "content": f"Answer:\n{doc}\n\n{QL_INSTRUCTION}"},
            {"role": "assistant", "content": query},
        ], True
    raise UsageError(f"unknown probe prompt {prompt!r}; known: {list(PROMPTS)}")


def _backend(llm: Any) -> Any:
    while "llm" in getattr(llm, "__dict__", {}):  # unwrap the caching layer
        llm = vars(llm)["llm"]
    if not hasattr(llm, "encode_chat") or not hasattr(llm, "_left_pad"):
        raise UsageError(
            f"hidden-state features need a local transformers model (--llm smollm2, hf:PATH); "
            f"{getattr(llm, 'name', type(llm).__name__)} does not expose them"
        )
    return llm


def _consume(out: Any, mask: Any, layers: Sequence[int], keep_q: list[int], ids: Any) -> tuple[Any, list]:
    """(n, 2, L, d) pooled states of one batch, and the mean log p of the last keep_q[b] tokens."""
    import torch

    m = mask.unsqueeze(-1).to(out.hidden_states[0].dtype)
    pooled = []
    for layer in layers:
        h = out.hidden_states[layer].float()
        pooled.append(torch.stack([h[:, -1, :], (h * m).sum(1) / m.sum(1)], 1))
    feats = torch.stack(pooled, 2)  # (b, pool, layer, d)
    ql = []
    if out.logits is not None and any(keep_q):
        lp = torch.log_softmax(out.logits.float(), -1)  # (b, keep, vocab) of the last positions
        keep = lp.shape[1]
        for b, n in enumerate(keep_q):
            tgt = ids[b, -n:]
            pos = torch.arange(keep - 1 - n, keep - 1)
            ql.append(float(lp[b, pos, tgt].mean()))
    return feats, ql


def hidden_features(
    llm: Any,
    queries: Sequence[str],
    docs: Sequence[str],
    *,
    prompt: str = "judge",
    layers: Sequence[int] | None = None,
    max_doc_tokens: int | None = 128,
) -> dict[str, np.ndarray]:
    """Hidden-state features of aligned (query, document text) pairs.

    Args:
        llm: an :class:`~relforge.llm.hf.HFBackend` (or its caching wrapper).
        prompt: ``judge`` or ``ql`` (see the module doc).
        layers: indices into the model's ``hidden_states`` (0 = embeddings; default: 5 evenly spaced
            layers ending with the last).
        max_doc_tokens: documents are cut to this many tokens first.

    Returns:
        ``{"hidden": (n, 2, L, d) float32 array (pool ``last``/``mean`` x layer x dim), "layers": (L,)}``
        and, for ``prompt="ql"``, ``"ql_cond"``: (n,) mean log-prob of the query tokens.
    """
    import torch

    if len(queries) != len(docs):
        raise UsageError(f"need as many queries as documents, got {len(queries)} and {len(docs)}")
    be = _backend(llm)
    n_layers = int(be.model.config.num_hidden_layers)
    layers = list(layers) if layers else sorted({round(n_layers * f) for f in (0.2, 0.4, 0.6, 0.8, 1.0)})
    if min(layers) < 0 or max(layers) > n_layers:
        raise UsageError(f"layers must be in 0..{n_layers}, got {layers}")
    rows, n_tail = [], []
    for q, d in zip(queries, docs, strict=True):
        chat, cont = probe_chat(prompt, q, truncate_tokens(be.tokenizer, d, max_doc_tokens))
        rows.append(be.encode_chat(chat, continue_final=cont))
        n_tail.append(len(be.tokenizer(q, add_special_tokens=False)["input_ids"]) if cont else 0)
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]), i))
    hidden: np.ndarray | None = None
    ql = np.zeros(len(rows), dtype=np.float64)
    with be._inference():
        for start in range(0, len(order), be.batch_size):
            idx = order[start : start + be.batch_size]
            ids, mask = be._left_pad([rows[i] for i in idx])
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(n_tail[i] for i in idx) + 1
            out = be.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                output_hidden_states=True,
                logits_to_keep=keep,
            )
            feats, lq = _consume(out, mask, layers, [n_tail[i] for i in idx], ids)
            if hidden is None:
                hidden = np.zeros((len(rows), *feats.shape[1:]), dtype=np.float32)
            hidden[idx] = feats.numpy()
            if lq:
                ql[idx] = lq
            del out
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    res = {"hidden": hidden, "layers": np.asarray(layers)}
    if prompt == "ql":
        res["ql_cond"] = ql
    return res


def select(hidden: np.ndarray, layers: np.ndarray, pool: str, use: Sequence[int]) -> np.ndarray:
    """The (n, len(use) * d) feature matrix of the chosen pooling and layers (concatenated)."""
    if pool not in POOLS:
        raise UsageError(f"pool must be one of {list(POOLS)}, got {pool!r}")
    at = {int(v): i for i, v in enumerate(layers.tolist())}
    missing = [u for u in use if u not in at]
    if missing:
        raise UsageError(f"layers {missing} were not extracted (have {sorted(at)})")
    p = POOLS.index(pool)
    return np.concatenate([hidden[:, p, at[u], :] for u in use], 1)


ALPHAS = tuple(float(a) for a in np.logspace(0, 7, 15))


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    t = kendalltau(a, b, variant="b").statistic
    return float(t) if np.isfinite(t) else 0.0


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale (zero-variance columns get scale 1)."""
    mu, sd = x.mean(0), x.std(0)
    sd[sd < 1e-8] = 1.0
    return mu, sd


def ridge_dual(gram: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, alphas: Sequence[float]):
    """Ridge regression with an unpenalised intercept from a linear-kernel gram ``X X^T``.

    Returns ``(dual (len(alphas), n_tr), predictions on te (n_te, len(alphas)))``; the primal weights
    are ``Xc_tr^T dual`` with ``Xc_tr`` the training rows centred on their mean. Centering is done
    on the kernel, so any subset of a gram computed once serves every inner fold.
    """
    k = gram[np.ix_(tr, tr)]
    kt = gram[np.ix_(te, tr)]
    cm = k.mean(0)
    kc = k - cm[None, :] - cm[:, None] + cm.mean()
    ktc = kt - kt.mean(1)[:, None] - cm[None, :] + cm.mean()
    lam, q = np.linalg.eigh(kc)
    lam = np.clip(lam, 0.0, None)
    qty = q.T @ (y[tr] - y[tr].mean())
    dual = np.stack([q @ (qty / (lam + a)) for a in alphas])
    return dual, ktc @ dual.T + y[tr].mean()


def inner_cv(
    gram: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    k: int,
    seed: int,
    alphas: Sequence[float],
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inner K-fold CV by group over ``rows``.

    Returns ``(tau, oof, bag)``: pair tau_b of the pooled out-of-fold scores per alpha (pooled, so a
    fold-to-fold offset of the scores counts against an alpha: the scores feed a head fitted on all
    rows), the out-of-fold scores (len(alphas), len(rows)), and the mean of the K inner models'
    scores of the ``extra`` rows (len(alphas), len(extra)) — the same scale as ``oof``.
    """
    uq = sorted(set(groups[rows].tolist()))
    if len(uq) < k:
        raise UsageError(f"inner CV needs >= {k} groups, got {len(uq)}")
    rng = np.random.default_rng(seed)
    rng.shuffle(uq)
    fold_of = {q: i % k for i, q in enumerate(uq)}
    f = np.array([fold_of[q] for q in groups[rows].tolist()])
    extra = np.zeros(0, dtype=int) if extra is None else np.asarray(extra)
    oof = np.zeros((len(alphas), len(rows)))
    bag = np.zeros((len(alphas), len(extra)))
    for i in range(k):
        tr, te = rows[f != i], rows[f == i]
        _, pred = ridge_dual(gram, y, tr, np.concatenate([te, extra]), alphas)
        oof[:, f == i] = pred[: len(te)].T
        bag += pred[len(te) :].T / k
    return np.array([_tau(o, y[rows]) for o in oof]), oof, bag


class RidgeProbe:
    """Standardise -> ridge regression on the grade; ``alpha`` picked by inner K-fold CV by group.

    After :meth:`fit`: ``alpha``, ``inner`` (pooled inner out-of-fold pair tau_b per alpha), ``oof`` (the inner
    out-of-fold scores of the training rows at the chosen alpha: an honest training feature for a
    calibration head stacked on top), ``mean``/``scale``/``coef``/``intercept`` (primal weights).
    The inner folds reuse the standardisation of all training rows (unsupervised statistics only).
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS, inner_k: int = 4, seed: int = 0):
        self.alphas, self.inner_k, self.seed = list(alphas), int(inner_k), int(seed)

    def fit(self, x: np.ndarray, y: Sequence[float], groups: Sequence[str]) -> RidgeProbe:
        x, yv, g = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
        self.mean, self.scale = standardise(x)
        z = (x - self.mean) / self.scale
        gram = z @ z.T
        rows = np.arange(len(yv))
        self.inner, oof, _ = inner_cv(gram, yv, g, rows, self.inner_k, self.seed, self.alphas)
        best = int(np.argmax(self.inner))
        self.alpha, self.oof = self.alphas[best], oof[best]
        dual, _ = ridge_dual(gram, yv, rows, rows[:1], [self.alpha])
        self.coef = (z - z.mean(0)).T @ dual[0]
        self.intercept = float(yv.mean() - z.mean(0) @ self.coef)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept


class ProbeSpec(BaseModel):
    """A fitted probe as a preset ships it: which states of which prompt, and the ridge weights.

    :meth:`score` reads the pairs through the preset's LLM (:func:`hidden_features`, in chunks so the
    states of a large pool never sit in memory at once) and returns one relevance score per pair.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: Literal["judge", "ql"] = "ql"
    pool: Literal["last", "mean"] = "last"
    #: indices into the model's ``hidden_states`` (0 = embeddings), concatenated in this order
    layers: list[int]
    max_doc_tokens: int | None = 128
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    #: provenance: ridge alpha, inner-CV tau_b, the variant menu it was chosen from
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _same_width(self) -> ProbeSpec:
        if not (len(self.mean) == len(self.scale) == len(self.coef)) or not self.coef:
            raise ValueError(
                f"probe mean/scale/coef must have one equal, non-zero length, got "
                f"{len(self.mean)}/{len(self.scale)}/{len(self.coef)}"
            )
        return self

    @classmethod
    def from_ridge(cls, ridge: RidgeProbe, *, digits: int = 7, **spec: Any) -> ProbeSpec:
        """The spec of a fitted :class:`RidgeProbe` (weights rounded to ``digits`` significant digits)."""

        def r(v: np.ndarray) -> list[float]:
            return [float(f"{x:.{digits}g}") for x in np.asarray(v, dtype=np.float64)]

        meta = {
            "alpha": ridge.alpha,
            "inner_tau_b": round(float(np.max(ridge.inner)), 4),
            **spec.pop("meta", {}),
        }
        return cls(
            mean=r(ridge.mean), scale=r(ridge.scale), coef=r(ridge.coef), intercept=float(ridge.intercept),
            meta=meta, **spec,
        )  # fmt: skip

    def predict(self, hidden: np.ndarray, layers: np.ndarray) -> np.ndarray:
        """Scores from :func:`hidden_features`' ``hidden``/``layers`` arrays."""
        x = select(hidden, np.asarray(layers), self.pool, self.layers).astype(np.float64)
        if x.shape[1] != len(self.coef):
            raise UsageError(
                f"the probe expects {len(self.coef)} features, the model's states give {x.shape[1]} "
                "(a probe fitted for another LLM?)"
            )
        return ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef) + self.intercept

    def score(self, llm: Any, queries: Sequence[str], docs: Sequence[str], chunk: int = 256) -> np.ndarray:
        """One score per aligned (query, document text) pair."""
        out = np.zeros(len(queries), dtype=np.float64)
        for s in range(0, len(queries), chunk):
            f = hidden_features(
                llm, queries[s : s + chunk], docs[s : s + chunk], prompt=self.prompt, layers=self.layers,
                max_doc_tokens=self.max_doc_tokens,
            )  # fmt: skip
            out[s : s + chunk] = self.predict(f["hidden"], f["layers"])
        return out
