"""Training rerankers on relforge groups with sentence-transformers' trainers.

One registry (:data:`LOSSES`) says which loss exists, which model kind it trains and which data
format it needs; error messages are built from it. The trainers are sentence-transformers' own
(``CrossEncoderTrainer``, ``SentenceTransformerTrainer``); relforge adds the LCE loss, the group ->
format conversion, a dev evaluator (nDCG@10 of the reranked dev run via :mod:`relforge.evaluate`)
and a training summary.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.train.config import TrainConfig
from relforge.types import DOC_FIELDS, Document, Qrels, Query, Run


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: model kinds it trains, data format, and a factory ``(model, config) -> loss``."""

    kinds: tuple[str, ...]
    fmt: str  # "group": query, positive, negative_1..n | "soft": group + scores (teacher) | "pairs": query, doc, label | "list": query, docs, labels
    build: Callable[[Any, TrainConfig], Any]
    help: str


def _lce(model, cfg):
    from relforge.train.losses import DenseLCELoss, LCELoss

    if cfg.kind == "bi":
        return DenseLCELoss(model, scale=cfg.scale)
    return LCELoss(model, temperature=cfg.temperature)


def _soft(kind: str):
    def build(model, cfg):
        from relforge.train.losses import DenseSoftGroupLoss, SoftGroupLoss

        if cfg.kind == "bi":
            return DenseSoftGroupLoss(
                model, kind=kind, teacher_temperature=cfg.teacher_temperature, scale=cfg.scale
            )
        return SoftGroupLoss(
            model, kind=kind, teacher_temperature=cfg.teacher_temperature, temperature=cfg.temperature
        )

    return build


def _ce_loss(name: str):
    def build(model, cfg):
        from sentence_transformers.cross_encoder import losses

        return getattr(losses, name)(model)

    return build


def _mnrl(model, cfg):
    if cfg.kind == "bi":
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    else:
        from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss(model)


#: the loss registry: ``--loss`` choices and their error messages come from here
LOSSES: dict[str, LossSpec] = {
    "lce": LossSpec(
        ("cross", "bi"),
        "group",
        _lce,
        "exact LCE: softmax CE over the query's own group (no in-batch negatives)",
    ),
    "kl": LossSpec(
        ("cross", "bi"),
        "soft",
        _soft("kl"),
        "listwise KL to the softmax of the judge's expected grades (teacher) over the query's group",
    ),
    "margin_mse": LossSpec(
        ("cross", "bi"),
        "soft",
        _soft("margin_mse"),
        "GPL margin-MSE: (s_pos - s_neg) vs the judge's (t_pos - t_neg) over the query's group",
    ),
    "bce": LossSpec(
        ("cross",), "pairs", _ce_loss("BinaryCrossEntropyLoss"), "pointwise BCE, positive=1 negatives=0"
    ),
    "lambda": LossSpec(
        ("cross",), "list", _ce_loss("LambdaLoss"), "listwise LambdaLoss on the judge's grades"
    ),
    "listnet": LossSpec(
        ("cross",), "list", _ce_loss("ListNetLoss"), "listwise ListNet on the judge's grades"
    ),
    "mnrl": LossSpec(
        ("cross", "bi"), "group", _mnrl, "multiple-negatives ranking (in-batch + the group's negatives)"
    ),
}


def check_loss(loss: str, kind: str) -> LossSpec:
    """The registry entry of ``loss`` for ``kind``; UsageError listing the allowed values otherwise."""
    if kind not in ("cross", "bi"):
        raise UsageError(f"kind {kind!r} is not one of cross, bi (set --kind)")
    if loss not in LOSSES:
        raise UsageError(f"loss {loss!r} is not one of {', '.join(sorted(LOSSES))} (set --loss)")
    spec = LOSSES[loss]
    if kind not in spec.kinds:
        ok = sorted(k for k, s in LOSSES.items() if kind in s.kinds)
        raise UsageError(
            f"loss {loss!r} does not train kind {kind!r}; for {kind} use one of {', '.join(ok)} (set --loss)"
        )
    return spec


# --------------------------------------------------------------------------- data formats


def negative_columns(columns: list[str]) -> list[str]:
    """``negative_1..negative_n`` in numeric order."""
    negs = [c for c in columns if c.startswith("negative_") and c[9:].isdigit()]
    return sorted(negs, key=lambda c: int(c[9:]))


def cut_long_texts(groups, max_tokens: int) -> tuple[Any, int]:
    """Cut the text columns (``query``, ``positive``, ``negative_*``) to :func:`relforge.textcut.char_budget`
    characters before any tokenizer sees them (a 50 MB document must not be tokenised whole to keep
    ``max_tokens`` tokens). Ordinary texts are untouched, and ``groups`` is returned as is (no copy, no
    cache file) when nothing is that long.

    Returns:
        ``(groups, number of texts cut)``.
    """
    import datasets
    import pyarrow.compute as pc

    from relforge.textcut import char_budget, cut_chars

    limit = char_budget(max_tokens)
    cols = [
        c for c in ("query", "positive", *negative_columns(groups.column_names)) if c in groups.column_names
    ]
    long = [c for c in cols if (pc.max(pc.utf8_length(groups.data.column(c))).as_py() or 0) > limit]
    if not long:
        return groups, 0
    data, n = groups.to_dict(), 0
    for c in long:
        cut = [cut_chars(t, max_tokens) if t is not None else (t, False) for t in data[c]]
        data[c] = [t for t, _ in cut]
        n += sum(was for _, was in cut)
    return datasets.Dataset.from_dict(data, features=groups.features), n


def _cut_texts(groups, cfg: TrainConfig) -> tuple[Any, int]:
    """:func:`cut_long_texts` at ``cfg.max_length``, the count printed on stderr when any text was cut."""
    from relforge.textcut import char_budget

    groups, n = cut_long_texts(groups, cfg.max_length)
    if n:
        from rich.console import Console

        Console(stderr=True).print(
            f"train: {n} texts longer than {char_budget(cfg.max_length)} characters cut before tokenising "
            f"(max_length {cfg.max_length} tokens)"
        )
    return groups, n


def to_format(groups, fmt: str, negatives: int | None = None, kind: str = "cross"):
    """Convert groups (query, positive, negative_1..n, labels) to the columns a loss expects."""
    import datasets

    cols = groups.column_names
    negs = negative_columns(cols)
    missing = [c for c in ("query", "positive") if c not in cols]
    if missing or not negs:
        raise DataError(
            f"groups lack column(s) {missing or ['negative_1']}; got {cols} — "
            "build them with `relforge dataset build`"
        )
    if negatives is not None:
        if negatives > len(negs):
            raise UsageError(
                f"negatives={negatives} but the groups have {len(negs)} (set --negatives <= {len(negs)})"
            )
        negs = negs[:negatives]
    if fmt == "group":
        out = groups.select_columns(["query", "positive", *negs])
        return out.rename_column("query", "anchor") if kind == "bi" else out
    if fmt == "soft":
        if "teacher" not in cols:
            raise DataError(
                f"soft losses (kl, margin_mse) need the 'teacher' column of `relforge dataset build`; got {cols}"
            )
        rows = groups.select_columns(["query", "positive", *negs, "teacher"])
        cols_out = {("anchor" if kind == "bi" else "query"): rows["query"], "positive": rows["positive"]}
        cols_out.update({c: rows[c] for c in negs})
        # built in memory: a .map() would write a cache file into the groups folder (a stage output)
        cols_out["scores"] = [[float(x) for x in t[: 1 + len(negs)]] for t in rows["teacher"]]
        return datasets.Dataset.from_dict(cols_out)
    if fmt == "pairs":
        q, d, y = [], [], []
        for row in groups.select_columns(["query", "positive", *negs]):
            for j, c in enumerate(["positive", *negs]):
                q.append(row["query"])
                d.append(row[c])
                y.append(1.0 if j == 0 else 0.0)
        return datasets.Dataset.from_dict({"query": q, "doc": d, "label": y})
    if fmt == "list":
        if "labels" not in cols:
            raise DataError(
                f"listwise losses need the 'labels' column of `relforge dataset build`; got {cols}"
            )
        rows = groups.select_columns(["query", "positive", *negs, "labels"])
        return datasets.Dataset.from_dict(
            {
                "query": rows["query"],
                "docs": [[r["positive"], *(r[c] for c in negs)] for r in rows],
                "labels": [r["labels"][: 1 + len(negs)] for r in rows],
            }
        )
    raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------- dev evaluation


@dataclass
class DevSet:
    """Dev data for evaluation during training: rerank ``run``'s top ``top_k`` and score nDCG@10."""

    corpus: Mapping[str, Document]
    queries: Mapping[str, Query]
    qrels: Qrels
    run: Run
    top_k: int = 50
    #: the document layout of the training groups (``groups.doc_fields``)
    doc_fields: tuple[str, ...] = DOC_FIELDS


#: a model's dev nDCG@10 and its per-query values (query ids sorted)
Scored = tuple[float, list[float]]


def dev_scores(model, dev: DevSet, kind: str, batch_size: int = 32, measure: str = "nDCG@10") -> Scored:
    """nDCG@10 (relforge.evaluate) of ``dev.run`` reranked by an in-memory model (torch), with its
    per-query values (sorted by query id) for paired tests between candidates."""
    from relforge.evaluate import evaluate
    from relforge.train.rerank import rerank

    qids = [q for q in dev.run if q in dev.qrels]
    run = {q: dev.run[q] for q in qids}
    reranked = rerank(
        "",
        dev.corpus,
        dev.queries,
        run,
        top_k=dev.top_k,
        kind=kind,
        backend="torch",
        batch_size=batch_size,
        model=model,
        doc_fields=dev.doc_fields,
    )
    res = evaluate(dev.qrels, {"model": reranked}, measures=[measure], permutation_rounds=0)
    per = res.per_query["model"][measure]
    return float(res.aggregates["model"][measure]), [per[q] for q in sorted(per)]


def dev_ndcg(model, dev: DevSet, kind: str, batch_size: int = 32, measure: str = "nDCG@10") -> float:
    """nDCG@10 (relforge.evaluate) of ``dev.run`` reranked by an in-memory model (torch)."""
    return dev_scores(model, dev, kind, batch_size, measure)[0]


def make_evaluator(dev: DevSet, kind: str, name: str = "dev"):
    """A sentence-transformers evaluator reporting ``{name}_ndcg@10`` of the reranked dev run."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    class RerankEvaluator(BaseEvaluator):
        def __init__(self):
            super().__init__()
            self.name = name
            self.primary_metric = "ndcg@10"

        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            was_training = getattr(model, "training", False)
            score = dev_ndcg(model, dev, kind)
            if was_training:
                model.train()
            metrics = self.prefix_name_to_metrics({"ndcg@10": score}, self.name)
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

    return RerankEvaluator()


# --------------------------------------------------------------------------- training


def _eval_at_end():
    """A TrainerCallback that evaluates (and saves) the last step too: with ``eval_steps`` not dividing
    the step count, HF Trainer would otherwise never score the final model, and best-model loading at
    the end would silently drop it from the candidates."""
    from transformers import TrainerCallback

    class EvalAtEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_evaluate = True
                control.should_save = True
            return control

    return EvalAtEnd()


def _load(groups):
    from relforge.dataset.groups import load_groups

    if isinstance(groups, (str, Path)):
        return load_groups(groups)
    return groups


def precision_plan(cfg: TrainConfig):
    """The training precision as a :class:`~relforge.precision.PrecisionPlan` (autocast: fp32 master weights).

    ``auto``: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU (relforge's CPU default before
    precision existed, kept: CPU bf16 training is opt-in, ``benchmarks/precision_train.py`` measures it).
    """
    import dataclasses

    import torch

    from relforge.precision import plan_precision

    cuda = torch.cuda.is_available()
    p = cfg.precision
    if p == "auto":
        p = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if p == "fp16" and not cuda:
        raise UsageError("precision 'fp16' needs a CUDA GPU; on CPU use fp32 or bf16 (set --precision)")
    plan = plan_precision(p, "cuda" if cuda else "cpu", autocast=True)
    return dataclasses.replace(plan, requested=cfg.precision)


def _precision(cfg: TrainConfig) -> dict[str, bool]:
    """TrainingArguments flags: ``bf16``/``fp16``, plus ``use_cpu`` for bf16 autocast on CPU."""
    plan = precision_plan(cfg)
    kw = {"bf16": plan.resolved == "bf16", "fp16": plan.resolved == "fp16"}
    if plan.device == "cpu" and plan.resolved == "bf16":
        kw["use_cpu"] = True  # transformers refuses bf16 without a GPU unless told it is on CPU
    return kw


def _args(cls, cfg: TrainConfig, ckpt: Path, n_rows: int, dev: DevSet | None, **extra):
    import math

    import torch

    steps_per_epoch = max(1, math.ceil(n_rows / cfg.batch_groups))
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.epochs)
    eval_steps = cfg.eval_steps or max(1, total // 4)
    kw: dict[str, Any] = dict(
        output_dir=str(ckpt),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_groups,
        per_device_eval_batch_size=cfg.batch_groups,
        learning_rate=cfg.lr,
        warmup_steps=int(round(cfg.warmup_ratio * total)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
        **_precision(cfg),
        **extra,
    )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch: data-parallel
        # every parameter is used in each step; the default (search unused ones) cannot see through the
        # CrossEncoder's output and fails with "marked as ready twice"
        kw["ddp_find_unused_parameters"] = False
        if not torch.cuda.is_available():
            kw["use_cpu"] = True  # without it HF Trainer stays single-process on CPU (gloo DDP with it)
    if dev is not None:
        kw.update(
            eval_strategy="steps",
            eval_steps=eval_steps,
            save_strategy="steps",
            save_steps=eval_steps,
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="eval_dev_ndcg@10",
            greater_is_better=True,
        )
    return cls(**kw), total


def _summary(trainer, cfg: TrainConfig, n_rows: int, group_size: int, seconds: float, dev) -> dict:
    import sentence_transformers
    import torch
    import transformers

    hist = trainer.state.log_history
    loss_curve = [{"step": h["step"], "loss": h["loss"]} for h in hist if "loss" in h]
    dev_curve = [
        {"step": h["step"], "ndcg@10": h["eval_dev_ndcg@10"]} for h in hist if "eval_dev_ndcg@10" in h
    ]
    steps = trainer.state.global_step
    world = int(getattr(trainer.args, "world_size", 1) or 1)  # > 1 under torchrun / accelerate launch
    return {
        "kind": cfg.kind,
        "loss": cfg.loss,
        "base": cfg.base,
        "groups": n_rows,
        "group_size": group_size,
        "steps": steps,
        "train_time_s": round(seconds, 2),
        "world_size": world,
        "pairs_per_s": round(steps * cfg.batch_groups * world * group_size / seconds, 2) if seconds else None,
        "precision": precision_plan(cfg).metadata(),
        "loss_curve": loss_curve,
        "dev_curve": dev_curve,
        "best_dev_ndcg@10": trainer.state.best_metric if dev is not None else None,
        "best_checkpoint_step": (
            int(Path(trainer.state.best_model_checkpoint).name.split("-")[-1])
            if dev is not None and trainer.state.best_model_checkpoint
            else None
        ),
        "config": cfg.model_dump(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
    }


def _finish(trainer, model, out: Path, ckpt: Path, summary: dict) -> dict:
    from relforge.train.run import TrainSummary

    summary["model_dir"] = str(out)
    if not trainer.is_world_process_zero():  # data-parallel run: rank 0 writes the model
        return summary
    model.save(str(out))
    shutil.rmtree(ckpt, ignore_errors=True)
    TrainSummary.model_validate(summary).write_in_model(out)
    return summary


def interpolate_states(start: dict, trained: dict, alpha: float) -> dict:
    """WiSE-FT's weight-space ensemble (Wortsman et al., 2022): ``(1 - alpha) * start + alpha * trained``
    for every floating-point tensor; integer buffers (position ids) are the trained model's."""
    return {
        k: _lerp(start[k], v, alpha) if v.is_floating_point() and k in start else v
        for k, v in trained.items()
    }


def _lerp(a, b, alpha: float):
    return (a.to(b.dtype) * (1.0 - alpha) + b * alpha).to(b.dtype)


def select_weights(
    model,
    score_fn: Callable[[Any], Scored],
    alphas: list[float],
    summary: dict,
    start: Scored,
    state: dict,
    rule: str = "best",
    p_min: float = 0.05,
) -> None:
    """Leave in ``model`` the chosen one of: the start (``state``, scored ``start``), the trained weights
    ``model`` holds (scored ``summary["best_dev_ndcg@10"]`` by the trainer) and, for each alpha of
    ``alphas``, their interpolation (WiSE-FT), scored by ``score_fn`` (dev nDCG@10 and its per-query
    values). ``summary`` records the choice and the curves.

    ``rule`` ``best``: the highest dev nDCG@10; ties go to the start, then to the smaller alpha.
    ``closest``: the candidate nearest the start (start, then increasing alpha, then the checkpoint) whose
    dev nDCG@10 is not significantly below the best's (paired randomisation test, p >= ``p_min``): when
    the dev questions cannot tell two candidates apart, keep the one that moved less from its start."""
    from relforge.evaluate.significance import paired_tests

    summary["start_dev_ndcg@10"] = start[0]
    summary["dev_curve"].insert(0, {"step": 0, "ndcg@10": start[0]})
    best = summary["best_dev_ndcg@10"]
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cands: list[tuple[float, str, Scored]] = [(0.0, "start", start)]
    curve = []
    for alpha in sorted(alphas):
        model.load_state_dict(interpolate_states(state, trained, alpha))
        scored = score_fn(model)
        curve.append({"alpha": alpha, "ndcg@10": scored[0]})
        cands.append((alpha, "interpolated", scored))
    if best is not None:
        model.load_state_dict(trained)
        cands.append((1.0, "trained", score_fn(model) if rule == "closest" else (best, [])))
    if curve:
        summary["interpolation_curve"] = curve
    top = min(cands, key=lambda c: (-c[2][0], c[0]))
    chosen = top
    if rule == "closest":
        tests = []
        for c in cands:
            p = 1.0 if c is top else paired_tests(c[2][1], top[2][1]).perm_p
            tests.append({"alpha": c[0], "ndcg@10": c[2][0], "p_vs_best": p})
        summary["selection_tests"] = tests
        chosen = next(c for c, t in zip(cands, tests, strict=True) if t["p_vs_best"] >= p_min)
    alpha, selected, (value, _) = chosen
    summary["selected"] = selected
    if selected == "start":
        model.load_state_dict(state)
        summary.update({"best_dev_ndcg@10": value, "best_checkpoint_step": 0})
    elif selected == "trained":
        model.load_state_dict(trained)
        summary["best_dev_ndcg@10"] = value
    else:
        model.load_state_dict(interpolate_states(state, trained, alpha))
        summary.update({"best_dev_ndcg@10": value, "interpolation_alpha": alpha})


def _train_and_finish(
    trainer, model, out: Path, ckpt: Path, cfg: TrainConfig, n_rows: int, group_size: int, dev, n_cut: int = 0
) -> dict:
    """Train (timed), keep the best checkpoint, write the model and its summary: shared by both kinds.

    With a dev set and ``cfg.keep_start``, the untrained start is a candidate too (step 0, scored before
    the first step): when no checkpoint beats it on the dev set, the start is what is written, and the
    summary says so (``selected: start``). A run then never ships a model its own dev set rates below
    where it began."""
    start: tuple[Scored, dict] | None = None
    if dev is not None and cfg.keep_start:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        start = (dev_scores(model, dev, cfg.kind), state)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    summary = _summary(trainer, cfg, n_rows, group_size, seconds, dev)
    summary["texts_cut_by_chars"] = n_cut
    if start is not None:
        score_fn = functools.partial(dev_scores, dev=dev, kind=cfg.kind)
        select_weights(model, score_fn, cfg.interpolate, summary, *start, cfg.selection, cfg.selection_p)
    elif dev is not None:
        summary["selected"] = "trained"
    return _finish(trainer, model, out, ckpt, summary)


def train_cross_encoder(
    groups, out_dir: str | Path, config: TrainConfig | None = None, dev: DevSet | None = None
) -> dict:
    """Fine-tune a CrossEncoder (num_labels=1) on relforge groups.

    Args:
        groups: a ``datasets.Dataset`` from :func:`relforge.dataset.build_groups` or its folder.
        out_dir: where the model goes; ``CrossEncoder(out_dir)`` loads it as is.
        config: :class:`TrainConfig` (loss ``lce`` by default; ``bce``, ``lambda``, ``listnet``, ``mnrl``).
        dev: optional :class:`DevSet`; nDCG@10 is measured during training and the best checkpoint kept.

    Returns:
        The training summary (also written to ``out_dir/training_summary.json``): train time, steps,
        pairs/s, loss curve, dev curve, best dev nDCG@10, config, versions.
    """
    import transformers
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )

    from relforge.train.rerank import load_cross_encoder

    cfg = config or TrainConfig()
    if cfg.kind != "cross":
        raise UsageError(f"train_cross_encoder got kind {cfg.kind!r}; use train_bi_encoder for 'bi'")
    spec = check_loss(cfg.loss, "cross")
    ds, n_cut = _cut_texts(_load(groups), cfg)
    train = to_format(ds, spec.fmt, cfg.negatives)
    group_size = 1 + len(negative_columns(ds.column_names)[: cfg.negatives])
    out, ckpt = Path(out_dir), Path(out_dir) / ".checkpoints"
    transformers.set_seed(cfg.seed)
    model = load_cross_encoder(cfg.base, cfg.max_length)
    args, _ = _args(CrossEncoderTrainingArguments, cfg, ckpt, len(ds), dev)
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=train,
        loss=spec.build(model, cfg),
        evaluator=make_evaluator(dev, "cross") if dev is not None else None,
        callbacks=[_eval_at_end()] if dev is not None else None,
    )
    return _train_and_finish(trainer, model, out, ckpt, cfg, len(ds), group_size, dev, n_cut)


def train_bi_encoder(
    groups, out_dir: str | Path, config: TrainConfig | None = None, dev: DevSet | None = None
) -> dict:
    """Fine-tune a SentenceTransformer (dense reranker/retriever) on the same groups: dense LCE
    (softmax over the query's own group, cosine × ``scale``) or MultipleNegativesRankingLoss
    (``mnrl``: in-batch negatives plus each group's hard negatives).

    Args:
        groups: a ``datasets.Dataset`` from :func:`relforge.dataset.build_groups` or its folder.
        out_dir: where the model goes; ``SentenceTransformer(out_dir)`` loads it.
        config: :class:`TrainConfig` with ``kind="bi"`` (loss ``lce`` or ``mnrl``).
        dev: optional :class:`DevSet` (cosine rerank of the dev run, nDCG@10, best checkpoint kept).

    Returns:
        The training summary (also written to ``out_dir/training_summary.json``).
    """
    import transformers
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.base.sampler import BatchSamplers

    from relforge.models import resolve_model

    cfg = (config or TrainConfig(kind="bi")).model_copy()
    if cfg.kind != "bi":
        cfg = cfg.model_copy(update={"kind": "bi"})
    spec = check_loss(cfg.loss, "bi")
    ds, n_cut = _cut_texts(_load(groups), cfg)
    train = to_format(ds, spec.fmt, cfg.negatives, kind="bi")
    group_size = 1 + len(negative_columns(ds.column_names)[: cfg.negatives])
    out, ckpt = Path(out_dir), Path(out_dir) / ".checkpoints"
    transformers.set_seed(cfg.seed)
    model = SentenceTransformer(resolve_model(cfg.base))
    model.max_seq_length = cfg.max_length
    args, _ = _args(Args, cfg, ckpt, len(ds), dev, batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train,
        loss=spec.build(model, cfg),
        evaluator=make_evaluator(dev, "bi") if dev is not None else None,
        callbacks=[_eval_at_end()] if dev is not None else None,
    )
    return _train_and_finish(trainer, model, out, ckpt, cfg, len(ds), group_size, dev, n_cut)
