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

Modules: :mod:`.data` (pairs, split, balancing), :mod:`.model` (base, LoRA, saving), :mod:`.encode`
(token ids, batches, the frozen-bottom cache), :mod:`.train` (transformers ``Trainer`` with the grade
loss and the per-epoch agreement callback), :mod:`.metrics` (agreement, plot, prediction files),
:mod:`.run` (:func:`finetune_judge`), :mod:`.files` and :mod:`.readme` (the adapter folder).
"""

from relforge.judge.finetune.data import (
    Example,
    balance_examples,
    class_counts,
    data_hash,
    split_by_query,
)
from relforge.judge.finetune.encode import Encoded
from relforge.judge.finetune.files import (
    META_FILE,
    METRICS_FILE,
    PLOT_FILE,
    PREDICTIONS_FILE,
    TEST_PREDICTIONS_FILE,
    read_adapter_meta,
    shipped_adapter_dir,
)
from relforge.judge.finetune.metrics import agreement_metrics, plot_metrics
from relforge.judge.finetune.model import load_base
from relforge.judge.finetune.readme import write_adapter_readme
from relforge.judge.finetune.run import check_with_judge, finetune_judge

__all__ = [
    "META_FILE",
    "METRICS_FILE",
    "PLOT_FILE",
    "PREDICTIONS_FILE",
    "TEST_PREDICTIONS_FILE",
    "Encoded",
    "Example",
    "agreement_metrics",
    "balance_examples",
    "check_with_judge",
    "class_counts",
    "data_hash",
    "finetune_judge",
    "load_base",
    "plot_metrics",
    "read_adapter_meta",
    "shipped_adapter_dir",
    "split_by_query",
    "write_adapter_readme",
]
