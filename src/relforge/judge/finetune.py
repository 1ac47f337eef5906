"""LoRA fine-tuning of an LLM judge on curated human relevance labels.

The training prompt is the judge's own chat (:meth:`JudgeTemplate.build_chat` rendered with the model's
chat template and ``add_generation_prompt=True``), the target is the grade label, and the loss is on the
completion only. The split into train and validation is by query (hash of seed and query id), the
training side is class balanced, and after every epoch (and before the first: zero-shot) the
validation pairs are scored the way the judge's ``probs`` mode scores them (label probabilities
normalised over the scale) and compared with the human grades.

CPU recipe: with ``lora_layers=N`` only the top N decoder layers get LoRA, so the bottom of the
network is frozen and its output per example is computed once and cached; every epoch then costs
only the top N layers. A self-check compares the cached path with a plain forward before training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.judge.finetune_config import FinetuneConfig
from relforge.judge.prompt import JudgeTemplate
from relforge.types import Document, Qrels, Query

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"
META_FILE = "relforge.json"
PREDICTIONS_FILE = "val_predictions.jsonl"
TEST_PREDICTIONS_FILE = "test_predictions.jsonl"


# ---------------------------------------------------------------------------------------------- data
def split_by_query(qids: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of query ids (no query on both sides).

    Queries are ordered by ``sha256(f"{seed}:{qid}")`` and the first ``round(val_fraction * n)`` (at
    least one when ``val_fraction > 0`` and there are two or more queries) go to validation, so the
    split does not depend on input order and a query keeps its side when others are added.

    Args:
        qids: query ids that have labels.
        val_fraction: share of queries held out, in [0, 1).
        seed: changes the split.

    Returns:
        (train_qids, val_qids), each sorted.
    """
    uniq = sorted(set(qids))
    if val_fraction <= 0 or len(uniq) < 2:
        return uniq, []
    n_val = min(len(uniq) - 1, max(1, round(val_fraction * len(uniq))))
    order = sorted(uniq, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    val = set(order[:n_val])
    return sorted(q for q in uniq if q not in val), sorted(val)


@dataclass
class Example:
    qid: str
    docid: str
    grade: int
    weight: float = 1.0


def class_counts(examples: list[Example], values: list[int]) -> dict[str, int]:
    return {str(v): sum(1 for e in examples if e.grade == v) for v in values}


def balance_examples(
    examples: list[Example], values: list[int], mode: str, *, seed: int = 0, max_per_class: int | None = None
) -> list[Example]:
    """Class balancing of the training examples.

    Args:
        examples: labelled training pairs.
        values: the grade values of the scale.
        mode: ``none`` (keep all), ``downsample`` (every class down to the rarest present class),
            ``upsample`` (every class up to the largest, repeating examples), ``weights`` (keep all,
            weight each example by ``n / (k * n_class)``).
        seed: sampling seed.
        max_per_class: cap per class applied first (random sample), in every mode.

    Returns:
        The examples to train on (with ``weight`` set), in a seeded random order.
    """
    if mode not in ("none", "downsample", "upsample", "weights"):
        raise UsageError(
            f"balance={mode!r} is not one of none, downsample, upsample, weights (setting: balance)"
        )
    rng = random.Random(seed)
    by_class: dict[int, list[Example]] = {v: [] for v in values}
    for e in examples:
        by_class.setdefault(e.grade, []).append(e)
    for v in by_class:
        by_class[v] = sorted(by_class[v], key=lambda e: (e.qid, e.docid))
        rng.shuffle(by_class[v])
        if max_per_class is not None:
            by_class[v] = by_class[v][:max_per_class]
    present = {v: xs for v, xs in by_class.items() if xs}
    out: list[Example] = []
    if not present:  # nothing to balance: the caller reports the empty training side
        return out
    if mode == "downsample":
        n = min(len(xs) for xs in present.values())
        for xs in present.values():
            out += [Example(e.qid, e.docid, e.grade) for e in xs[:n]]
    elif mode == "upsample":
        n = max(len(xs) for xs in present.values())
        for xs in present.values():
            reps = [xs[i % len(xs)] for i in range(n)]
            out += [Example(e.qid, e.docid, e.grade) for e in reps]
    else:
        total = sum(len(xs) for xs in present.values())
        for xs in present.values():
            w = total / (len(present) * len(xs)) if mode == "weights" else 1.0
            out += [Example(e.qid, e.docid, e.grade, w) for e in xs]
    rng.shuffle(out)
    return out


def data_hash(corpus: dict[str, Document], queries: dict[str, Query], qrels: Qrels) -> dict[str, str]:
    """Content hashes of the labelled data actually used (queries and documents that have labels)."""

    def h(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    docids = sorted({d for q in qrels.values() for d in q})
    return {
        "qrels": h({q: qrels[q] for q in sorted(qrels)}),
        "queries": h({q: [queries[q].text, queries[q].metadata] for q in sorted(qrels) if q in queries}),
        "corpus": h({d: [corpus[d].title, corpus[d].text] for d in docids if d in corpus}),
    }


# ---------------------------------------------------------------------------------------------- model
def load_base(spec: str, *, qlora: bool = False, device: str = "cpu") -> tuple[Any, Any, str]:
    """Load a base causal LM + tokenizer for fine-tuning from an LLM spec.

    Args:
        spec: ``smollm2``, ``hf:smollm2``, ``hf:<dir|file.gguf|hub id>`` or a plain path / hub id.
        qlora: load the weights in 4 bit (bitsandbytes, CUDA only).
        device: ``cpu`` or ``cuda``.

    Returns:
        (model, tokenizer, resolved path or id).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from relforge.models import resolve_model, split_gguf

    if spec.startswith(("openai:", "llamacpp:")):
        raise UsageError(
            f"--llm {spec!r}: fine-tuning needs local weights; use smollm2 or hf:<dir|file.gguf|hub id>"
        )
    name = spec[3:] if spec.startswith("hf:") else spec
    resolved = resolve_model(name)
    path, gguf_file = split_gguf(resolved)
    kw: dict[str, Any] = {}
    if gguf_file and not qlora:  # the LLM layer's loader: converted once to a cached plain HF folder
        from relforge.llm.hf import load_gguf

        model, tok, _ = load_gguf(resolved)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model.float().to(device), tok, resolved
    if gguf_file:
        kw["gguf_file"] = gguf_file
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    mkw: dict[str, Any] = dict(kw)
    if qlora:
        from transformers import BitsAndBytesConfig

        mkw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        mkw["device_map"] = {"": 0}
    else:
        mkw["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **mkw)
    except OSError as e:
        raise UsageError(f"cannot load base model {spec!r} from {path}: {e}") from None
    if gguf_file:  # dequantised GGUF: a plain fp32 model from here on (saving/merging needs this)
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if not qlora:
        model.to(device)
    return model, tok, resolved


def _decoder(model: Any) -> Any:
    """The causal LM's inner decoder (``model.model`` for Llama-like models) holding ``layers``."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "norm"):
        return None
    return inner


@contextlib.contextmanager
def _layer_window(lm: Any, start: int, stop: int | None, final_norm: bool):
    """Temporarily keep only decoder layers ``[start:stop]`` (and optionally drop the final norm)."""
    import torch

    dec = _decoder(lm)
    layers, norm = dec.layers, dec.norm
    dec.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        dec.norm = torch.nn.Identity()
    try:
        yield
    finally:
        dec.layers, dec.norm = layers, norm


# ---------------------------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    ex: Example | None
    prompt_ids: list[int]
    completion_ids: list[int]
    hidden: Any = None  # cached output of the frozen bottom (seq, dim) when caching

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids


def _chat_ids(tokenizer: Any, chat: list[dict[str, str]], label: str | None) -> tuple[list[int], list[int]]:
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


def _label_token_ids(tokenizer: Any, labels: list[str]) -> list[int]:
    """First token of each label as it follows the generation prompt; must be distinct."""
    ids = [tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    if len(set(ids)) != len(ids):
        raise UsageError(f"labels {labels} share their first token; use loss='lm' (setting: loss)")
    return ids


# ---------------------------------------------------------------------------------------------- metrics
def agreement_metrics(
    human: list[int], probs: list[list[float]], values: list[int], qids: list[str] | None = None
) -> dict[str, Any]:
    """Agreement of probability judgments with human grades, computed by the judge's own
    :func:`relforge.judge.agreement.pair_metrics`: the grade is the argmax (as ``judge_pairs`` does
    without thresholds), Kendall τ_b uses the expected grade ``sum(value * p)``.

    Args:
        human: human grades.
        probs: per pair, the probabilities of the scale's grades (scale order).
        values: grade values in scale order.
        qids: query of each pair (per-query τ_b).

    Returns:
        The :func:`pair_metrics` dict (``kendall_tau_b``, ``quadratic_kappa``, ``accuracy``, ``per_class``...).
    """
    from relforge.judge.agreement import pair_metrics

    expected = [sum(v * p for v, p in zip(values, row, strict=True)) for row in probs]
    pred = [values[max(range(len(row)), key=row.__getitem__)] for row in probs]
    return pair_metrics(human, pred, expected, qids or ["q"] * len(human), values)


def _tau(m: dict[str, Any]) -> float:
    t = m.get("kendall_tau_b")
    return -2.0 if t is None else float(t)


def plot_metrics(rows: list[dict[str, Any]], path: Path, labels: list[str]) -> Path:
    """One panel per grade (precision, recall, F1 per epoch) plus an overall panel (τ_b, κ, accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(labels) + 1, figsize=(3.2 * (len(labels) + 1), 3.2), sharey=True)
    for ax, lab in zip(axes, labels, strict=False):
        for key, style in (("precision", "o-"), ("recall", "s-"), ("f1", "^-")):
            ax.plot(epochs, [r["per_class"][lab][key] or 0.0 for r in rows], style, label=key)
        ax.set_title(f"grade {lab}")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    for key, style in (("kendall_tau_b", "o-"), ("quadratic_kappa", "s-"), ("accuracy", "^-")):
        ax.plot(
            epochs, [r.get(key) if r.get(key) is not None else float("nan") for r in rows], style, label=key
        )
    ax.set_title("overall")
    ax.set_xlabel("epoch")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("judge agreement with human grades on validation queries (epoch 0 = zero-shot)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------- main
def _record_base_spec(adapter_config: Path, spec: str) -> None:
    """Name the base model by its spec in PEFT's ``adapter_config.json``, not by the folder it was loaded from.

    For a GGUF base (SmolLM2) that folder is this machine's conversion cache, which no other machine has.
    """
    cfg = json.loads(adapter_config.read_text())
    cfg["base_model_name_or_path"] = spec[3:] if spec.startswith("hf:") else spec
    adapter_config.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


@dataclass
class _Split:
    """Labelled pairs by role (test held out, train/validation by query, train balanced) and their counts."""

    examples: list[Example]  # the pairs off the test queries
    test: list[Example]
    train_q: list[str]
    val_q: list[str]
    train_all: list[Example]
    train: list[Example]
    val: list[Example]
    counts: dict[str, Any]

    def describe(self, cfg: FinetuneConfig) -> dict[str, Any]:
        return {
            "method": "query hash" if cfg.val_queries is None else "explicit",
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "train_queries": self.train_q,
            "val_queries": self.val_q,
            "train_pairs": len(self.train_all),
            "val_pairs": len(self.val),
        }


def _collect_examples(
    corpus: dict[str, Document], queries: dict[str, Query], qrels: Qrels, values: list[int]
) -> tuple[list[Example], dict[str, int]]:
    """The labelled pairs that have both query and document, and how many lacked one or the other."""
    examples: list[Example] = []
    missing: dict[str, int] = {"query": 0, "document": 0}
    off_scale = sorted({g for q in qrels.values() for g in q.values() if g not in values})
    if off_scale:
        raise DataError(
            f"qrels grades {off_scale} are not on the template's scale {values} (setting: template)"
        )
    for qid in sorted(qrels):
        if qid not in queries:
            missing["query"] += len(qrels[qid])
            continue
        for docid in sorted(qrels[qid]):
            if docid not in corpus:
                missing["document"] += 1
                continue
            examples.append(Example(qid, docid, int(qrels[qid][docid])))
    if not examples:
        raise DataError(
            "no labelled pair has both its query and its document; check --queries/--corpus/--qrels"
        )
    return examples, missing


def _split_examples(examples: list[Example], values: list[int], cfg: FinetuneConfig) -> _Split:
    """Hold out the test queries, split the rest by query, cap validation, balance training."""
    test_set = set(cfg.test_queries or [])
    test = [e for e in examples if e.qid in test_set]  # never trained on, never used to pick the epoch
    examples = [e for e in examples if e.qid not in test_set]
    if cfg.val_queries is not None:
        val_q = sorted(set(cfg.val_queries) & {e.qid for e in examples})
        if not val_q:
            raise UsageError("none of val_queries has labels (setting: val_queries)")
        train_q = sorted({e.qid for e in examples} - set(val_q))
    else:
        train_q, val_q = split_by_query([e.qid for e in examples], cfg.val_fraction, cfg.seed)
    train_all = [e for e in examples if e.qid in set(train_q)]
    val = [e for e in examples if e.qid in set(val_q)]
    if cfg.max_val_pairs is not None and len(val) > cfg.max_val_pairs:
        val = sorted(random.Random(cfg.seed).sample(val, cfg.max_val_pairs), key=lambda e: (e.qid, e.docid))
    train = balance_examples(train_all, values, cfg.balance, seed=cfg.seed, max_per_class=cfg.max_per_class)
    if not train and cfg.epochs > 0:
        raise DataError("no training examples left after the split; lower val_fraction")
    counts = {
        "train_available": class_counts(train_all, values),
        "train_used": class_counts(train, values),
        "train_weights": {
            str(v): round(next((e.weight for e in train if e.grade == v), 0.0), 4) for v in values
        },
        "validation": class_counts(val, values),
    }
    logger.info("class counts: %s", counts)
    return _Split(examples, test, train_q, val_q, train_all, train, val, counts)


def _device_settings(cfg: FinetuneConfig) -> tuple[str, bool, bool]:
    """(device, bf16, gradient checkpointing) for these settings on this machine."""
    import torch

    use_cuda = torch.cuda.is_available()
    device = "cuda" if use_cuda else "cpu"
    if cfg.qlora:
        import importlib.util

        if not use_cuda or importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError(
                "qlora needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); unset --qlora"
            )
    bf16 = cfg.bf16 if cfg.bf16 is not None else (use_cuda and torch.cuda.is_bf16_supported())
    grad_ckpt = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else use_cuda
    return device, bf16, grad_ckpt


def _lora_targets(cfg: FinetuneConfig, dec: Any, start: int) -> tuple[Any, dict[str, Any]]:
    """PEFT target modules and extra LoRA kwargs (``layers_to_transform`` when only the top layers get LoRA)."""
    import torch

    lora_kw: dict[str, Any] = {}
    targets = cfg.target_modules
    if start > 0:
        lora_kw["layers_to_transform"] = list(range(start, len(dec.layers)))
        if targets == "all-linear":  # PEFT wants names with layers_to_transform: every linear of a layer
            targets = sorted(
                {
                    n.split(".")[-1]
                    for n, mod in dec.layers[start].named_modules()
                    if isinstance(mod, torch.nn.Linear) or type(mod).__name__.startswith("Linear")
                }
            )
    return targets, lora_kw


def _load_lora_model(
    base: str, cfg: FinetuneConfig, device: str, grad_ckpt: bool
) -> tuple[Any, Any, str, int, float]:
    """Load the base and attach LoRA: (peft model, tokenizer, resolved base, first LoRA layer, load seconds)."""
    from peft import LoraConfig, get_peft_model

    t0 = time.time()
    model, tok, resolved = load_base(base, qlora=cfg.qlora, device=device)
    load_s = time.time() - t0
    tok.padding_side = "left"
    dec = _decoder(model)
    n_layers = len(dec.layers) if dec is not None else None
    start = 0
    if cfg.lora_layers is not None and n_layers is not None and cfg.lora_layers < n_layers:
        start = n_layers - cfg.lora_layers
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=grad_ckpt)
    targets, lora_kw = _lora_targets(cfg, dec, start)
    peft_cfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **lora_kw,
    )
    model = get_peft_model(model, peft_cfg)
    lm = model.base_model.model  # the causal LM with LoRA layers injected in place
    if grad_ckpt and not cfg.qlora:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lm.enable_input_require_grads()
    return model, tok, resolved, start, load_s


def _encode_examples(
    split: _Split,
    template: JudgeTemplate,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    tok: Any,
    cfg: FinetuneConfig,
    shared: bool,
) -> tuple[list[Encoded], list[Encoded], list[Encoded], int]:
    """Token ids of the judge's chat for train / validation / test pairs, and how many were too long."""
    qview = _query_view(
        {q: queries[q] for q in {e.qid for e in split.examples + split.test}}, cfg.query_field
    )

    def encode(e: Example, with_label: bool) -> Encoded:
        q = qview[e.qid]
        chat = template.build_chat(q, corpus[e.docid], tok, cfg.max_doc_tokens)
        p, c = _chat_ids(tok, chat, template.label_of(e.grade) if with_label else None)
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


def _batches(items: list[Any], bs: int) -> list[list[Any]]:
    return [items[i : i + bs] for i in range(0, len(items), bs)]


def _lora_state(model: Any) -> dict[str, Any]:
    """A CPU copy of the LoRA weights."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items() if "lora_" in k}


class _JudgeRun:
    """One fine-tuning run: the LoRA model and the state that batching, caching, evaluation and training share."""

    def __init__(self, base: str, cfg: FinetuneConfig, out: Path, template: JudgeTemplate, progress: bool):
        self.base, self.cfg, self.out, self.progress = base, cfg, out, progress
        self.values, self.labels = template.values, template.labels
        self.device, self.bf16, grad_ckpt = _device_settings(cfg)
        self.model, self.tok, self.resolved, self.start, self.load_s = _load_lora_model(
            base, cfg, self.device, grad_ckpt
        )
        self.lm = self.model.base_model.model
        self.n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.label_ids = _label_token_ids(self.tok, self.labels)
        self.label_index = {v: i for i, v in enumerate(self.values)}
        # the frozen bottom is cached on the CPU recipe
        self.caching = bool(
            cfg.cache_frozen and self.start > 0 and not grad_ckpt and _decoder(self.lm) is not None
        )
        self.pad_id = self.tok.pad_token_id
        self.enc_train: list[Encoded] = []
        self.enc_val: list[Encoded] = []
        self.enc_test: list[Encoded] = []
        self.cache_s = 0.0
        self.epoch_times: list[float] = []
        self.losses: list[float] = []
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, Any] | None = None
        self.preds: dict[int, list[list[float]]] = {}
        self.adapter_bytes = 0

    def collate(
        self, items: list[Encoded], with_completion: bool, hidden: bool | None = None
    ) -> dict[str, Any]:
        import torch

        seqs = [x.ids if with_completion else x.prompt_ids for x in items]
        n = max(len(s) for s in seqs)
        mask = torch.zeros(len(seqs), n, dtype=torch.long)
        for i, s in enumerate(seqs):
            mask[i, n - len(s) :] = 1
        if self.caching if hidden is None else hidden:
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

    def forward(self, batch: dict[str, Any], keep: int) -> Any:
        import torch

        ctx = _layer_window(self.lm, self.start, None, True) if self.caching else contextlib.nullcontext()
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx, amp:
            return self.lm(**batch, logits_to_keep=keep, use_cache=False).logits.float()

    def cache_bottom(self, hidden_cache: dict[tuple[int, ...], Any] | None) -> None:
        """Compute (or take from ``hidden_cache``) the frozen bottom's output of every pair, then self-check."""
        import torch

        t0 = time.time()
        lm = self.lm
        lm.eval()
        check = (self.enc_val or self.enc_train)[0]
        with torch.no_grad(), _progress(self.progress) as prog:
            todo = sorted(self.enc_train + self.enc_val + self.enc_test, key=lambda x: len(x.ids))
            if hidden_cache is not None:
                for x in todo:
                    x.hidden = hidden_cache.get(tuple(x.ids))
                todo = [x for x in todo if x.hidden is None]
            task = prog.add_task("caching frozen layers", total=len(todo))
            if todo:
                with _layer_window(lm, 0, self.start, False):
                    _cache_bottom(
                        _decoder(lm), todo, self.cfg.eval_batch_size, self.pad_id, self.device, prog, task
                    )
            if hidden_cache is not None:
                hidden_cache.update({tuple(x.ids): x.hidden for x in todo})
            self._check_cache(check)
        self.cache_s = time.time() - t0

    def _check_cache(self, check: Encoded) -> None:
        """Cached path == plain forward on one example (else refuse to cache silently wrong)."""
        import torch

        full_ids = torch.tensor([check.prompt_ids], device=self.device)
        ref = self.lm(input_ids=full_ids, logits_to_keep=1, use_cache=False).logits.float()[
            0, -1, self.label_ids
        ]
        got = self.forward(self.collate([check], False), 1)[0, -1, self.label_ids]
        if not torch.allclose(ref, got, atol=1e-3, rtol=1e-3):
            raise RuntimeError(
                f"cached-bottom forward differs from the plain forward ({ref} vs {got}); set cache_frozen=false"
            )

    def evaluate(self, epoch: int, train_s: float, items: list[Encoded] | None = None) -> dict[str, Any]:
        """The judge's probs scoring (label probabilities normalised over the scale) and its agreement."""
        import torch

        self.lm.eval()
        items = self.enc_val if items is None else items
        probs: list[list[float]] = []
        t0 = time.time()
        with torch.no_grad(), _progress(self.progress) as prog:
            task = prog.add_task(
                f"{'test' if items is self.enc_test else 'validation'} epoch {epoch}", total=len(items)
            )
            order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids))
            res: dict[int, list[float]] = {}
            for bi in _batches(order, self.cfg.eval_batch_size):
                b = [items[i] for i in bi]
                logits = self.forward(self.collate(b, False), 1)[:, -1, :]
                full = torch.log_softmax(logits, dim=-1)[:, self.label_ids]
                p = torch.softmax(full, dim=-1)
                for i, row in zip(bi, p.tolist(), strict=True):
                    res[i] = row
                prog.advance(task, len(b))
            probs = [res[i] for i in range(len(items))]
        human = [x.ex.grade for x in items]
        m = agreement_metrics(human, probs, self.values, [x.ex.qid for x in items])
        m.update(epoch=epoch, train_seconds=round(train_s, 1), eval_seconds=round(time.time() - t0, 1))
        m["_probs"] = probs
        return m

    def save_adapter(self) -> None:
        import torch

        self.model.save_pretrained(self.out)
        _record_base_spec(self.out / "adapter_config.json", self.base)
        if self.cfg.adapter_dtype == "float16":
            _cast_safetensors(self.out / "adapter_model.safetensors", torch.float16)

    def record(self, m: dict[str, Any]) -> None:
        """Keep an epoch's metrics (file, plot, log); a new best τ_b is snapshotted and saved at once."""
        self.preds[m["epoch"]] = m.pop("_probs")
        self.rows.append(m)
        _write_jsonl_atomic(self.out / METRICS_FILE, self.rows)
        if self.enc_val:
            plot_metrics(self.rows, self.out / PLOT_FILE, self.labels)
        logger.info(
            "epoch %d: tau_b=%s qwk=%s acc=%s",
            m["epoch"],
            m.get("kendall_tau_b"),
            m.get("quadratic_kappa"),
            m.get("accuracy"),
        )
        score = _tau(m)
        if m["epoch"] > 0 and (self.best is None or score > self.best["_score"]):
            self.best = {"epoch": m["epoch"], "_score": score}
            self.best_state = _lora_state(self.model)
            self.save_adapter()  # a usable adapter exists as soon as one epoch is done (interrupt-safe)

    def train(self) -> None:
        """All epochs (AdamW, linear warmup, seeded shuffles), each evaluated and recorded."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(self.enc_train) / (cfg.batch_size * cfg.grad_accum))
        total = max(1, steps_per_epoch * cfg.epochs)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
        rng = random.Random(cfg.seed)
        keep = max((len(x.completion_ids) for x in self.enc_train), default=1) + 1
        for epoch in range(1, cfg.epochs + 1):
            self.lm.train()
            t0 = time.time()
            order = list(self.enc_train)
            rng.shuffle(order)
            loss = self._train_epoch(epoch, order, params, opt, sched, keep)
            self.epoch_times.append(time.time() - t0)
            self.losses.append(loss)
            logger.info("epoch %d: loss %.4f in %.1fs", epoch, self.losses[-1], self.epoch_times[-1])
            if self.enc_val:
                m = self.evaluate(epoch, self.epoch_times[-1])
                m["train_loss"] = round(self.losses[-1], 5)
                self.record(m)
            else:  # no validation: keep the last epoch
                self.best = {"epoch": epoch, "_score": 0.0}
                self.best_state = _lora_state(self.model)

    def _train_epoch(
        self, epoch: int, order: list[Encoded], params: list[Any], opt: Any, sched: Any, keep: int
    ) -> float:
        """One pass over ``order``; returns the mean batch loss."""
        import torch

        cfg = self.cfg
        ep_loss, n_b = 0.0, 0
        with _progress(self.progress) as prog:
            task = prog.add_task(f"train epoch {epoch}/{cfg.epochs}", total=len(order))
            for bi, b in enumerate(_batches(order, cfg.batch_size)):
                loss = self._batch_loss(b, keep)
                (loss / cfg.grad_accum).backward()
                ep_loss += float(loss.detach())
                n_b += 1
                if (bi + 1) % cfg.grad_accum == 0 or bi + 1 == math.ceil(len(order) / cfg.batch_size):
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                prog.advance(task, len(b))
        return ep_loss / max(1, n_b)

    def _batch_loss(self, b: list[Encoded], keep: int) -> Any:
        """Weighted loss of a batch: on the label's first token (``choices``) or the whole completion (``lm``)."""
        import torch

        logits = self.forward(self.collate(b, True), keep)  # (B, keep, V), left padded: ends aligned
        w = torch.tensor([x.ex.weight for x in b], device=logits.device)
        if self.cfg.loss == "choices":
            pos = torch.tensor([keep - 1 - len(x.completion_ids) for x in b], device=logits.device)
            lg = logits[torch.arange(len(b), device=logits.device), pos][:, self.label_ids]
            tgt = torch.tensor([self.label_index[x.ex.grade] for x in b], device=logits.device)
            per = torch.nn.functional.cross_entropy(lg, tgt, reduction="none")
        else:
            per_list = []
            for i, x in enumerate(b):
                c = len(x.completion_ids)
                lg = logits[i, keep - 1 - c : keep - 1]
                per_list.append(
                    torch.nn.functional.cross_entropy(
                        lg, torch.tensor(x.completion_ids, device=logits.device)
                    )
                )
            per = torch.stack(per_list)
        return (per * w).sum() / w.sum()

    def save_best(self) -> int:
        """Load the best epoch's LoRA weights (if any), save the adapter; returns the best epoch (0: none)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)
        self.save_adapter()
        self.adapter_bytes = sum(f.stat().st_size for f in self.out.glob("adapter_model.*"))
        return self.best["epoch"] if self.best else 0

    def test(self, best_epoch: int) -> dict[str, Any] | None:
        """Metrics on the test pairs (their probabilities written to a file); None without test pairs."""
        test_m = self.evaluate(best_epoch, 0.0, self.enc_test) if self.enc_test else None
        if test_m is not None:
            _write_test_predictions(self.out / TEST_PREDICTIONS_FILE, self.enc_test, test_m.pop("_probs"))
        return test_m

    def timing(self, t_start: float) -> dict[str, Any]:
        return {
            "load_seconds": round(self.load_s, 1),
            "cache_seconds": round(self.cache_s, 1),
            "epoch_seconds": [round(t, 1) for t in self.epoch_times],
            "total_seconds": round(time.time() - t_start, 1),
        }


def _write_val_predictions(
    path: Path,
    enc_val: list[Encoded],
    preds: dict[int, list[list[float]]],
    best_epoch: int,
    labels: list[str],
) -> None:
    """Per validation pair: human grade and label probabilities zero-shot and of the kept epoch."""
    _write_jsonl_atomic(
        path,
        [
            {
                "qid": x.ex.qid,
                "docid": x.ex.docid,
                "human": x.ex.grade,
                "zero_shot": dict(zip(labels, [round(p, 5) for p in preds[0][i]], strict=True))
                if 0 in preds
                else None,
                "tuned": dict(zip(labels, [round(p, 5) for p in preds[best_epoch][i]], strict=True))
                if best_epoch in preds
                else None,
            }
            for i, x in enumerate(enc_val)
        ],
    )


def _write_test_predictions(path: Path, enc_test: list[Encoded], probs: list[list[float]]) -> None:
    _write_jsonl_atomic(
        path,
        [
            {
                "qid": x.ex.qid,
                "docid": x.ex.docid,
                "human": x.ex.grade,
                "probs": [round(p, 6) for p in row],
            }
            for x, row in zip(enc_test, probs, strict=True)
        ],
    )


def _judge_check(
    base: str,
    out: Path,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    template: JudgeTemplate,
    enc_val: list[Encoded],
    cfg: FinetuneConfig,
    progress: bool,
) -> dict[str, Any] | None:
    """:func:`check_with_judge` on the validation pairs (with ``judge_check`` and validation pairs)."""
    if not (cfg.judge_check and enc_val):
        return None
    t0 = time.time()
    vq: Qrels = {}
    for x in enc_val:
        vq.setdefault(x.ex.qid, {})[x.ex.docid] = x.ex.grade
    judge_check = check_with_judge(
        base,
        out,
        corpus,
        queries,
        vq,
        template,
        max_doc_tokens=cfg.max_doc_tokens,
        query_field=cfg.query_field,
        batch_size=cfg.eval_batch_size,
        progress=progress,
    )
    judge_check["seconds"] = round(time.time() - t0, 1)
    return judge_check


def _write_merged(model: Any, tok: Any, out: Path) -> Path:
    merged_dir = out / "merged"
    if merged_dir.exists():
        shutil.rmtree(merged_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tok.save_pretrained(merged_dir)
    return merged_dir


def _summary(
    run: _JudgeRun,
    template: JudgeTemplate,
    split: _Split,
    *,
    data_hashes: dict[str, str],
    missing: dict[str, int],
    too_long: int,
    best_epoch: int,
    test_m: dict[str, Any] | None,
    judge_check: dict[str, Any] | None,
    seq_lens: list[int],
    merged_dir: Path | None,
    t_start: float,
) -> dict[str, Any]:
    """The run's summary (written to ``relforge.json``)."""
    from relforge import __version__

    cfg = run.cfg
    by_epoch = {r["epoch"]: r for r in run.rows}
    return {
        "kind": "relforge-judge-adapter",
        "relforge_version": __version__,
        "base_model": run.base,
        "base_model_file": Path(run.resolved).name,
        "template": {
            "id": template.id,
            "version": template.version,
            "hash": template.hash,
            "source": template.source,
        },
        "labels": template.labels,
        "label_scale": [{"label": g.label, "value": g.value, "name": g.name} for g in template.scale],
        "max_doc_tokens": cfg.max_doc_tokens,
        "query_field": cfg.query_field,
        "data_hashes": data_hashes,
        "val_queries": split.val_q,
        "split": split.describe(cfg),
        "class_counts": split.counts,
        "skipped": {
            "missing_query": missing["query"],
            "missing_document": missing["document"],
            "too_long": too_long,
        },
        "best_epoch": best_epoch,
        "zero_shot": _public(by_epoch.get(0)),
        "best": _public(by_epoch.get(best_epoch)),
        "test": test_m,
        "test_queries": sorted({e.qid for e in split.test}),
        "judge_check": judge_check,
        "metrics_file": METRICS_FILE,
        "plot_file": PLOT_FILE if split.val else None,
        "timing": run.timing(t_start),
        "train_loss": [round(x, 5) for x in run.losses],
        "trainable_parameters": run.n_trainable,
        "adapter_bytes": run.adapter_bytes,
        "lora_layers_from": run.start,
        "cached_frozen_layers": run.caching,
        "sequence_tokens": {
            "mean": round(sum(seq_lens) / max(1, len(seq_lens)), 1),
            "max": max(seq_lens, default=0),
        },
        "device": run.device,
        "merged_dir": "merged" if merged_dir else None,
        "config": cfg.model_dump(),
    }


def finetune_judge(
    base: str,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    qrels: Qrels,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    hidden_cache: dict[tuple[int, ...], Any] | None = None,
) -> dict[str, Any]:
    """LoRA fine-tune an LLM judge on human grades, evaluating every epoch on held-out queries.

    Args:
        base: LLM spec of the base model (``smollm2``, ``hf:<dir|file.gguf|hub id>``).
        corpus: documents by id.
        queries: queries by id.
        qrels: human grades ``qrels[qid][docid] = grade`` on the template's scale.
        out_dir: output folder: the PEFT adapter of the best epoch (by validation τ_b), ``relforge.json``,
            ``metrics.jsonl``, ``metrics.png``, ``val_predictions.jsonl`` and, with ``merge``, ``merged/``.
        config: settings (defaults: :class:`FinetuneConfig`).
        progress: show progress bars.
        command: the command line that ran this (recorded in the README).
        hidden_cache: shared frozen-bottom outputs keyed by token ids (k-fold: computed once for all
            folds); validation and test pairs are then encoded with their label so one entry serves
            every role a pair plays (the prompt's hidden states are a prefix of the full sequence's).

    Returns:
        The summary also written to ``out_dir/relforge.json``.
    """
    import torch

    cfg = config or FinetuneConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    template = JudgeTemplate.load(cfg.template)
    examples, missing = _collect_examples(corpus, queries, qrels, template.values)
    split = _split_examples(examples, template.values, cfg)
    run = _JudgeRun(base, cfg, out, template, progress)
    enc = _encode_examples(split, template, corpus, queries, run.tok, cfg, hidden_cache is not None)
    run.enc_train, run.enc_val, run.enc_test, too_long = enc
    seq_lens = [len(x.ids) for x in run.enc_train + run.enc_val]
    if run.caching:
        run.cache_bottom(hidden_cache)
    if split.val:
        run.record(run.evaluate(0, 0.0))
    run.train()
    best_epoch = run.save_best()
    _write_val_predictions(out / PREDICTIONS_FILE, run.enc_val, run.preds, best_epoch, template.labels)
    test_m = run.test(best_epoch)
    judge_check = _judge_check(base, out, corpus, queries, template, run.enc_val, cfg, progress)
    merged_dir = _write_merged(run.model, run.tok, out) if cfg.merge else None
    summary = _summary(
        run,
        template,
        split,
        data_hashes=data_hash(corpus, queries, qrels),
        missing=missing,
        too_long=too_long,
        best_epoch=best_epoch,
        test_m=test_m,
        judge_check=judge_check,
        seq_lens=seq_lens,
        merged_dir=merged_dir,
        t_start=t_start,
    )
    with (out / (META_FILE + ".tmp")).open("w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    (out / (META_FILE + ".tmp")).replace(out / META_FILE)
    write_adapter_readme(out, command=command)
    return summary


# ---------------------------------------------------------------------------------------------- helpers
def _common_prefix(rows: list[list[int]]) -> list[int]:
    n = min(len(r) for r in rows)
    first = rows[0]
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    return first[:n]


def _cache_bottom(
    dec: Any, items: list[Encoded], bs: int, pad_id: int, device: str, prog: Any, task: Any
) -> None:
    """Set ``x.hidden`` = output of the (windowed) frozen bottom for every item.

    The prompt prefix shared by all items (system turn, guidelines, scale) is run once and reused as a
    KV cache, so each item costs only its own tokens.
    """
    import copy
    import inspect

    import torch

    min_len = min(len(x.ids) for x in items)
    prefix = _common_prefix([x.ids for x in items])[: min_len - 1]
    if len(prefix) < 16:
        prefix = []
    params = inspect.signature(type(dec).forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    pcache, ph = None, None
    if prefix:
        o = dec(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        pcache = getattr(o, "cache", None) or getattr(o, "past_key_values", None)
        ph = o.last_hidden_state[0].detach().to("cpu")
    p = len(prefix)
    for start in range(0, len(items), bs):
        b = items[start : start + bs]
        rows = [x.ids[p:] for x in b]
        width = max(len(r) for r in rows)
        ids = torch.full((len(b), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(b), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        kw: dict[str, Any] = {"use_cache": pcache is not None}
        if pcache is not None:
            cache = copy.deepcopy(pcache)
            cache.batch_repeat_interleave(len(b))
            kw[cache_kw] = cache
            kw["position_ids"] = ((mask.cumsum(-1) - 1).clamp(min=0) + p).to(device)
            mask = torch.cat([torch.ones((len(b), p), dtype=mask.dtype), mask], 1)
        hs = dec(input_ids=ids.to(device), attention_mask=mask.to(device), **kw).last_hidden_state
        for i, (x, r) in enumerate(zip(b, rows, strict=True)):
            suffix = hs[i, hs.shape[1] - len(r) :].detach().to("cpu")
            x.hidden = torch.cat([ph, suffix], 0) if ph is not None else suffix.clone()
        prog.advance(task, len(b))


def _query_view(queries: dict[str, Query], field: str) -> dict[str, Query]:
    """Queries whose ``text`` is the configured field (``text`` or a metadata key)."""
    if field == "text":
        return queries
    out = {}
    for qid, q in queries.items():
        value = q.metadata.get(field)
        if not value:
            raise DataError(f"query {qid} has no field {field!r} (setting: query_field)")
        out[qid] = Query(id=q.id, text=str(value), metadata=q.metadata)
    return out


def check_with_judge(
    base: str,
    adapter_dir: str | Path,
    corpus: dict[str, Document],
    queries: dict[str, Query],
    qrels: Qrels,
    template: JudgeTemplate,
    *,
    max_doc_tokens: int | None,
    query_field: str = "text",
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Judge ``qrels``' pairs the way ``relforge judge --llm BASE --adapter DIR`` does and measure agreement.

    Goes through the LLM layer (``load_llm(base, adapter=...)``, no cache), ``judge_pairs`` in probs mode
    and :func:`relforge.judge.agreement.agreement`, so the numbers are those a user of the adapter gets.

    Returns:
        ``agreement(...)["all"]`` (pair-level metrics) plus ``n_pairs``.
    """
    from relforge.judge.agreement import agreement
    from relforge.judge.judge import judge_pairs
    from relforge.llm import load_llm

    llm = load_llm(base, adapter=str(adapter_dir), cache=None, batch_size=batch_size, progress=progress)
    tok = getattr(getattr(llm, "llm", llm), "tokenizer", None)
    pairs = [(q, d) for q in sorted(qrels) for d in sorted(qrels[q])]
    js = judge_pairs(
        llm,
        template,
        _query_view(queries, query_field),
        corpus,
        pairs,
        mode="probs",
        tokenizer=tok,
        max_doc_tokens=max_doc_tokens,
        progress=progress,
        batch_size=batch_size,
    )
    rep = agreement(qrels, js, values=template.values)
    out = dict(rep["all"])
    out["n_pairs"] = len(pairs)
    return out


def _public(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: v for k, v in m.items() if not k.startswith("_")}


def _write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _cast_safetensors(path: Path, dtype: Any) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.to(dtype) for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def read_adapter_meta(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``relforge.json`` of an adapter folder (base model, template hash, split, metrics)."""
    p = Path(adapter_dir) / META_FILE
    if not p.exists():
        raise UsageError(f"{adapter_dir} is not a relforge judge adapter (no {META_FILE})")
    return json.loads(p.read_text(encoding="utf-8"))


def shipped_adapter_dir(name: str = "smollm2-liveqa") -> Path:
    """Folder of an adapter shipped inside the package (``relforge/judge/adapters/<name>``)."""
    from importlib import resources

    return Path(str(resources.files("relforge.judge") / "adapters" / name))


#: the agreement rows of the README's validation table: (row name, metric key)
_README_METRICS = [
    ("Kendall τ_b (pairs, expected grade)", "kendall_tau_b"),
    ("mean per-query τ_b", "per_query_tau_b"),
    ("quadratic-weighted κ", "quadratic_kappa"),
    ("Cohen κ", "cohen_kappa"),
    ("Krippendorff α (ordinal)", "krippendorff_alpha"),
    ("accuracy", "accuracy"),
    ("macro F1", "macro_f1"),
]


def write_adapter_readme(
    adapter_dir: str | Path, *, command: str | None = None, extra: str = "", title: str | None = None
) -> Path:
    """Write ``README.md`` of an adapter folder from its ``relforge.json`` (replaces PEFT's generic card).

    Args:
        adapter_dir: the folder written by :func:`finetune_judge`.
        command: the command that reproduces it.
        extra: markdown appended at the end (e.g. data attribution, recipes tried).
        title: first heading (default: the folder name).

    Returns:
        The README path.
    """
    d = Path(adapter_dir)
    meta = read_adapter_meta(d)
    lines = _readme_intro(meta, title or d.name) + _readme_use(meta, d)
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    lines += _readme_validation(meta) + _readme_metrics_table(meta) + _readme_files(meta)
    if extra:
        lines += [extra.strip(), ""]
    path = d / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _readme_number(x: Any) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def _readme_intro(meta: dict[str, Any], title: str) -> list[str]:
    """Heading and what the adapter is (base model, template, truncation, grades)."""
    return [
        f"# {title}",
        "",
        f"A LoRA adapter for the relforge LLM judge, trained by `relforge judge finetune` on human graded "
        f"relevance labels. Base model: `{meta['base_model']}` ({meta.get('base_model_file')}); judge template "
        f"`{meta['template']['id']}` (hash `{meta['template']['hash']}`); documents truncated to "
        f"{meta.get('max_doc_tokens')} model tokens; grades {', '.join(meta['labels'])}.",
        "",
    ]


def _readme_use(meta: dict[str, Any], d: Path) -> list[str]:
    """``## Use``: the ``relforge judge`` command line with this adapter."""
    return [
        "## Use",
        "",
        "```bash",
        f"relforge judge --llm {meta['base_model']} --adapter {d} --max-doc-tokens {meta.get('max_doc_tokens')} \\",
        "  --corpus corpus.jsonl --queries queries.jsonl --pairs pairs.tsv --out judgments.jsonl",
        "```",
        "",
        "Judge with the same `--max-doc-tokens` as training (recorded in `relforge.json`).",
        "",
    ]


def _readme_validation(meta: dict[str, Any]) -> list[str]:
    """``## Validation``: the split, the class counts and the header of the metrics table."""
    split, counts = meta.get("split", {}), meta.get("class_counts", {})
    return [
        f"## Validation (held-out queries, best epoch {meta.get('best_epoch')} by τ_b)",
        "",
        f"Split by query (hash, seed {split.get('seed')}): {len(split.get('train_queries', []))} training queries, "
        f"{len(split.get('val_queries', []))} validation queries ({split.get('val_pairs')} pairs, grades "
        f"{counts.get('validation')}). Training pairs used (class balanced): {counts.get('train_used')} of "
        f"{counts.get('train_available')}. Validation query ids are in `relforge.json` (`val_queries`).",
        "",
        "| metric | zero-shot (epoch 0) | tuned |",
        "|---|---|---|",
    ]


def _readme_metrics_table(meta: dict[str, Any]) -> list[str]:
    """The metrics table's rows: zero-shot vs tuned agreement, then F1 (P / R) per grade."""
    f = _readme_number
    zs, best = meta.get("zero_shot") or {}, meta.get("best") or {}
    lines = [f"| {name} | {f(zs.get(k))} | {f(best.get(k))} |" for name, k in _README_METRICS]
    for lab in meta["labels"]:
        a = (zs.get("per_class") or {}).get(lab, {})
        b = (best.get("per_class") or {}).get(lab, {})
        lines.append(
            f"| F1 grade {lab} (P / R) | {f(a.get('f1'))} ({f(a.get('precision'))} / {f(a.get('recall'))}) "
            f"| {f(b.get('f1'))} ({f(b.get('precision'))} / {f(b.get('recall'))}) |"
        )
    return lines


def _readme_files(meta: dict[str, Any]) -> list[str]:
    """Where the per-epoch curves and per-pair probabilities are, and the training time."""
    t = meta.get("timing", {})
    return [
        "",
        f"Per-epoch curves: `{meta.get('metrics_file')}`, `{meta.get('plot_file')}`; per-pair probabilities "
        f"(zero-shot and tuned): `{PREDICTIONS_FILE}`. Training time per epoch (s): {t.get('epoch_seconds')} "
        f"on {meta.get('device')}.",
        "",
    ]
