"""The real pipeline stages, wired to the stage packages (imported lazily inside each stage body).

:func:`build_stages` is the stage table: one small spec function per stage says what it reads and writes
(:mod:`relforge.pipeline.layout`), which part of the configuration it depends on (hashed: a changed value
re-runs it) and when it is enabled. The stage bodies live beside it:

- :mod:`~relforge.pipeline.stages_data`: import, generate, retrieve;
- :mod:`~relforge.pipeline.stages_judge`: judge_finetune, judge (and who the judge is);
- :mod:`~relforge.pipeline.stages_agreement`: agreement;
- :mod:`~relforge.pipeline.stages_train`: groups, train;
- :mod:`~relforge.pipeline.stages_eval`: rerank, evaluate, evaluate_extra, report;
- :mod:`~relforge.pipeline.stages_ablation`: ablation.

The run folder's layout is described in :mod:`relforge.pipeline.layout`.
"""

from __future__ import annotations

from typing import Any

from relforge.config import PipelineConfig
from relforge.data.io import resolve_data_source
from relforge.pipeline import layout
from relforge.pipeline.common import (
    SYSTEMS,
    VARIANTS,
    backbone_model,
    dump,
    group_variants,
)
from relforge.pipeline.runner import Stage
from relforge.pipeline.stages_ablation import nested_subsets, stage_ablation
from relforge.pipeline.stages_agreement import cosine_agreement, flat_agreement, stage_agreement
from relforge.pipeline.stages_data import stage_generate, stage_import, stage_retrieve
from relforge.pipeline.stages_eval import (
    comparison_pairs,
    describe_systems,
    run_names,
    stage_evaluate,
    stage_evaluate_extra,
    stage_report,
    stage_rerank,
)
from relforge.pipeline.stages_judge import (
    SHIPPED_ADAPTER,
    judge_adapter,
    judge_labeller,
    judge_preset,
    preset_cv,
    shipped_adapter_dir,
    stage_judge,
    stage_judge_finetune,
)
from relforge.pipeline.stages_train import bucket_summary, reranker_rel, stage_groups, stage_train

__all__ = [
    "SHIPPED_ADAPTER",
    "SYSTEMS",
    "VARIANTS",
    "bucket_summary",
    "build_stages",
    "comparison_pairs",
    "cosine_agreement",
    "describe_systems",
    "flat_agreement",
    "judge_adapter",
    "judge_labeller",
    "judge_preset",
    "nested_subsets",
    "preset_cv",
    "reranker_rel",
    "run_names",
    "shipped_adapter_dir",
    "stage_ablation",
    "stage_agreement",
    "stage_evaluate",
    "stage_evaluate_extra",
    "stage_generate",
    "stage_groups",
    "stage_import",
    "stage_judge",
    "stage_judge_finetune",
    "stage_report",
    "stage_rerank",
    "stage_retrieve",
    "stage_train",
]

# --------------------------------------------------------------------------- shared pieces of the table


def _dev_files(cfg: PipelineConfig) -> list[str]:
    return [layout.DEV_QUERIES, layout.DEV_QRELS] if cfg.data.dev_split else []


def _train_files(cfg: PipelineConfig) -> list[str]:
    return [layout.TRAIN_QUERIES, layout.TRAIN_QRELS] if cfg.data.train_split else []


def _dev_inputs(cfg: PipelineConfig) -> list[str]:
    """What checkpoint selection reads (``data.dev_split``): the dev questions and their first stage."""
    if not cfg.data.dev_split:
        return []
    return [*_dev_files(cfg), layout.first_stage_dev(cfg.rerank.first_stage)]


def _dev_config(cfg: PipelineConfig) -> dict[str, Any]:
    return (
        {"dev": {"first_stage": cfg.rerank.first_stage, "top_k": cfg.train.dev_top_k}}
        if cfg.data.dev_split
        else {}
    )


def _preset_fingerprint(cfg: PipelineConfig) -> dict[str, Any]:
    """The preset's content in the stage config: a re-fitted preset file re-runs judge and agreement."""
    preset = judge_preset(cfg)
    return {"preset": preset.model_dump(mode="json", exclude={"measured"})} if preset is not None else {}


def _adapter_inputs(cfg: PipelineConfig) -> list[str]:
    a = judge_adapter(cfg)
    return [a] if a is not None else []


def _trained_models(cfg: PipelineConfig) -> list[str]:
    return [layout.train_model(v) for v in cfg.train.variants]


def _evaluate_config(cfg: PipelineConfig) -> dict[str, Any]:
    return cfg.evaluate.model_dump(mode="json", exclude={"extra"})


def _human_data(cfg: PipelineConfig) -> str:
    return str(resolve_data_source(cfg.judge.agreement.human, "judge.agreement.human"))


# --------------------------------------------------------------------------- one spec per stage


def _import_stage() -> Stage:
    return Stage(
        "import",
        stage_import,
        inputs=lambda k: [str(resolve_data_source(k.data.source))],
        outputs=lambda k: (
            [layout.CORPUS, layout.TEST_QUERIES, layout.TEST_QRELS] + _train_files(k) + _dev_files(k)
        ),
        config=lambda k: {"data": dump(k.data)},
        description="read the documents and pick the held-out human questions",
    )


def _generate_config(cfg: PipelineConfig) -> dict[str, Any]:
    if cfg.data.train_split:
        return {"human_split": cfg.data.train_split}
    return {
        "generate": dump(cfg.generate),
        "llm": cfg.llm_for("generate"),
        "options": cfg.llm_options("generate"),
    }


def _generate_stage() -> Stage:
    return Stage(
        "generate",
        stage_generate,
        inputs=lambda k: [layout.CORPUS] + _train_files(k),
        outputs=lambda k: [layout.GEN_QUERIES, layout.GEN_QRELS],
        config=_generate_config,
        enabled=lambda k: k.generate.enabled,
        description="LLM writes queries for documents (or data.train_split's human questions)",
    )


def _retrieve_outputs(cfg: PipelineConfig) -> list[str]:
    methods = cfg.retrieve.methods
    return (
        [layout.CANDIDATES, layout.NEGATIVES]
        + [layout.first_stage_test(m) for m in methods]
        + ([layout.first_stage_dev(m) for m in methods] if cfg.data.dev_split else [])
    )


def _retrieve_stage() -> Stage:
    return Stage(
        "retrieve",
        stage_retrieve,
        inputs=lambda k: [
            layout.CORPUS,
            layout.TEST_QUERIES,
            layout.GEN_QUERIES,
            layout.GEN_QRELS,
            *_dev_files(k)[:1],
        ],
        outputs=_retrieve_outputs,
        config=lambda k: {"retrieve": dump(k.retrieve)},
        description="BM25 / dense / hybrid + mining",
        version="2",  # 2: the mined negatives as candidate records, retrieve/negatives.jsonl
    )


def _judge_finetune_stage() -> Stage:
    return Stage(
        "judge_finetune",
        stage_judge_finetune,
        inputs=lambda k: [str(resolve_data_source(k.judge_finetune.data, "judge_finetune.data"))],
        outputs=lambda k: [layout.JUDGE_FINETUNE],
        config=lambda k: {"ft": dump(k.judge_finetune), "base": k.judge_finetune.base or k.llm_for("judge")},
        enabled=lambda k: k.judge.enabled and k.judge_finetune.enabled,
        description="LoRA fine-tuning of the judge on human labels",
    )


def _judge_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "judge": dump(cfg.judge.model_copy(update={"agreement": None})),
        "llm": cfg.llm_for("judge"),
        "options": cfg.llm_options("judge"),
        **_preset_fingerprint(cfg),
    }


def _judge_stage() -> Stage:
    pairs_from = [layout.CORPUS, layout.GEN_QUERIES, layout.GEN_QRELS, layout.NEGATIVES]
    return Stage(
        "judge",
        stage_judge,
        inputs=lambda k: pairs_from + _adapter_inputs(k),
        outputs=lambda k: [layout.JUDGMENTS, layout.JUDGE_QRELS],
        config=_judge_config,
        enabled=lambda k: k.judge.enabled,
        description="LLM judge grades positives and candidates",
    )


def _agreement_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "judge": dump(cfg.judge),
        "llm": cfg.llm_for("judge"),
        "seed": cfg.seed,
        "options": cfg.llm_options("judge"),
        **_preset_fingerprint(cfg),
    }


def _agreement_stage() -> Stage:
    return Stage(
        "agreement",
        stage_agreement,
        inputs=lambda k: [_human_data(k)] + _adapter_inputs(k),
        outputs=lambda k: [layout.AGREEMENT],
        config=_agreement_config,
        enabled=lambda k: k.judge.enabled and k.judge.agreement.enabled,
        description="judge vs held-out human labels, next to MiniLM cosine",
    )


def _groups_inputs(cfg: PipelineConfig) -> list[str]:
    judged = set(group_variants(cfg)) - {"plain"}
    return [
        layout.CORPUS,
        layout.GEN_QUERIES,
        layout.GEN_QRELS,
        layout.CANDIDATES,
        layout.NEGATIVES,
    ] + ([layout.JUDGMENTS] if judged else [])


def _groups_stage() -> Stage:
    return Stage(
        "groups",
        stage_groups,
        inputs=_groups_inputs,
        outputs=lambda k: [layout.dataset(v) for v in group_variants(k)] + [layout.DATASET_SUMMARY],
        config=lambda k: {"groups": dump(k.groups), "variants": group_variants(k)},
        description="re-bucket hard negatives into LCE groups (plain, judged, soft)",
        version="2",  # 2: each set's summary counts its negatives by source
    )


def _train_stage() -> Stage:
    return Stage(
        "train",
        stage_train,
        inputs=lambda k: [layout.dataset(v) for v in k.train.variants] + _dev_inputs(k),
        outputs=_trained_models,
        config=lambda k: {"train": dump(k.train), **_dev_config(k)},
        description="reranker with LCE (cross- or bi-encoder), per variant",
    )


def _rerank_stage() -> Stage:
    return Stage(
        "rerank",
        stage_rerank,
        inputs=lambda k: (
            [layout.CORPUS, layout.TEST_QUERIES, layout.first_stage_test(k.rerank.first_stage)]
            + _trained_models(k)
        ),
        outputs=lambda k: [rel for rel in run_names(k).values() if rel.startswith(layout.RERANK_DIR)],
        config=lambda k: {"rerank": dump(k.rerank), "backbone": backbone_model(k)},
        description="rerank the held-out questions' candidates",
    )


def _evaluate_stage() -> Stage:
    return Stage(
        "evaluate",
        stage_evaluate,
        inputs=lambda k: [layout.TEST_QRELS] + list(run_names(k).values()),
        outputs=lambda k: [layout.METRICS_JSON, layout.METRICS_CSV],
        config=lambda k: {"evaluate": _evaluate_config(k)},
        description="metrics + significance vs BM25",
    )


def _evaluate_extra_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "evaluate": dump(cfg.evaluate),
        "rerank": dump(cfg.rerank),
        "retrieve": dump(cfg.retrieve),
        "backbone": backbone_model(cfg),
    }


def _evaluate_extra_stage() -> Stage:
    return Stage(
        "evaluate_extra",
        stage_evaluate_extra,
        inputs=lambda k: [str(resolve_data_source(e.source)) for e in k.evaluate.extra] + _trained_models(k),
        outputs=lambda k: [layout.EXTRA_SUMMARY],
        config=_evaluate_extra_config,
        enabled=lambda k: bool(k.evaluate.extra),
        description="every system on the evaluate.extra collections (e.g. out of domain)",
    )


def _ablation_inputs(cfg: PipelineConfig) -> list[str]:
    return (
        [
            layout.CORPUS,
            layout.TEST_QUERIES,
            layout.TEST_QRELS,
            layout.first_stage_test(cfg.rerank.first_stage),
            layout.METRICS_JSON,
        ]
        + [layout.dataset(v) for v in cfg.ablation.variants]
        + _dev_inputs(cfg)
    )


def _ablation_config(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        **_dev_config(cfg),
        "ablation": dump(cfg.ablation),
        "train": dump(cfg.train),
        "rerank": dump(cfg.rerank),
        "evaluate": _evaluate_config(cfg),
    }


def _ablation_stage() -> Stage:
    return Stage(
        "ablation",
        stage_ablation,
        inputs=_ablation_inputs,
        outputs=lambda k: [layout.ABLATION_JSON],
        config=_ablation_config,
        enabled=lambda k: bool(k.ablation.sizes),
        description="dataset-size ablation",
    )


def _report_inputs(cfg: PipelineConfig) -> list[str]:
    out = [layout.METRICS_JSON]
    if cfg.judge.enabled:
        out.append(layout.JUDGMENTS)
        if cfg.judge.agreement.enabled:
            out.append(layout.AGREEMENT)
    out += [layout.dataset(v) for v in group_variants(cfg)]
    if cfg.ablation.sizes:
        out.append(layout.ABLATION_JSON)
    if cfg.evaluate.extra:
        out.append(layout.EXTRA_SUMMARY)
    return out


def _report_stage() -> Stage:
    return Stage(
        "report",
        stage_report,
        inputs=_report_inputs,
        outputs=lambda k: [layout.REPORT],
        config=lambda k: {"report": dump(k.report)},
        enabled=lambda k: k.report.enabled,
        description="report.html",
        version="1",
    )


#: the stage table, in pipeline order
STAGE_SPECS = (
    _import_stage,
    _generate_stage,
    _retrieve_stage,
    _judge_finetune_stage,
    _judge_stage,
    _agreement_stage,
    _groups_stage,
    _train_stage,
    _rerank_stage,
    _evaluate_stage,
    _evaluate_extra_stage,
    _ablation_stage,
    _report_stage,
)


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    """The pipeline's stages in order (disabled ones report themselves as such in the plan).

    ``cfg`` is not read here: each stage's inputs, outputs, config and enabled are functions of it."""
    del cfg
    return [spec() for spec in STAGE_SPECS]
