"""Query likelihood: how much a document makes an LLM expect the query (a judge feature).

For a pair (q, d) the model is teacher-forced on the chat
``user: "Answer:\\n{d}\\n\\nWrite the question that this answer answers."``, ``assistant: "{q}"`` and the
mean log-probability of the query tokens is read (``ql_cond``). The same with the document replaced by
``(none)`` gives the query's prior under the instruction (``ql_prior``, one pass per query);
``ql_pmi = ql_cond - ql_prior`` is the pointwise mutual information of query and document per query
token — what the document adds, with the query's own predictability removed (cf. "query likelihood"
ranking, Ponte & Croft 1998; Sachan et al. 2022 "Improving passage retrieval with zero-shot question
generation").

Only the local transformers backend (:class:`relforge.llm.hf.HFBackend`) exposes the per-token
log-probabilities this needs; one forward pass per pair, batched and length-sorted like ``score_choices``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relforge.errors import UsageError

QL_INSTRUCTION = "Write the question that this answer answers."
NO_DOC = "(none)"


def _chat(doc_text: str, query: str, instruction: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"Answer:\n{doc_text}\n\n{instruction}"},
        {"role": "assistant", "content": query},
    ]


def truncate_tokens(tokenizer: Any, text: str, max_tokens: int | None) -> str:
    """The first ``max_tokens`` tokens of ``text`` (decoded back); unchanged when short enough or None."""
    if not max_tokens:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def continuation_logprobs(llm: Any, chats: Sequence[list[dict[str, str]]]) -> list[list[float]]:
    """Log-prob of each token of every chat's final (assistant) message given everything before it.

    Args:
        llm: an :class:`~relforge.llm.hf.HFBackend` (other backends do not expose prompt log-probs).
        chats: chats whose last message is the assistant text to score.

    Returns:
        One list of per-token log-probs per chat (the assistant message's tokens, in order).
    """
    if not hasattr(llm, "_forward_rows") or not hasattr(llm, "encode_chat"):
        raise UsageError(
            f"query likelihood needs a local transformers model (--llm smollm2, hf:PATH); "
            f"{getattr(llm, 'name', type(llm).__name__)} gives no prompt log-probs"
        )
    tok = llm.tokenizer
    rows = [llm.encode_chat(c, continue_final=True) for c in chats]
    n_tail = [max(1, len(tok(c[-1]["content"], add_special_tokens=False)["input_ids"])) for c in chats]
    for r, n in zip(rows, n_tail, strict=True):
        if n >= len(r):
            raise UsageError(f"continuation of {n} tokens leaves no prompt (row of {len(r)} tokens)")
    keep = max(n_tail) + 1
    out: list[list[float]] = [[] for _ in rows]

    def consume(idx: list[int], lp: Any) -> None:
        for b, i in enumerate(idx):
            n = n_tail[i]
            targets = rows[i][-n:]
            # position keep-1 predicts the token after the row; keep-1-n .. keep-2 predict the last n
            pos = range(keep - 1 - n, keep - 1)
            out[i] = [float(lp[b, p, t]) for p, t in zip(pos, targets, strict=True)]

    llm._forward_rows(rows, keep, consume, "ql")
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def query_likelihood(
    llm: Any,
    queries: Sequence[str],
    docs: Sequence[str],
    *,
    max_doc_tokens: int | None = 128,
    instruction: str = QL_INSTRUCTION,
) -> dict[str, list[float]]:
    """QL features of aligned (query, document text) pairs.

    Returns:
        ``{"ql_cond": [...], "ql_prior": [...], "ql_pmi": [...]}``: mean per-token log p(q | d), mean
        log p(q | no document), and their difference, one value per pair.
    """
    if len(queries) != len(docs):
        raise UsageError(f"need as many queries as documents, got {len(queries)} and {len(docs)}")
    cut = [truncate_tokens(llm.tokenizer, d, max_doc_tokens) for d in docs]
    cond = [
        _mean(x)
        for x in continuation_logprobs(
            llm, [_chat(d, q, instruction) for q, d in zip(queries, cut, strict=True)]
        )
    ]
    uniq = sorted(set(queries))
    prior_of = dict(
        zip(
            uniq,
            (_mean(x) for x in continuation_logprobs(llm, [_chat(NO_DOC, q, instruction) for q in uniq])),
            strict=True,
        )
    )
    prior = [prior_of[q] for q in queries]
    return {"ql_cond": cond, "ql_prior": prior, "ql_pmi": [c - p for c, p in zip(cond, prior, strict=True)]}
