"""One fine-tuning run (:func:`finetune_judge`): data -> LoRA model -> cache -> zero-shot -> epochs -> files."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any

from relforge.errors import DataError
from relforge.judge.finetune.data import Split, collect_examples, data_hash, query_view, split_examples
from relforge.judge.finetune.encode import Collator, Encoded, cache_bottom, encode_examples, label_token_ids
from relforge.judge.finetune.files import (
    METRICS_FILE,
    PLOT_FILE,
    PREDICTIONS_FILE,
    TEST_PREDICTIONS_FILE,
    write_adapter_meta,
)
from relforge.judge.finetune.metrics import (
    agreement_metrics,
    plot_metrics,
    public,
    tau,
    write_jsonl_atomic,
    write_test_predictions,
    write_val_predictions,
)
from relforge.judge.finetune.model import (
    decoder,
    device_settings,
    layer_window,
    load_lora_model,
    lora_state,
    save_adapter,
    write_merged,
)
from relforge.judge.finetune.readme import write_adapter_readme
from relforge.judge.finetune_config import FinetuneConfig
from relforge.judge.prompt import JudgeTemplate
from relforge.types import Document, Qrels, Query

logger = logging.getLogger("relforge.judge.finetune")


class JudgeRun:
    """One fine-tuning run: the LoRA model and what caching, evaluation and the trainer's callback share."""

    def __init__(self, base: str, cfg: FinetuneConfig, out: Path, template: JudgeTemplate, progress: bool):
        self.base, self.cfg, self.out, self.progress = base, cfg, out, progress
        self.values, self.labels = template.values, template.labels
        self.device, self.bf16, grad_ckpt = device_settings(cfg)
        self.model, self.tok, self.resolved, self.start, self.load_s = load_lora_model(
            base, cfg, self.device, grad_ckpt
        )
        self.lm = self.model.base_model.model
        self.n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.label_ids = label_token_ids(self.tok, self.labels)
        self.label_index = {v: i for i, v in enumerate(self.values)}
        # the frozen bottom is cached on the CPU recipe
        self.caching = bool(
            cfg.cache_frozen and self.start > 0 and not grad_ckpt and decoder(self.lm) is not None
        )
        self.collate = Collator(self.tok.pad_token_id, self.device, self.caching)
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
        self._prog: Any = None

    def forward(self, batch: dict[str, Any], keep: int) -> Any:
        """Logits of the last ``keep`` positions (through the top window only when caching)."""
        import torch

        ctx = layer_window(self.lm, self.start, None, True) if self.caching else contextlib.nullcontext()
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx, amp:
            return self.lm(**batch, logits_to_keep=keep, use_cache=False).logits.float()

    def cache_bottom(self, hidden_cache: dict[tuple[int, ...], Any] | None) -> None:
        """Compute (or take from ``hidden_cache``) the frozen bottom's output of every pair, then self-check."""
        import torch

        t0 = time.time()
        self.lm.eval()
        check = (self.enc_val or self.enc_train)[0]
        with torch.no_grad(), _progress(self.progress) as prog:
            todo = sorted(self.enc_train + self.enc_val + self.enc_test, key=lambda x: len(x.ids))
            if hidden_cache is not None:
                for x in todo:
                    x.hidden = hidden_cache.get(tuple(x.ids))
                todo = [x for x in todo if x.hidden is None]
            task = prog.add_task("caching frozen layers", total=len(todo))
            if todo:
                with layer_window(self.lm, 0, self.start, False):
                    dec = decoder(self.lm)
                    cache_bottom(
                        dec, todo, self.cfg.eval_batch_size, self.collate.pad_id, self.device, prog, task
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
        t0 = time.time()
        res: dict[int, list[float]] = {}
        with torch.no_grad(), _progress(self.progress) as prog:
            task = prog.add_task(
                f"{'test' if items is self.enc_test else 'validation'} epoch {epoch}", total=len(items)
            )
            order = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids))
            bs = self.cfg.eval_batch_size
            for bi in [order[i : i + bs] for i in range(0, len(order), bs)]:
                b = [items[i] for i in bi]
                logits = self.forward(self.collate(b, False), 1)[:, -1, :]
                p = torch.softmax(torch.log_softmax(logits, dim=-1)[:, self.label_ids], dim=-1)
                res.update(zip(bi, p.tolist(), strict=True))
                prog.advance(task, len(b))
        probs = [res[i] for i in range(len(items))]
        m = agreement_metrics([x.ex.grade for x in items], probs, self.values, [x.ex.qid for x in items])
        m.update(epoch=epoch, train_seconds=round(train_s, 1), eval_seconds=round(time.time() - t0, 1))
        m["_probs"] = probs
        return m

    def save_adapter(self) -> None:
        save_adapter(self.model, self.out, self.base, self.cfg.adapter_dtype)

    def record(self, m: dict[str, Any]) -> None:
        """Keep an epoch's metrics (file, plot, log); a new best τ_b is snapshotted and saved at once."""
        self.preds[m["epoch"]] = m.pop("_probs")
        self.rows.append(m)
        write_jsonl_atomic(self.out / METRICS_FILE, self.rows)
        if self.enc_val:
            plot_metrics(self.rows, self.out / PLOT_FILE, self.labels)
        logger.info(
            "epoch %d: tau_b=%s qwk=%s acc=%s",
            m["epoch"],
            m.get("kendall_tau_b"),
            m.get("quadratic_kappa"),
            m.get("accuracy"),
        )
        score = tau(m)
        if m["epoch"] > 0 and (self.best is None or score > self.best["_score"]):
            self.best = {"epoch": m["epoch"], "_score": score}
            self.best_state = lora_state(self.model)
            self.save_adapter()  # a usable adapter exists as soon as one epoch is done (interrupt-safe)

    # ---- the trainer's callback (relforge.judge.finetune.train.EpochAgreement) calls these
    def start_epoch(self, epoch: int) -> None:
        self._prog = _progress(self.progress)
        self._prog.start()
        self._task = self._prog.add_task(f"train epoch {epoch}/{self.cfg.epochs}", total=len(self.enc_train))

    def train_progress(self, n: int) -> None:
        if self._prog is not None:
            self._prog.advance(self._task, n)

    def end_epoch(self, epoch: int, seconds: float, loss: float) -> None:
        """Record an epoch's loss and time; score validation (or, without it, keep this epoch)."""
        if self._prog is not None:
            self._prog.stop()
            self._prog = None
        self.epoch_times.append(seconds)
        self.losses.append(loss)
        logger.info("epoch %d: loss %.4f in %.1fs", epoch, loss, seconds)
        if self.enc_val:
            m = self.evaluate(epoch, seconds)
            m["train_loss"] = round(loss, 5)
            self.record(m)
        else:  # no validation: keep the last epoch
            self.best = {"epoch": epoch, "_score": 0.0}
            self.best_state = lora_state(self.model)

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
            write_test_predictions(self.out / TEST_PREDICTIONS_FILE, self.enc_test, test_m.pop("_probs"))
        return test_m

    def timing(self, t_start: float) -> dict[str, Any]:
        return {
            "load_seconds": round(self.load_s, 1),
            "cache_seconds": round(self.cache_s, 1),
            "epoch_seconds": [round(t, 1) for t in self.epoch_times],
            "total_seconds": round(time.time() - t_start, 1),
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

    from relforge.judge.finetune.train import train

    cfg = config or FinetuneConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    template = JudgeTemplate.load(cfg.template)
    examples, missing = collect_examples(corpus, queries, qrels, template.values)
    split = split_examples(examples, template.values, cfg)
    run = JudgeRun(base, cfg, out, template, progress)
    enc = encode_examples(split, template, corpus, queries, run.tok, cfg, hidden_cache is not None)
    run.enc_train, run.enc_val, run.enc_test, too_long = enc
    if not run.enc_train and cfg.epochs > 0:
        raise DataError(f"every training pair is longer than max_seq_len={cfg.max_seq_len}; raise it")
    if run.caching:
        run.cache_bottom(hidden_cache)
    if split.val:
        run.record(run.evaluate(0, 0.0))
    train(run)
    best_epoch = run.save_best()
    write_val_predictions(out / PREDICTIONS_FILE, run.enc_val, run.preds, best_epoch, template.labels)
    test_m = run.test(best_epoch)
    judge_check = _judge_check(base, out, corpus, queries, template, run.enc_val, cfg, progress)
    merged_dir = write_merged(run.model, run.tok, out) if cfg.merge else None
    extra = {"data_hashes": data_hash(corpus, queries, qrels), "missing": missing, "too_long": too_long}
    summary = _summary(run, template, split, best_epoch, test_m, judge_check, merged_dir, t_start, **extra)
    write_adapter_meta(out, summary)
    write_adapter_readme(out, command=command)
    return summary


def _summary(
    run: JudgeRun,
    template: JudgeTemplate,
    split: Split,
    best_epoch: int,
    test_m: dict[str, Any] | None,
    judge_check: dict[str, Any] | None,
    merged_dir: Path | None,
    t_start: float,
    *,
    data_hashes: dict[str, str],
    missing: dict[str, int],
    too_long: int,
) -> dict[str, Any]:
    """The run's summary (written to ``relforge.json``)."""
    from relforge import __version__

    cfg = run.cfg
    by_epoch = {r["epoch"]: r for r in run.rows}
    seq_lens = [len(x.ids) for x in run.enc_train + run.enc_val]
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
        "zero_shot": public(by_epoch.get(0)),
        "best": public(by_epoch.get(best_epoch)),
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
        query_view(queries, query_field),
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
