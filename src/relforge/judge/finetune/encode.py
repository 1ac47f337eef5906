"""Token ids of the judge's chat per pair, batching (left padded), and the frozen-bottom hidden-state cache.

With ``lora_layers=N`` only the top N decoder layers train, so the output of the frozen bottom is computed
once per pair (:func:`cache_bottom`) and a batch is then the cached hidden states (``inputs_embeds`` of the
top window) instead of token ids: :class:`Collator` builds either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.judge.finetune.data import Example, Split, query_view
from relforge.judge.finetune_config import FinetuneConfig
from relforge.judge.prompt import JudgeTemplate
from relforge.types import Document, Query

logger = logging.getLogger("relforge.judge.finetune")


@dataclass
class Encoded:
    ex: Example | None
    prompt_ids: list[int]
    completion_ids: list[int]
    hidden: Any = None  # cached output of the frozen bottom (seq, dim) when caching

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


def chat_ids(tokenizer: Any, chat: list[dict[str, str]], label: str | None) -> tuple[list[int], list[int]]:
    """Prompt ids exactly as the judge scores them; completion ids = the rest of the full chat."""
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if label is None:
        return p_ids, []
    full = tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": label}], tokenize=False)
    if not full.startswith(prompt):  # templates that rewrite the prompt: fall back to the bare label
        completion = label + (tokenizer.eos_token or "")
    else:
        completion = full[len(prompt) :].rstrip("\n")
    return p_ids, tokenizer(completion, add_special_tokens=False)["input_ids"]


def label_token_ids(tokenizer: Any, labels: list[str]) -> list[int]:
    """First token of each label as it follows the generation prompt; must be distinct."""
    ids = [tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    if len(set(ids)) != len(ids):
        raise UsageError(f"labels {labels} share their first token; use loss='lm' (setting: loss)")
    return ids


def encode_examples(
    split: Split,
    template: JudgeTemplate,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    tok: Any,
    cfg: FinetuneConfig,
    shared: bool,
) -> tuple[list[Encoded], list[Encoded], list[Encoded], int]:
    """Token ids of the judge's chat for train / validation / test pairs, and how many were too long."""
    qview = query_view({q: queries[q] for q in {e.qid for e in split.examples + split.test}}, cfg.query_field)

    def encode(e: Example, with_label: bool) -> Encoded:
        q = qview[e.qid]
        chat = template.build_chat(q, corpus[e.docid], tok, cfg.max_doc_tokens)
        p, c = chat_ids(tok, chat, template.label_of(e.grade) if with_label else None)
        return Encoded(e, p, c)

    enc_train = [encode(e, True) for e in split.train]
    enc_val = [encode(e, shared) for e in split.val]
    enc_test = [encode(e, shared) for e in split.test]
    too_long = sum(1 for x in enc_train + enc_val + enc_test if len(x.ids) > cfg.max_seq_len)
    enc_train = [x for x in enc_train if len(x.ids) <= cfg.max_seq_len]
    if too_long:
        logger.warning("%d examples longer than max_seq_len=%d were skipped", too_long, cfg.max_seq_len)
        if any(len(x.ids) > cfg.max_seq_len for x in enc_val + enc_test):
            raise DataError(
                f"validation pairs exceed max_seq_len={cfg.max_seq_len}; raise it or lower max_doc_tokens"
            )
    return enc_train, enc_val, enc_test, too_long


@dataclass
class Collator:
    """A left-padded batch of pairs: token ids, or (``hidden``) the cached frozen-bottom hidden states."""

    pad_id: int
    device: str
    hidden: bool

    def __call__(self, items: list[Encoded], with_completion: bool = True) -> dict[str, Any]:
        import torch

        seqs = [x.ids if with_completion else x.prompt_ids for x in items]
        n = max(len(s) for s in seqs)
        mask = torch.zeros(len(seqs), n, dtype=torch.long)
        for i, s in enumerate(seqs):
            mask[i, n - len(s) :] = 1
        if self.hidden:
            dim = items[0].hidden.shape[-1]
            h = torch.zeros(len(seqs), n, dim, dtype=items[0].hidden.dtype)
            for i, x in enumerate(items):
                hs = x.hidden if with_completion else x.hidden[: len(x.prompt_ids)]
                h[i, n - hs.shape[0] :] = hs
            return {"inputs_embeds": h.to(self.device), "attention_mask": mask.to(self.device)}
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, n - len(s) :] = torch.tensor(s)
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}


def _common_prefix(rows: list[list[int]]) -> list[int]:
    n = min(len(r) for r in rows)
    first = rows[0]
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    return first[:n]


def cache_bottom(
    dec: Any, items: list[Encoded], bs: int, pad_id: int, device: str, prog: Any, task: Any
) -> None:
    """Set ``x.hidden`` = output of the (windowed) frozen bottom for every item.

    The prompt prefix shared by all items (system turn, guidelines, scale) is run once and reused as a
    KV cache, so each item costs only its own tokens.
    """
    import torch

    min_len = min(len(x.ids) for x in items)
    prefix = _common_prefix([x.ids for x in items])[: min_len - 1]
    if len(prefix) < 16:
        prefix = []
    pcache, ph = None, None
    if prefix:
        o = dec(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        pcache = getattr(o, "cache", None) or getattr(o, "past_key_values", None)
        ph = o.last_hidden_state[0].detach().to("cpu")
    for start in range(0, len(items), bs):
        b = items[start : start + bs]
        rows = [x.ids[len(prefix) :] for x in b]
        hs = _bottom_batch(dec, rows, pad_id, device, pcache, len(prefix))
        for i, (x, r) in enumerate(zip(b, rows, strict=True)):
            suffix = hs[i, hs.shape[1] - len(r) :].detach().to("cpu")
            x.hidden = torch.cat([ph, suffix], 0) if ph is not None else suffix.clone()
        prog.advance(task, len(b))


def _bottom_batch(dec: Any, rows: list[list[int]], pad_id: int, device: str, pcache: Any, p: int) -> Any:
    """The frozen bottom's last hidden state of left-padded ``rows`` (after the shared prefix's KV cache)."""
    import copy
    import inspect

    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    kw: dict[str, Any] = {"use_cache": pcache is not None}
    if pcache is not None:
        params = inspect.signature(type(dec).forward).parameters
        cache = copy.deepcopy(pcache)
        cache.batch_repeat_interleave(len(rows))
        kw["cache" if "cache" in params else "past_key_values"] = cache
        kw["position_ids"] = ((mask.cumsum(-1) - 1).clamp(min=0) + p).to(device)
        mask = torch.cat([torch.ones((len(rows), p), dtype=mask.dtype), mask], 1)
    return dec(input_ids=ids.to(device), attention_mask=mask.to(device), **kw).last_hidden_state
