"""Training on transformers' :class:`~transformers.Trainer`: the grade-token loss over (cached) hidden states.

The optimisation is the recipe's: torch AdamW (``lr``, ``weight_decay``), linear schedule with
``int(warmup_ratio * total_steps)`` warmup steps, ``grad_accum`` batches per step (each batch's loss
divided by ``grad_accum``), gradient clipping at ``max_grad_norm``, and a seeded order of the training
pairs per epoch (:class:`EpochShuffle`: epoch e is the e-th ``random.Random(seed).shuffle``). The
judge-specific parts are a :class:`JudgeTrainer` (``compute_loss`` on the label's first token or the
whole completion, the training dataloader) and a :class:`EpochAgreement` callback that scores the
validation pairs after every epoch and keeps the best adapter.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from relforge.judge.finetune.encode import Collator, Encoded

if TYPE_CHECKING:
    from relforge.judge.finetune.run import JudgeRun


class EpochShuffle:
    """Sampler of ``range(n)``: epoch e (``set_epoch``, 0-based) is the (e+1)-th shuffle of one seeded RNG."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        rng = random.Random(self.seed)
        for _ in range(epoch + 1):
            order = list(range(self.n))
            rng.shuffle(order)
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))

    def __len__(self) -> int:
        return self.n


class TrainCollator:
    """A training batch: the model inputs (:class:`Collator`) plus what the loss needs per pair."""

    def __init__(self, collate: Collator, label_index: dict[int, int]) -> None:
        self.collate, self.label_index = collate, label_index

    def __call__(self, items: list[Encoded]) -> dict[str, Any]:
        import torch

        batch = self.collate(items, True)
        batch["weight"] = torch.tensor([x.ex.weight for x in items])
        batch["grade_index"] = torch.tensor([self.label_index[x.ex.grade] for x in items])
        batch["completion_ids"] = [x.completion_ids for x in items]
        return batch


def grade_loss(logits: Any, batch: dict[str, Any], loss: str, label_ids: list[int]) -> Any:
    """Weighted loss of a batch: on the label's first token (``choices``) or the whole completion (``lm``).

    ``logits`` are the last ``keep`` positions of left-padded sequences, so the ends are aligned.
    """
    import torch
    import torch.nn.functional as F

    keep, dev = logits.shape[1], logits.device
    comp = batch["completion_ids"]
    w = batch["weight"].to(dev)
    if loss == "choices":
        pos = torch.tensor([keep - 1 - len(c) for c in comp], device=dev)
        lg = logits[torch.arange(len(comp), device=dev), pos][:, label_ids]
        per = F.cross_entropy(lg, batch["grade_index"].to(dev), reduction="none")
    else:
        per = torch.stack(
            [
                F.cross_entropy(logits[i, keep - 1 - len(c) : keep - 1], torch.tensor(c, device=dev))
                for i, c in enumerate(comp)
            ]
        )
    return (per * w).sum() / w.sum()


class JudgeTrainer(Trainer):
    """``Trainer`` over the run's encoded pairs; the forward is the run's (the top window when caching)."""

    # compute_loss divides each batch's loss by grad_accum itself, also in a short last step of an epoch (the
    # recipe's scaling); a transformers without this switch divides by the step's batch count instead
    loss_is_scaled_for_ga = True
    _scales_itself = "loss_is_scaled_for_ga" in vars(Trainer)

    def __init__(self, run: JudgeRun, args: TrainingArguments, **kw: Any) -> None:
        self.run = run
        self.keep = max((len(x.completion_ids) for x in run.enc_train), default=1) + 1
        self.batch_losses: list[float] = []
        collator = TrainCollator(run.collate, run.label_index)
        super().__init__(
            model=run.model, args=args, train_dataset=run.enc_train, data_collator=collator, **kw
        )

    def get_train_dataloader(self) -> Any:
        import torch
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.train_dataset,
            batch_size=self.args.per_device_train_batch_size,
            sampler=EpochShuffle(len(self.train_dataset), self.args.seed),
            collate_fn=self.data_collator,
            generator=torch.Generator(),  # the loader's base seed must not consume the global (dropout) RNG
        )
        return self.accelerator.prepare(loader)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        keys = ("input_ids", "inputs_embeds", "attention_mask")
        logits = self.run.forward({k: inputs[k] for k in keys if k in inputs}, self.keep)
        loss = grade_loss(logits, inputs, self.run.cfg.loss, self.run.label_ids)
        self.batch_losses.append(float(loss.detach()))
        self.run.train_progress(len(inputs["completion_ids"]))
        if self._scales_itself:
            loss = loss / self.args.gradient_accumulation_steps
        return (loss, logits) if return_outputs else loss

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        return 0  # cached hidden states have no token ids to count


class EpochAgreement(TrainerCallback):
    """Per epoch: the mean batch loss and time, then the run's validation agreement and best-adapter saving."""

    def __init__(self, run: JudgeRun, trainer: JudgeTrainer) -> None:
        self.run, self.trainer, self.epoch, self.t0 = run, trainer, 0, 0.0

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.epoch += 1
        self.trainer.batch_losses.clear()
        self.run.start_epoch(self.epoch)
        self.t0 = time.time()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        seconds = time.time() - self.t0
        losses = self.trainer.batch_losses
        self.run.end_epoch(self.epoch, seconds, sum(losses) / max(1, len(losses)))


def training_args(cfg: Any, n_train: int, output_dir: str, device: str) -> TrainingArguments:
    """The recipe's optimisation as ``TrainingArguments`` (no checkpoints, logs or evaluation of its own)."""
    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum))
    total = max(1, steps_per_epoch * cfg.epochs)
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=int(cfg.warmup_ratio * total),
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        use_cpu=device == "cpu",
    )


def train(run: JudgeRun) -> None:
    """All epochs of ``run`` on a :class:`JudgeTrainer` with the :class:`EpochAgreement` callback."""
    import torch

    if run.cfg.epochs == 0:
        return
    with tempfile.TemporaryDirectory(prefix="relforge-trainer-") as tmp:
        args = training_args(run.cfg, len(run.enc_train), tmp, run.device)
        # Trainer.__init__ re-seeds torch: keep the run's stream (seeded, LoRA init, then dropout) as it was
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        trainer = JudgeTrainer(run, args)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        trainer.remove_callback(PrinterCallback)  # no log lines on stdout: the run logs and shows progress
        trainer.add_callback(EpochAgreement(run, trainer))
        trainer.train()
