"""Local transformers backend: hub id, local folder or ``.gguf`` file, optional PEFT LoRA adapter.

- dtype/device auto: bf16 on a GPU that supports it, fp32 on CPU.
- Batches are length-sorted (longest first) and left-padded; position ids follow the padding, so a
  batched call gives the same numbers as one chat at a time (up to float noise).
- GGUF files are dequantised by transformers (~15-30 s on 2 cores); the result is saved once as a plain
  HF folder under ``$RELFORGE_HOME/models/<hash>`` (default ``~/.cache/relforge/models``), written to
  a temporary folder and renamed, so later loads take ~1-2 s.
- ``score_choices`` is prefill only: one forward pass per batch when every choice is a single token,
  otherwise one row per (chat, choice) with the choice tokens' log-probs summed. With
  ``prefix_sharing=True`` the longest token prefix shared by all prompts of a call is run once and its
  KV cache reused for every batch (judge prompts share a long instruction block).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from relforge.errors import ModelNotFoundError, RelforgeError, UsageError
from relforge.llm._util import check_chat as _check_chat
from relforge.llm._util import check_choices as _check_choices
from relforge.llm.base import CacheStats, Chat, Completion, GenParams
from relforge.llm.cache import relforge_home
from relforge.llm.progress import progress_bar
from relforge.models import NAMED_MODELS, resolve_model, split_gguf
from relforge.precision import DTYPE_ALIASES, PrecisionPlan, apply_precision, model_precision, plan_precision

OnResult = Callable[[int, Any, int, int], None]
PLAIN = "plain"
_CONVERTED_MARKER = "relforge-converted.json"


def plain_chat(chat: Chat) -> str:
    """The explicit ``chat_template="plain"`` format for models without a chat template.

    ``Role: content`` blocks separated by blank lines, ending with ``Assistant:`` and a newline.
    """
    parts = [f"{m['role'].strip().capitalize()}: {m['content']}" for m in chat]
    return "\n\n".join(parts) + "\n\nAssistant:\n"


def _fingerprint(path: str | os.PathLike) -> str:
    """Identity of local model files for cache keys: content hash of small files, size+mtime of big ones."""
    p = Path(path)
    if not p.exists():
        return "hub"
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|".encode())
        if st.st_size <= 64 * 2**20:
            h.update(f.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def converted_gguf_dir(gguf_path: str | os.PathLike) -> Path:
    """Where the plain-HF copy of a GGUF file lives: ``<relforge_home()>/models/<hash>``."""
    import transformers

    src = Path(gguf_path).resolve()
    st = src.stat()
    raw = f"{src}|{st.st_size}|{st.st_mtime_ns}|transformers={transformers.__version__}"
    return relforge_home() / "models" / hashlib.sha256(raw.encode()).hexdigest()[:16]


def load_gguf(gguf_path: str | os.PathLike, *, convert: bool = True):
    """Load a GGUF model and tokenizer, converting it once to a cached plain HF folder.

    Args:
        gguf_path: the ``.gguf`` file.
        convert: save (first time) / load (later) the converted folder; False always dequantises.

    Returns:
        ``(model, tokenizer, converted_dir_or_None)``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path)
    if not src.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {src}")
    out = converted_gguf_dir(src) if convert else None
    if out is not None and (out / _CONVERTED_MARKER).is_file():
        tok = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_pretrained(out, dtype="float32")
        return model, tok, out
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # the dequantised weights are plain fp32: drop the GGUF quantizer so save/load treat it as a normal model
    model.hf_quantizer = None
    model.is_quantized = False  # else `.float()`/`.to(dtype)` refuse the (already fp32) model
    if getattr(model.config, "quantization_config", None) is not None:
        delattr(model.config, "quantization_config")
    if out is None:
        return model, tok, None
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _CONVERTED_MARKER).write_text(json.dumps({"source": str(src.resolve())}) + "\n")
        os.rename(tmp, out)  # atomic; fails if another process finished first, which is fine
        tmp = None
    except OSError:
        pass  # no space / read-only / lost a race: keep working from memory
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return model, tok, out if (out / _CONVERTED_MARKER).is_file() else None


def _auto_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _plan(device: str, dtype: str, precision: str | None, autocast: bool | None) -> PrecisionPlan:
    """``precision`` wins; without it the older ``dtype`` setting decides (``auto`` = bf16/fp16 on GPU, fp32
    on CPU: relforge's behaviour before ``precision`` existed; ``bfloat16`` = bf16 weights). ``autocast``
    None = cast the weights (autocast measured neither reliably faster nor better on CPU: docs/precision.md)."""
    if precision is None:
        if dtype == "auto":
            precision = "auto" if device.startswith("cuda") else "fp32"
        else:
            precision = DTYPE_ALIASES.get(dtype, dtype)
    return plan_precision(precision, device, autocast=bool(autocast))


class HFBackend:
    """A transformers causal LM behind the :class:`~relforge.llm.base.LLM` interface.

    Build it with :meth:`load` (from a path / hub id / GGUF) or :meth:`from_model` (an in-memory model).

    Args:
        model: a ``PreTrainedModel`` (or PEFT model) for causal LM.
        tokenizer: its tokenizer.
        name: identity shown in outputs (e.g. ``hf:smollm2``).
        cache_id: identity used in cache keys (defaults to ``name``).
        batch_size: chats (generate) or rows (score) per forward pass.
        chat_template: None = the tokenizer's own template; ``"plain"`` = :func:`plain_chat`; any other
            string is used as a Jinja chat template.
        prefix_sharing: run the prompt prefix shared by all chats of a ``score_choices`` call once.
        min_prefix_tokens: shorter shared prefixes are not worth it and are ignored.
        progress: draw a rich progress bar for calls longer than one batch.
        precision: the :class:`~relforge.precision.PrecisionPlan` the model was put in (its autocast context
            wraps every forward pass); None = observed from the weights, no autocast.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "hf:in-memory",
        cache_id: str | None = None,
        batch_size: int = 8,
        chat_template: str | None = None,
        prefix_sharing: bool = False,
        min_prefix_tokens: int = 16,
        progress: bool = True,
        precision: PrecisionPlan | None = None,
    ):
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.cache_id = cache_id or name
        self.batch_size = int(batch_size)
        self.chat_template = chat_template
        self.prefix_sharing = bool(prefix_sharing)
        self.min_prefix_tokens = int(min_prefix_tokens)
        self.progress = progress
        self.stats = CacheStats()
        if (
            precision is None
        ):  # observed from the weights, never refused (an fp16 model on CPU is the caller's)
            seen = model_precision(model)
            precision = PrecisionPlan(
                seen, seen if seen in ("fp32", "bf16", "fp16", "int8") else "fp32", _device_of(model)
            )
        self.precision = precision
        self._prefix_memo: tuple[Any, Any] | None = None
        self._score_attn = ""  # attention implementation of scoring calls (set by load on bf16 CPU)
        eos = getattr(model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids: set[int] = set(
            eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        )
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(sorted(self.eos_ids)), 0)
        self.pad_id = int(pad)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(type(base).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._has_logits_to_keep = "logits_to_keep" in params
        cfg = getattr(base, "config", None)
        self.max_positions = getattr(cfg, "max_position_embeddings", None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model: str,
        *,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        precision: str | None = None,
        autocast: bool | None = None,
        convert_gguf: bool = True,
        **kw: Any,
    ) -> HFBackend:
        """Load a model by hub id, local folder, ``dir/file.gguf`` or named default (``smollm2``).

        Args:
            model: what to load.
            adapter: optional PEFT LoRA adapter folder; merged into the weights for fast inference.
            device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda:0``...
            dtype: older setting, used when ``precision`` is None: ``auto`` (bf16 on GPU, fp32 on CPU),
                ``float32``, ``bfloat16``, ``float16``.
            precision: ``auto | fp32 | bf16 | fp16 | int8`` (see :mod:`relforge.precision`): ``auto`` is bf16
                on a CPU with AVX-512 BF16/AMX. The model is loaded in fp32, the adapter merged, then cast
                (or run under autocast) or quantised (int8: the merged Linear layers; ``lm_head`` stays float).
            autocast: bf16/fp16 via ``torch.autocast`` over fp32 weights instead of casting the weights
                (None/False: cast; see docs/precision.md for the measurements).
            convert_gguf: cache GGUF files as plain HF folders (see :func:`load_gguf`).
            **kw: passed to the constructor (batch_size, chat_template, prefix_sharing, progress...).

        Returns:
            The backend.
        """
        named = model.lower() in NAMED_MODELS
        path = resolve_model(model)
        device = _auto_device(device)
        plan = _plan(device, dtype, precision, autocast)
        # cast/quantise after loading and merging: fp32 on CPU (merging LoRA in bf16 would round the
        # delta), the target dtype on GPU (big models)
        load_dtype = plan.torch_dtype if device.startswith("cuda") and plan.resolved != "int8" else None
        mdl, tok = _load_model(model, path, load_dtype, convert_gguf)
        ident = (
            f"hf:{model.lower()}"
            if named
            else f"hf:{os.path.abspath(path) if os.path.exists(path) else path}"
        )
        cache_id = f"{ident}|{_fingerprint(path)}|{plan.dtype_name}"
        if plan.key() not in ("fp32", "bf16", "fp16"):  # the weights' dtype alone does not say it
            cache_id += f"|precision={plan.key()}"
        if adapter:
            mdl = _apply_adapter(mdl, adapter)
            ident += f"+lora:{os.path.abspath(adapter)}"
            cache_id += f"|lora={_fingerprint(adapter)}"
        ct = kw.get("chat_template")
        if ct:
            cache_id += "|template=" + (
                PLAIN if ct == PLAIN else hashlib.sha256(ct.encode()).hexdigest()[:12]
            )
        mdl, plan = apply_precision(mdl, plan, device=device)
        score_attn = _cpu_fast_path(mdl, plan)
        if score_attn:
            cache_id += f"|score-attn={score_attn}"
        mdl.eval()
        kw["precision"] = plan
        backend = cls(mdl, tok, name=ident, cache_id=cache_id, **kw)
        backend._score_attn = score_attn
        return backend

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str = "hf:in-memory", **kw: Any) -> HFBackend:
        """Wrap an in-memory model (e.g. a PEFT model being fine-tuned). No cache is involved; the
        model's train/eval mode is restored after every call.

        Args:
            model: causal LM (``PreTrainedModel`` or ``PeftModel``).
            tokenizer: its tokenizer.
            name: identity shown in outputs.
            **kw: constructor options (batch_size, chat_template, prefix_sharing, progress...).
        """
        return cls(model, tokenizer, name=name, **kw)

    # ------------------------------------------------------------------ helpers
    def describe(self) -> dict[str, Any]:
        """What outputs record about this backend: ``backend``, ``model``, ``device`` and the precision
        (``precision``, ``precision_requested``, ``dtype``, ``autocast``)."""
        return {"backend": "hf", "model": self.name, "device": str(self.device), **self.precision.metadata()}

    @property
    def device(self):
        return next(self.model.parameters()).device

    def format_chat(self, chat: Chat, *, continue_final: bool = False) -> str:
        """The exact prompt text for a chat, ending with the assistant turn opener; with
        ``continue_final=True`` the chat's last (assistant) message is left open instead, so the prompt ends
        with its text (a prefilled reply, as vLLM's ``continue_final_message``)."""
        _check_chat(chat)
        if self.chat_template == PLAIN:
            if continue_final:
                return plain_chat(chat[:-1]) + chat[-1]["content"]
            return plain_chat(chat)
        if not self.chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise RelforgeError(
                f'model {self.name} has no chat template; pass chat_template="plain" (load_llm(..., '
                f"chat_template='plain')) for a plain 'Role: text' prompt, or a Jinja template string."
            )
        return self.tokenizer.apply_chat_template(
            chat,
            tokenize=False,
            add_generation_prompt=not continue_final,
            continue_final_message=continue_final,
            chat_template=self.chat_template or None,
        )

    def encode_chat(self, chat: Chat, *, continue_final: bool = False) -> list[int]:
        """Token ids of :meth:`format_chat` (special tokens come from the template itself)."""
        text = self.format_chat(chat, continue_final=continue_final)
        ids = self.tokenizer(text, add_special_tokens=self.chat_template == PLAIN)["input_ids"]
        if self.max_positions and len(ids) >= self.max_positions:
            raise RelforgeError(
                f"prompt of {len(ids)} tokens exceeds the context of {self.name} ({self.max_positions} "
                f"positions); shorten the documents (judge: max_doc_tokens)."
            )
        return list(ids)

    def _encode_choice(self, choice: str) -> list[int]:
        ids = list(self.tokenizer(choice, add_special_tokens=False)["input_ids"])
        if not ids:
            raise UsageError(f"choice {choice!r} tokenizes to nothing; use non-empty label strings")
        return ids

    @contextmanager
    def _inference(self) -> Iterator[None]:
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.precision.context():
                yield
        finally:
            if was_training:
                self.model.train()

    def _left_pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ generate
    def _generation_config(self, params: GenParams):
        gc = copy.deepcopy(self.model.generation_config)
        gc.max_new_tokens = int(params.max_new_tokens)
        gc.max_length = None
        gc.do_sample = params.temperature > 0
        if gc.do_sample:
            gc.temperature = float(params.temperature)
            gc.top_p = float(params.top_p)
            gc.top_k = None
        else:
            gc.temperature = gc.top_p = gc.top_k = None
        gc.pad_token_id = self.pad_id
        gc.eos_token_id = sorted(self.eos_ids) or None
        gc.stop_strings = list(params.stop) or None
        gc.use_cache = True
        return gc

    def generate(
        self, chats: list[Chat], params: GenParams | None = None, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """Generate one completion per chat (greedy when ``temperature == 0``).

        Args:
            chats: the chats.
            params: generation parameters; ``seed`` seeds sampling per batch.
            on_result: called as ``on_result(i, completion, prompt_tokens, completion_tokens)`` as soon as
                chat ``i`` is finished (the cache commits there).

        Returns:
            Completions in the order of ``chats``; ``finish_reason`` is ``stop`` (EOS or a stop string)
            or ``length``.
        """
        import torch

        params = params or GenParams()
        if params.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}")
        prompts = [self.encode_chat(c) for c in chats]
        order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
        gc = self._generation_config(params)
        results: list[Completion | None] = [None] * len(prompts)
        stop_ids = self.eos_ids | {self.pad_id}
        with (
            self._inference(),
            progress_bar(
                len(prompts), "generate", enabled=self.progress, min_total=self.batch_size + 1
            ) as advance,
        ):
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                ids, mask = self._left_pad([prompts[i] for i in idx])
                if gc.do_sample:
                    torch.manual_seed(params.seed)
                extra = {"tokenizer": self.tokenizer} if gc.stop_strings else {}
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gc, **extra)
                new = out[:, ids.shape[1] :].tolist()
                for row, i in zip(new, idx, strict=False):
                    cut = next((j for j, t in enumerate(row) if t in stop_ids), None)
                    toks = row if cut is None else row[:cut]
                    n_gen = len(row) if cut is None else cut + 1
                    text = self.tokenizer.decode(toks, skip_special_tokens=True)
                    reason = "length" if cut is None else "stop"
                    hits = [text.find(s) for s in params.stop if s and s in text]
                    if hits:
                        text, reason = text[: min(hits)], "stop"
                    comp = Completion(text, len(prompts[i]), n_gen, reason)
                    results[i] = comp
                    self.stats.misses += 1
                    self.stats.prompt_tokens += comp.prompt_tokens
                    self.stats.completion_tokens += comp.completion_tokens
                    if on_result:
                        on_result(i, comp, comp.prompt_tokens, comp.completion_tokens)
                advance(len(idx))
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ prefill scoring
    def _prefix_cache(self, prefix: list[int]):
        # keyed by the tokens AND the parameters' in-place version counters: a model being fine-tuned
        # (from_model) gets a fresh prefix KV cache after every optimizer step
        key = (tuple(prefix), sum(p._version for p in self.model.parameters()))
        if self._prefix_memo is not None and self._prefix_memo[0] == key:
            return self._prefix_memo[1]
        import torch

        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, use_cache=True)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        self._prefix_memo = (key, cache)
        return cache

    def _forward_rows(
        self, rows: list[list[int]], keep: int, consume: Callable[[list[int], Any], None], label: str
    ) -> None:
        """Run ``rows`` in length-sorted left-padded batches; ``consume(row_indices, logprobs)`` gets the
        log-softmax of the last ``keep`` positions of each row, shape (batch, keep, vocab)."""
        import torch

        prefix: list[int] = []
        if self.prefix_sharing and len(rows) > 1:
            prefix = _common_prefix(rows)[: min(len(r) for r in rows) - 1]
            if len(prefix) < self.min_prefix_tokens:
                prefix = []
        self.stats.extra["shared_prefix_tokens"] = len(prefix)
        order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]), i))
        with (
            self._inference(),
            _attention(self.model, self._score_attn),
            progress_bar(len(rows), label, enabled=self.progress, min_total=self.batch_size + 1) as advance,
        ):
            pcache = self._prefix_cache(prefix) if prefix else None
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                ids, mask = self._left_pad([rows[i][len(prefix) :] for i in idx])
                pos = (mask.cumsum(-1) - 1).clamp(min=0) + len(prefix)
                kw: dict[str, Any] = {"use_cache": pcache is not None}
                if pcache is not None:
                    cache = copy.deepcopy(pcache)
                    cache.batch_repeat_interleave(len(idx))
                    kw[self._cache_kw] = cache
                    mask = torch.cat(
                        [torch.ones((len(idx), len(prefix)), dtype=mask.dtype, device=mask.device), mask], 1
                    )
                if self._has_logits_to_keep:
                    kw["logits_to_keep"] = keep
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw)
                logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1)
                consume(idx, logprobs)
                advance(len(idx))

    def score_choices(
        self, chats: list[Chat], choices: list[str], *, on_result: OnResult | None = None
    ) -> list[dict[str, float]]:
        """Probability of each choice as the assistant's answer, normalised over the choices.

        Args:
            chats: the chats (the prompt is templated with ``add_generation_prompt=True``).
            choices: candidate answers, e.g. ``["0", "1", "2", "3"]``; multi-token choices get the sum of
                their tokens' log-probs.
            on_result: called as ``on_result(i, probs, prompt_tokens, 0)`` when chat ``i`` is scored.

        Returns:
            One ``{choice: probability}`` per chat; probabilities sum to 1.
        """
        import torch

        choices = _check_choices(choices)
        choice_ids = [self._encode_choice(c) for c in choices]
        prompts = [self.encode_chat(c) for c in chats]
        results: list[dict[str, float] | None] = [None] * len(prompts)

        def finish(i: int, totals: list[float], n_tokens: int) -> None:
            probs = torch.softmax(torch.tensor(totals, dtype=torch.float64), 0).tolist()
            results[i] = dict(zip(choices, probs, strict=False))
            self.stats.misses += 1
            self.stats.prompt_tokens += n_tokens
            if on_result:
                on_result(i, results[i], n_tokens, 0)

        if all(len(c) == 1 for c in choice_ids):
            first = [c[0] for c in choice_ids]

            def consume(idx: list[int], lp) -> None:
                picked = lp[:, -1, first].double().tolist()
                for i, row in zip(idx, picked, strict=False):
                    finish(i, row, len(prompts[i]))

            self._forward_rows(prompts, 1, consume, "score")
            return results  # type: ignore[return-value]

        n = len(choices)
        rows = [p + c[:-1] for p in prompts for c in choice_ids]
        keep = max(len(c) for c in choice_ids)
        partial: dict[int, list[float]] = {}
        remaining = [n] * len(prompts)

        def consume_multi(idx: list[int], lp) -> None:
            for b, r in enumerate(idx):
                i, j = divmod(r, n)
                c = choice_ids[j]
                pos = torch.arange(keep - len(c), keep, device=lp.device)
                total = lp[b, pos, torch.tensor(c, device=lp.device)].double().sum().item()
                partial.setdefault(i, [0.0] * n)[j] = total
                remaining[i] -= 1
                if remaining[i] == 0:
                    finish(i, partial.pop(i), sum(len(x) for x in rows[i * n : (i + 1) * n]))

        self._forward_rows(rows, keep, consume_multi, "score")
        return results  # type: ignore[return-value]

    def next_token_logprobs(self, chats: list[Chat], top_k: int = 20) -> list[list[tuple[str, int, float]]]:
        """The ``top_k`` most likely next tokens after each templated chat: ``(text, id, logprob)``
        (used by :mod:`relforge.llm.serve` to answer ``top_logprobs`` requests)."""
        out: list[list[tuple[str, int, float]]] = []
        for lp in self.next_token_logprob_vectors(chats):
            vals, ids = lp.topk(top_k)
            out.append(
                [
                    (self.tokenizer.decode([t]), t, v)
                    for t, v in zip(ids.tolist(), vals.tolist(), strict=False)
                ]
            )
        return out

    def next_token_logprob_vectors(self, chats: list[Chat], *, continue_final: bool = False) -> list[Any]:
        """The full next-token log-softmax (a float32 vector over the vocabulary) after each templated chat:
        the same numbers ``score_choices`` reads for single-token choices. ``continue_final``: see
        :meth:`format_chat`."""
        prompts = [self.encode_chat(c, continue_final=continue_final) for c in chats]
        out: list[Any] = [None] * len(prompts)

        def consume(idx: list[int], lp) -> None:
            for i, row in zip(idx, lp[:, -1, :], strict=False):
                out[i] = row.float().cpu()

        self._forward_rows(prompts, 1, consume, "logprobs")
        return out

    def prompt_token_logprobs(self, ids: list[int]) -> list[float | None]:
        """Log-prob of each prompt token given the ones before it (``None`` for the first): what a server
        returns as ``prompt_logprobs``. One unpadded forward pass."""
        import torch

        if len(ids) < 2:
            return [None] * len(ids)
        with self._inference():
            x = torch.tensor([ids], dtype=torch.long, device=self.device)
            logits = self.model(input_ids=x, use_cache=False).logits[0, :-1].float()
            target = x[0, 1:]
            picked = logits.gather(1, target[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
        return [None, *picked.double().tolist()]


def _load_model(model: str, path: str, dtype: Any, convert_gguf: bool) -> tuple[Any, Any]:
    """Model and tokenizer from a folder, hub id or GGUF file, in ``dtype`` (None = float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    folder, gguf = split_gguf(path)
    try:
        if gguf:
            mdl, tok, _ = load_gguf(path, convert=convert_gguf)
            if mdl.dtype != dtype:
                mdl = mdl.to(dtype)
            return mdl, tok
        if path.startswith(("/", "./", "../", "~")) and not os.path.exists(path):
            raise ModelNotFoundError(f"model folder not found: {path}")
        tok = AutoTokenizer.from_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), tok
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot load model {model!r} ({e.__class__.__name__}: {str(e).splitlines()[0]}). Use a "
            f"local folder, a .gguf file, or a named model ({', '.join(NAMED_MODELS)}); hub ids need "
            f"network access and HF_HUB_OFFLINE unset."
        ) from e


def _cpu_fast_path(model: Any, plan: Any) -> str:
    """Two CPU fixes for non-fp32 precisions (fp32 is left exactly as it was). Returns the attention
    implementation scoring calls should switch to ("" = none), which also enters the cache key.

    - ``lm_head`` gets a contiguous input: with ``logits_to_keep`` its input is a strided slice, which
      ``matmul`` turns into a ``bmm`` against the weight expanded per row; in bf16 that copies the whole
      (vocab x hidden) matrix once per row (~1 s per batch of 8 for SmolLM2, measured).
    - bf16 scoring (short rows against a cached prompt prefix, with a padding mask) runs matmul attention:
      PyTorch's CPU flash-attention kernel is no faster in bf16 than in fp32 on those shapes, bf16
      matmuls are. Llama/Qwen/Mistral use :mod:`relforge.llm.cpu_attention` (eager's maths without its
      key/value head copies and fp32 softmax copy), other models eager. Generation keeps the model's own
      attention: on long prefills the (rows x heads x n x n) score matrices are slower
      (benchmarks/precision_judge.py, precision_generate.py).
    """
    if plan.resolved == "fp32" or not str(plan.device).startswith("cpu"):
        return ""
    head = getattr(model, "lm_head", None)
    if head is not None:
        head.register_forward_pre_hook(lambda _mod, args: (args[0].contiguous(), *args[1:]))
    if plan.resolved == "bf16" and hasattr(model, "set_attn_implementation"):
        from relforge.llm.cpu_attention import scoring_attention

        return scoring_attention(model)
    return ""


@contextmanager
def _attention(model: Any, implementation: str) -> Iterator[None]:
    """Run ``model`` with another attention implementation for the duration ("" = leave it)."""
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if not implementation or before is None or before == implementation:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _device_of(model: Any) -> str:
    try:
        return next(model.parameters()).device.type
    except (StopIteration, AttributeError):
        return "cpu"


def _apply_adapter(model: Any, adapter: str) -> Any:
    if not os.path.isdir(adapter) or not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        raise ModelNotFoundError(
            f"adapter folder {adapter!r} not found or has no adapter_config.json; pass the folder "
            f"written by `relforge judge finetune` (or any PEFT save_pretrained)."
        )
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def _common_prefix(rows: list[list[int]]) -> list[int]:
    first = rows[0]
    n = len(first)
    for r in rows[1:]:
        m = min(n, len(r))
        k = 0
        while k < m and r[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return first[:n]
