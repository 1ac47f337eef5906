"""``--config FILE`` and ``--set KEY=VALUE`` of every stage command: one way from a YAML file, ``--set``
pairs and the command's flags to the stage's validated config model.

Precedence, lowest first: the config model's defaults, then ``--config``, then ``--set``, then the flags
given on the command line (without ``--config`` every flag counts, its default being the model's).

``--config`` takes either

* a file of the stage's config keys; the stage's section of a pipeline YAML pasted as is works too: its
  pipeline-only keys (e.g. ``generate.llm``, ``rerank.first_stage``) are checked but not used (a note on
  stderr names them), and keys it leaves out keep the command's defaults; or
* a pipeline YAML (``relforge run``'s, recognised by its top-level section for the stage, or by keys that
  are all pipeline sections): it is validated whole, and the stage's config is the one the pipeline runs
  the stage with (the section's own defaults, e.g. ``rerank.top_k`` 20, and the top-level ``precision``
  included; a YAML without the stage's section gets the pipeline's defaults for it).

``--set`` keys are the stage config's field names, dotted into sub-models (``select.sample=128``); values
are parsed as YAML (``3``, ``0.5``, ``null``, ``true``, ``[bm25, dense]``). Every problem (unknown key,
bad value, bad YAML, a file that is not a mapping) is a :class:`~relforge.errors.UsageError` naming the file or
the flag; a missing file is a :class:`~relforge.errors.MissingInputError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

#: a converter returns this to mean "the flag sets nothing" (e.g. an unset ``--max-new-tokens``)
SKIP = object()


def config_option(section: str, model: str, note: str = "") -> Any:
    """The ``--config`` option of a stage command whose pipeline section is ``section``."""
    help_ = (
        f"YAML of {model} keys (the {section}: section of a pipeline YAML works as is: its pipeline-only "
        f"keys are checked, not used{note}), or a pipeline YAML (its {section}: section, as relforge run "
        "reads it). Precedence: --config, then --set, then flags given on the command line."
    )
    return typer.Option(None, "--config", help=help_)


def doc_fields_option() -> Any:
    """The ``--doc-fields`` option (the ``doc_fields`` key of retrieve, groups and rerank)."""
    from relforge.types import DOC_FIELDS

    return typer.Option(
        ",".join(DOC_FIELDS),
        "--doc-fields",
        help="document fields a model sees, one per line, comma-separated: title, text, or metadata keys "
        "(e.g. title,text,url); train, groups and rerank with the same.",
    )


def comma_list(text: str) -> list[str]:
    """A comma-separated flag value as a list (blank entries left out)."""
    return [p.strip() for p in text.split(",") if p.strip()]


def set_option(example: str) -> Any:
    """The ``--set`` option (repeatable) of a stage command."""
    return typer.Option(
        [],
        "--set",
        help=f"KEY=VALUE of the config, e.g. --set {example} (dotted for sub-keys, value "
        "parsed as YAML); repeatable; overrides --config, flags given override it.",
    )


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as ``{dotted key: value}`` (the value parsed as YAML; empty = null)."""
    import yaml

    from relforge.errors import UsageError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise UsageError(f"--set {pair!r}: give key=value, e.g. --set seed=1 (dotted for sub-keys)")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise UsageError(
                f"--set {pair!r}: the value is not valid YAML ({getattr(e, 'problem', e)})"
            ) from None
    return out


def _sub_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    ann = model.model_fields[name].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _check_key(model: type[BaseModel], key: str, what: str) -> None:
    """UsageError unless ``key`` (dotted) names a field of ``model`` (or of its sub-models)."""
    from relforge.errors import UsageError

    cur: type[BaseModel] | None = model
    parts = key.split(".")
    for i, part in enumerate(parts):
        if cur is None:
            raise UsageError(f"{what}: {'.'.join(parts[:i])!r} has no sub-keys ({model.__name__})")
        if part not in cur.model_fields:
            where = ".".join(parts[:i])
            raise UsageError(
                f"{what}: unknown key {'.'.join(parts[: i + 1])!r}; allowed"
                + (f" under {where}" if where else "")
                + f": {', '.join(sorted(cur.model_fields))}"
            )
        cur = _sub_model(cur, part)


def _section_model(path: str) -> type[BaseModel]:
    """The pipeline's section class at dotted ``path`` (e.g. ``retrieve.mining`` -> MiningConfig)."""
    from relforge.config import PipelineConfig

    cur: type[BaseModel] = PipelineConfig
    for part in path.split("."):
        sub = _sub_model(cur, part)
        assert sub is not None, f"{path}: not a pipeline section"
        cur = sub
    return cur


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _pipeline_only(section_obj: BaseModel, model: type[BaseModel]) -> list[str]:
    return sorted(k for k in section_obj.model_fields_set if k not in model.model_fields)


def read_section(path: Path, model: type[BaseModel], section: str) -> tuple[BaseModel, Any, str]:
    """The stage's section in ``path`` (see the module docstring): ``(section object, the whole
    PipelineConfig or None, the prefix of its keys in the file)``. A pipeline YAML gives the section as
    relforge run builds it; a file of the section's keys gives it validated as the pipeline's section.
    ``model`` (the stage's config class) names the file's expected keys in error messages."""
    from relforge.config import PipelineConfig, format_validation_error, load_yaml, parse_config
    from relforge.errors import DataError, MissingInputError, UsageError

    if not path.is_file():
        raise MissingInputError(f"{path}: no such config file (--config)")
    try:
        loaded = load_yaml(path, allow_empty=True)
    except DataError as e:
        raise UsageError(f"--config {e}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise UsageError(
            f"--config {path}: expected a mapping of {model.__name__} keys or a pipeline YAML, "
            f"got {type(loaded).__name__}"
        )
    top = section.split(".")[0]
    section_cls = _section_model(section)
    foreign = set(loaded) - set(section_cls.model_fields)
    if top in loaded or (foreign and foreign <= set(PipelineConfig.model_fields)):
        # a pipeline YAML (with or without this stage's section): validated whole, the stage's part as
        # relforge run builds it (a YAML silent on the stage gets the pipeline's defaults for it)
        try:
            pipeline = parse_config(loaded, source=str(path))
        except DataError as e:
            raise UsageError(f"--config (a pipeline YAML, read for its {top}: section):\n{e}") from None
        return _get(pipeline, section), pipeline, f"{section}."
    try:
        return section_cls.model_validate(loaded), None, ""
    except ValidationError as e:
        raise UsageError(
            f"--config: {model.__name__} keys (or the {section}: section of a pipeline YAML) expected:\n"
            + format_validation_error(e, str(path), section_cls)
        ) from None


def from_file(
    path: Path,
    model: type[BaseModel],
    section: str,
    command: str,
    hints: Mapping[str, str] | None = None,
    reads: Collection[str] = (),
) -> tuple[dict[str, Any], str]:
    """The stage's settings in ``path`` (see the module docstring) as a dict for ``model``, and the prefix
    of their keys in the file (``generate.`` in a pipeline YAML, else empty).

    Prints one note (stderr) naming the pipeline-only keys the file sets, which ``command`` does not read
    (``reads``: the pipeline-only keys the command reads itself, through :func:`read_section`).
    """
    section_obj, pipeline, prefix = read_section(path, model, section)
    if pipeline is not None:
        raw = section_obj.model_dump(include=set(model.model_fields))
    else:
        raw = section_obj.model_dump(include=set(model.model_fields) & section_obj.model_fields_set)
    unused = [k for k in _pipeline_only(section_obj, model) if k not in reads]
    if unused:
        hint = [f"{k}: {hints[k]}" for k in unused if hints and k in hints]
        typer.echo(
            f"note: {path}: {', '.join(prefix + k for k in unused)}: pipeline setting(s) {command} does not "
            "read" + (f" (use {'; '.join(hint)})" if hint else ""),
            err=True,
        )
    return raw, prefix


def _flag_name(param: str) -> str:
    return "--" + param.replace("_", "-")


def _given(ctx: typer.Context, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "COMMANDLINE"  # typer may vendor its own click


def stage_config(
    ctx: typer.Context,
    model: type[BaseModel],
    section: str,
    config_file: Path | None,
    sets: list[str],
    values: Mapping[str, Any],
    *,
    command: str,
    flags: Mapping[str, str | tuple[str, ...]] | None = None,
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
    hints: Mapping[str, str] | None = None,
    reads: Collection[str] = (),
) -> Any:
    """The validated ``model`` of a stage command: ``--config``, then ``--set``, then the flags given.

    Args:
        ctx: the command's context (which flags were given on the command line).
        model: the stage's config class; section: its dotted pipeline section (``retrieve.mining``).
        config_file: ``--config`` (None: none); sets: the ``--set`` pairs.
        values: the command's parameter values (``locals()``).
        command: e.g. ``relforge generate`` (messages).
        flags: parameter -> dotted field(s) it sets; the parameters named after a top-level field of
            ``model`` are added. convert: parameter -> function of its value (``SKIP``: sets nothing).
        hints: pipeline-only key -> the flag that does it (the note printed for a file that sets it).
        reads: pipeline-only keys the command reads itself (:func:`read_section`): left out of the note.
    """
    from relforge.config import set_dotted
    from relforge.errors import UsageError

    mapping: dict[str, tuple[str, ...]] = {p: (p,) for p in values if p in model.model_fields}
    for p, f in (flags or {}).items():
        mapping[p] = (f,) if isinstance(f, str) else tuple(f)
    convert = convert or {}
    origin: dict[str, str] = {}  # dotted key -> where its value came from (error messages)
    raw: dict[str, Any] = {}
    if config_file is not None:
        raw, prefix = from_file(Path(config_file), model, section, command, hints, reads)
        origin.update({k: f"{config_file}: {prefix}{k}" for k in raw})
    from_config = set(origin)  # keys whose value is still the file's

    def apply_flags(only_given: bool) -> None:
        for param, fields in mapping.items():
            if only_given != _given(ctx, param):
                continue
            value = values[param]
            if param in convert:
                value = convert[param](value)
            if value is SKIP:
                continue
            for f in fields:
                set_dotted(raw, f, value)
                origin[f] = _flag_name(param)
                from_config.discard(f)

    if config_file is None:
        apply_flags(only_given=False)  # the defaults (the model's: tests/test_stage_cli_flags.py)
    for key, value in parse_sets(sets).items():
        _check_key(model, key, f"--set {key}")
        set_dotted(raw, key, value)
        origin[key] = f"--set {key}"
        from_config.discard(key)
    apply_flags(only_given=True)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(str(p) for p in err["loc"])
            where = ".".join(loc)
            for i in range(len(loc), 0, -1):
                key = ".".join(loc[:i])
                if key in origin:  # a file's key names the rest of the path too
                    rest = ".".join(loc[i:]) if key in from_config else ""
                    where = origin[key] + (f".{rest}" if rest else "")
                    break
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict) and err.get("type") != "missing":
                msg += f" (got {err['input']!r})"
            problems.append(f"{where}: {msg}" if where else msg)
        stage = command.removeprefix("relforge ")
        raise UsageError(f"invalid {stage} setting: " + "; ".join(problems)) from None
