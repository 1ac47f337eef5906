"""The pipeline's one configuration file: :class:`PipelineConfig` composes every stage's config model.

Each stage keeps its own pydantic model with all defaults in ``relforge/<stage>/config.py``; the
pipeline's section for that stage *extends* it with the few pipeline-only keys (which LLM, which
adapter, how many documents...). So a YAML section accepts exactly the stage's own settings plus those
keys, and every default still lives in one place. Unknown keys and wrong types are errors, reported
one per line as ``config.yaml: judge.mode: ...`` (:func:`load_config`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relforge.data.config import ImportConfig
from relforge.engine.config import EngineConfig
from relforge.errors import DataError, MissingInputError
from relforge.precision import PrecisionSetting  # the pipeline's precision values (docs/precision.md)
from relforge.types import DocFields


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stage_model(module: str, *names: str) -> type[BaseModel]:
    """The stage's config class, or an empty strict model while that stage is not installed."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return Strict
    for n in names:
        cls = getattr(mod, n, None)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls
    return Strict


GenerateConfig = _stage_model("relforge.generate.config", "GenerateConfig")
RetrieveConfig = _stage_model("relforge.retrieve.config", "RetrieveConfig")
RetrieveStageConfig = _stage_model("relforge.retrieve.config", "RetrieveStageConfig")
MiningConfig = _stage_model("relforge.retrieve.config", "MiningConfig")
JudgeConfig = _stage_model("relforge.judge.config", "JudgeConfig")
AgreementConfig = _stage_model("relforge.judge.config", "AgreementConfig")
FinetuneConfig = _stage_model("relforge.judge.finetune_config", "FinetuneConfig")
GroupConfig = _stage_model("relforge.dataset.config", "GroupConfig")
DatasetConfig = _stage_model("relforge.dataset.config", "DatasetConfig")
TrainConfig = _stage_model("relforge.train.config", "TrainConfig", "CrossEncoderConfig")
RerankConfig = _stage_model("relforge.train.config", "RerankConfig")
EvalConfig = _stage_model("relforge.evaluate.config", "EvalConfig", "EvaluateConfig")


def stage_part(section: BaseModel, base: type[BaseModel], **overrides: Any) -> Any:
    """Build the stage's own config object from a pipeline section (drops the pipeline-only keys)."""
    data = section.model_dump(include=set(base.model_fields))
    data.update(overrides)
    return base(**data)


# --------------------------------------------------------------------------- sections


class DataSection(ImportConfig):
    """Where the documents and the held-out human questions come from: the import stage's
    :class:`~relforge.data.config.ImportConfig` (``source``, splits, caps, seed), as is."""


class LLMSection(Strict):
    """The default LLM of generate and judge (each may override it)."""

    #: ``smollm2``, ``hf:<id|dir|file.gguf>``, ``openai:<base_url>#<model>``, ``llamacpp:<file.gguf>``
    spec: str = "smollm2"
    batch_size: int = Field(8, ge=1)
    #: extra keyword arguments for ``load_llm`` (e.g. ``api_key_env``, ``max_concurrency``)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, options: dict[str, Any]) -> dict[str, Any]:
        from relforge.llm.secrets import check_no_secrets

        check_no_secrets(options, "llm.options")  # before anything is written (config.yaml, manifest)
        return options


class GenerateSection(GenerateConfig):  # type: ignore[misc, valid-type]
    """Synthetic queries: ``GenerateConfig`` (``select.sample`` = how many documents) + which LLM."""

    enabled: bool = True
    #: LLM spec (None: ``llm.spec``)
    llm: str | None = None
    #: local (hf) LLM precision (None: ``llm.options.precision``, else the top-level ``precision``)
    precision: PrecisionSetting | None = None


class RetrieveSection(RetrieveStageConfig):  # type: ignore[misc, valid-type]
    """First-stage retrieval: ``RetrieveStageConfig`` (``method`` = candidates to judge, ``methods`` = the
    held-out questions' runs, ``mining``), as is."""


class AgreementSection(AgreementConfig):  # type: ignore[misc, valid-type]
    """Judge vs held-out human labels (the bundled LiveQA-Med validation queries): ``AgreementConfig`` +
    whether it runs and where the human grades come from."""

    enabled: bool = True
    #: BEIR folder with human qrels: ``sample:liveqa-med`` or a path
    human: str = "sample:liveqa-med"


class JudgeSection(JudgeConfig):  # type: ignore[misc, valid-type]
    """The LLM judge: ``JudgeConfig`` + LLM, adapter, and how many candidates per query."""

    enabled: bool = True
    llm: str | None = None
    #: local (hf) LLM precision (None: ``llm.options.precision``, else the top-level ``precision``)
    precision: PrecisionSetting | None = None
    #: ``auto`` (the LoRA adapter shipped in the package when the judge LLM is the packaged SmolLM2,
    #: else none), ``shipped``, ``finetune`` (the judge_finetune stage's output), a folder, or null
    #: (zero-shot). Each synthetic query's source document and its ``retrieve.mining.num_negatives``
    #: mined candidates are judged.
    adapter: str | None = "auto"
    #: ``best`` (the labeller relforge ships: ``relforge judge --preset best``, docs/judge-preset.md), a preset
    #: JSON file, or null (the LLM judge above). A preset fixes model, features and calibration: the LLM-judge
    #: keys (``PRESET_CONFLICTS``) are refused when set to anything but their default.
    preset: str | None = None
    agreement: AgreementSection = Field(default_factory=AgreementSection)

    @model_validator(mode="after")
    def _preset_alone(self) -> JudgeSection:
        if self.preset is None:
            return self
        clash = [
            k
            for k in PRESET_CONFLICTS
            if k in self.model_fields_set and getattr(self, k) != type(self).model_fields[k].default
        ]
        if "zero_shot" in self.agreement.model_fields_set and self.agreement.zero_shot:
            clash.append("agreement.zero_shot")
        if clash:
            raise ValueError(
                f"judge.preset {self.preset!r} fixes the model, features and calibration; remove "
                + ", ".join(f"judge.{k}" for k in clash)
                + " (or set judge.preset to null to use the LLM judge)"
            )
        return self


#: judge keys that configure the LLM judge and mean nothing with ``judge.preset``
PRESET_CONFLICTS = (
    "llm",
    "precision",
    "adapter",
    "template",
    "mode",
    "max_doc_tokens",
    "thresholds",
    "max_new_tokens",
    "reasoning_max_new_tokens",
    "retry_temperature",
    "reasoning",
    "calibrate_metric",
)


class FinetuneSection(FinetuneConfig):  # type: ignore[misc, valid-type]
    """Optional judge fine-tuning inside the pipeline (``judge.adapter: finetune`` uses its output)."""

    enabled: bool = False
    #: base LLM spec (None: ``judge.llm`` or ``llm.spec``)
    base: str | None = None
    #: human-labelled BEIR folder (corpus, queries, qrels)
    data: str = "sample:liveqa-med"

    @field_validator("epochs")
    @classmethod
    def _trains(cls, v: int) -> int:
        """In the pipeline the judge uses the adapter, so it must be trained (``relforge judge finetune
        --epochs 0`` stays available as a zero-shot evaluation)."""
        if v < 1:
            raise ValueError(
                f"Input should be greater than or equal to 1 (got {v}): the judge uses this adapter"
            )
        return v


class GroupsSection(DatasetConfig):  # type: ignore[misc, valid-type]
    """LCE groups from the judged candidates (:class:`relforge.dataset.config.DatasetConfig`: the
    ``GroupConfig`` rules plus ``soft_policies``, the bucket policies of the ``soft`` training variant)."""


class TrainSection(TrainConfig):  # type: ignore[misc, valid-type]
    """Reranker training (``TrainConfig``: cross-encoder, or bi-encoder with ``kind: bi``), once per variant.

    ``plain``: mined negatives without judge labels (the baseline); ``judged``: the judge's re-bucketed
    groups (hard bucket rules); ``soft``: the judged groups under ``groups.soft_policies`` trained with
    ``soft_loss`` against the judge's expected grades. All start from the same backbone with the same
    settings.
    """

    variants: list[Literal["plain", "judged", "soft"]] = Field(default_factory=lambda: ["plain", "judged"])
    #: the loss of the ``soft`` variant: ``kl`` (listwise KL to the teacher) or ``margin_mse`` (GPL)
    soft_loss: Literal["kl", "margin_mse"] = "kl"
    #: the dev run's depth reranked to choose the checkpoint (``data.dev_split``; ``relforge train
    #: --dev-top-k``); None: ``rerank.top_k``, the depth the test questions are reranked to (set at load)
    dev_top_k: int | None = Field(None, ge=1)


class RerankSection(RerankConfig):  # type: ignore[misc, valid-type]
    """Reranking the evaluation questions' first-stage candidates (the fields of
    :class:`relforge.train.config.RerankConfig`, plus the pipeline's own)."""

    #: which first-stage run is reranked
    first_stage: Literal["bm25", "dense", "hybrid"] = "hybrid"
    #: the pipeline reranks a shorter list than ``relforge rerank`` (100): its CPU budget
    top_k: int = Field(20, ge=1)
    #: also rerank with the untrained backbone (as a bi-encoder: cosine of its embeddings)
    backbone: bool = True


class ExtraCollection(Strict):
    """A further BEIR test collection every system is also scored on (e.g. out of domain).

    ``mode: pool`` ranks each query's judged documents only (the collection's qrels pool; every
    first-stage method and reranker sees the same pool, ``top_k`` None = the whole pool);
    ``mode: full`` retrieves from the collection's whole corpus and reranks the first stage's top-k.
    """

    #: table name (and folder ``eval/extra/<name>``)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    #: ``sample:liveqa-med``, ``sample:medquad`` or a BEIR folder
    source: str
    split: str = "test"
    mode: Literal["pool", "full"] = "pool"
    #: first-stage run that is reranked (None: ``rerank.first_stage``)
    first_stage: Literal["bm25", "dense", "hybrid"] | None = None
    #: depth reranked (None: the whole pool in ``pool`` mode, ``rerank.top_k`` in ``full`` mode)
    top_k: int | None = Field(None, ge=1)
    #: cap on evaluated queries (None: all), deterministic sample
    max_queries: int | None = Field(None, ge=1)
    description: str = ""


class EvaluateSection(EvalConfig):  # type: ignore[misc, valid-type]
    """Metrics and significance tests (``EvalConfig``); ``baseline`` defaults to ``bm25``.

    ``extra``: further test collections (:class:`ExtraCollection`), each scored for every system in
    its own report table (stage ``evaluate_extra``).
    """

    extra: list[ExtraCollection] = Field(default_factory=list)

    @field_validator("extra")
    @classmethod
    def _unique_names(cls, v: list[ExtraCollection]) -> list[ExtraCollection]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"extra collection names must be unique, got {dup} twice")
        return v


class AblationSection(Strict):
    """Dataset-size ablation: train on nested subsets (first N of one fixed shuffled order)."""

    sizes: list[int] = Field(default_factory=list)
    variants: list[Literal["plain", "judged", "soft"]] = Field(default_factory=lambda: ["judged"])
    seed: int = 0

    @field_validator("sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        bad = [s for s in sizes if s < 1]
        if bad:
            raise ValueError(f"sizes must be positive numbers of groups, got {bad}")
        return sorted(set(sizes))


class ReportSection(Strict):
    enabled: bool = True


class PipelineConfig(Strict):
    """Everything ``relforge run`` needs, in one file."""

    name: str = "relforge"
    seed: int = 0
    #: set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE for the run
    offline: bool = True
    #: numeric precision of every local model (``auto | fp32 | bf16 | int8``), unless a stage sets its own
    #: (``retrieve.precision``, ``train.precision``, ``rerank.precision``, ``generate.precision``,
    #: ``judge.precision`` / ``llm.options.precision``). None: each stage's default (fp32; train: auto).
    #: Training never runs int8: with ``int8`` here it keeps its own default.
    precision: PrecisionSetting | None = None
    #: the document layout every model sees (:func:`relforge.types.doc_text`: ``[title, text]``, or e.g.
    #: ``[title, text, url]``), spread into ``retrieve``, ``groups`` and ``rerank`` unless they set their own.
    #: None: each stage's default. ``groups`` and ``rerank`` must agree (a model reranks what it trained on).
    doc_fields: DocFields | None = None
    data: DataSection = Field(default_factory=DataSection)
    llm: LLMSection = Field(default_factory=LLMSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)
    retrieve: RetrieveSection = Field(default_factory=RetrieveSection)
    judge_finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    groups: GroupsSection = Field(default_factory=GroupsSection)
    train: TrainSection = Field(default_factory=TrainSection)
    rerank: RerankSection = Field(default_factory=RerankSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    ablation: AblationSection = Field(default_factory=AblationSection)
    report: ReportSection = Field(default_factory=ReportSection)
    #: where the LLM stages and dense encoding run: ``{kind: local}`` (default) or ``{kind: ray, address: ...}``
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _consistency(self) -> PipelineConfig:
        if self.judge.adapter == "finetune" and not self.judge_finetune.enabled:
            raise ValueError(
                "judge.adapter is 'finetune' but judge_finetune.enabled is false; enable it or "
                "set judge.adapter to 'shipped', a folder or null"
            )
        if self.rerank.first_stage not in self.retrieve.methods:
            raise ValueError(
                f"rerank.first_stage {self.rerank.first_stage!r} is not in retrieve.methods "
                f"{self.retrieve.methods}; add it there"
            )
        bad = {"bf16": ("onnx", "onnx-int8"), "int8": ("onnx",)}.get(self.rerank.precision, ())
        if self.rerank.backend in bad:
            raise ValueError(
                f"rerank.precision {self.rerank.precision!r} cannot run on rerank.backend "
                f"{self.rerank.backend!r}; use backend auto or torch"
            )
        for v in ("judged", "soft"):
            if v in self.train.variants and not self.judge.enabled:
                raise ValueError(
                    f"train.variants has {v!r} but judge.enabled is false; remove {v!r} or enable the judge"
                )
        self._spread_precision()
        self._spread_doc_fields()
        if self.train.dev_top_k is None:
            self.train.dev_top_k = self.rerank.top_k
        return self

    def _spread_precision(self) -> None:
        """The top-level ``precision`` into the stage sections that do not set their own."""
        if self.precision is None:
            return
        for section in (self.retrieve, self.rerank, self.train):
            if "precision" in section.model_fields_set or "precision" not in type(section).model_fields:
                continue
            if section is self.train and self.precision == "int8":
                continue
            section.precision = self.precision

    def _spread_doc_fields(self) -> None:
        """The top-level ``doc_fields`` into the sections that do not set their own; then refuse a
        trained model reranking another layout than its groups'."""
        if self.doc_fields is not None:
            for section in (self.retrieve, self.groups, self.rerank):
                if "doc_fields" not in section.model_fields_set:
                    section.doc_fields = list(self.doc_fields)
        if self.groups.doc_fields != self.rerank.doc_fields:
            raise ValueError(
                f"groups.doc_fields {self.groups.doc_fields} and rerank.doc_fields {self.rerank.doc_fields} "
                "differ: a trained model must rerank documents laid out as in its groups; set doc_fields "
                "once at the top level"
            )

    def llm_for(self, stage: Literal["generate", "judge"]) -> str:
        own = self.generate.llm if stage == "generate" else self.judge.llm
        return own or self.llm.spec

    def llm_options(self, stage: Literal["generate", "judge"]) -> dict[str, Any]:
        """``llm.options`` for ``stage``'s LLM, with its precision (the stage's, else ``llm.options``', else
        the top-level one) when that LLM is a local (hf) model; exactly ``llm.options`` otherwise."""
        from relforge.llm import parse_spec

        opts = dict(self.llm.options)
        own = self.generate.precision if stage == "generate" else self.judge.precision
        precision = own or opts.get("precision") or self.precision
        if precision is not None and parse_spec(self.llm_for(stage))[0] == "hf":
            opts["precision"] = precision
        return opts


# --------------------------------------------------------------------------- loading and errors


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Keys allowed at ``loc`` (the path of the parent of an unknown key) in ``model``."""
    cur: Any = model
    for part in loc:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        ann = cur.model_fields[part].annotation
        cur = ann
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(cur.model_fields)
    return None


def format_validation_error(
    err: ValidationError, source: str, model: type[BaseModel] = PipelineConfig
) -> str:
    """One line per problem: ``source: section.key: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        typ = e.get("type", "")
        if typ == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            msg = f"unknown key {loc[-1]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if typ not in ("missing",) and "input" in e and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
        lines.append(f"{source}: {where}: {msg}")
    return "\n".join(lines)


def parse_config(raw: dict[str, Any] | None, source: str = "config") -> PipelineConfig:
    """Validate a dict (e.g. parsed YAML) into a :class:`PipelineConfig`; raises :class:`DataError`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(
            f"the configuration must be a mapping of sections, got {type(raw).__name__}", path=source
        )
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        err = DataError(format_validation_error(e, source))
        err.path = source
        raise err from None


def _strict_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping (naming both lines)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key]}, again at line {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def load_yaml(path: str | os.PathLike, *, allow_empty: bool = False) -> Any:
    """Parse a YAML file strictly: duplicate keys and (unless ``allow_empty``) an empty file are errors.

    Raises:
        MissingInputError: no such file. DataError: bad YAML (file:line), duplicate keys, empty file.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"{p}: no such config file")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_strict_loader())  # noqa: S506 (safe loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(
            f"invalid YAML: {getattr(e, 'problem', e)}",
            path=p,
            line=(mark.line + 1) if mark is not None else None,
        ) from None
    if raw is None and not allow_empty:
        raise DataError(
            "the file is empty (no settings); write at least one section, e.g. 'name: my-run' to run "
            "every stage with its defaults",
            path=p,
        )
    return raw


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a YAML pipeline config.

    Args:
        path: the YAML file.
        overrides: dotted keys replacing values, e.g. ``{"ablation.sizes": [100, 200]}``.

    Returns:
        The validated config.

    Raises:
        MissingInputError: the file does not exist. DataError: bad YAML, unknown keys, wrong types.
    """
    p = Path(path)
    raw = load_yaml(p)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return parse_config(raw, source=p.name)


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    cur = raw
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value
