"""``--config`` / ``--set`` of every stage command (relforge.cli_config): a pipeline YAML gives the config the
pipeline runs the stage with, the stage's section pasted into its own file works as is, ``--set`` overrides
the file and a flag given overrides ``--set``, and unknown keys / bad values / odd files are usage errors.

Each command runs through ``relforge.cli.main`` on tiny files; the stage's ``run`` is replaced by one that
records the config it was handed (its inputs would need models), except ``relforge retrieve mine``, which
runs for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from relforge.cli import main
from relforge.config import load_config
from relforge.data import write_corpus, write_qrels, write_queries, write_run
from relforge.data.config import ImportConfig
from relforge.dataset.config import GroupConfig, variant_config
from relforge.errors import RelforgeError
from relforge.evaluate.config import EvalConfig
from relforge.generate.config import GenerateConfig
from relforge.judge.config import JudgeConfig
from relforge.pipeline.stages_data import generate_config, import_config, retrieve_settings
from relforge.pipeline.stages_eval import eval_config, rerank_config
from relforge.pipeline.stages_judge import judge_config
from relforge.retrieve.config import MiningConfig, RetrieveConfig, RetrieveStageConfig
from relforge.train import run as train_run
from relforge.train.config import RerankConfig, TrainConfig
from relforge.types import Document, Query

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
PIPELINE_YAMLS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def _retrieve(p):  # relforge retrieve: the section's RetrieveConfig part (the pipeline adds its run folder's
    # index_dir / cache_dir, which a pipeline YAML does not set)
    return RetrieveConfig(**retrieve_settings(p).model_dump(include=set(RetrieveConfig.model_fields)))


def _train(p):  # the plain and judged variants' TrainConfig (soft: loss = train.soft_loss)
    assert train_run.variant_config(p.train, "judged", soft_loss=p.train.soft_loss) == (
        cfg := train_run.variant_config(p.train, "plain", soft_loss=p.train.soft_loss)
    )
    return cfg


#: command -> (argv before --config, the stage run to record, the config the pipeline builds, the model,
#: the section in a pipeline YAML, (--set key, value), (flag, value))
COMMANDS = {
    "data import": (
        ["data", "import", "--out", "{tmp}/data"],
        "relforge.data.run",
        import_config,
        ImportConfig,
        "data",
        ("test_queries", 7),
        ("--test-queries", 9),
    ),
    "generate": (
        ["generate", "--corpus", "{tmp}/corpus.jsonl", "--out", "{tmp}/q.jsonl"],
        "relforge.generate.run",
        generate_config,
        GenerateConfig,
        "generate",
        ("select.sample", 5),
        ("--sample", 3),
    ),
    "retrieve": (
        [
            "retrieve",
            "--corpus",
            "{tmp}/corpus.jsonl",
            "--queries",
            "{tmp}/queries.jsonl",
            "--out",
            "{tmp}/r.trec",
        ],
        "relforge.retrieve.run",
        _retrieve,
        RetrieveConfig,
        "retrieve",
        ("top_k", 7),
        ("--top-k", 9),
    ),
    "retrieve mine": (
        [
            "retrieve",
            "mine",
            "--run",
            "{tmp}/run.trec",
            "--qrels",
            "{tmp}/qrels.tsv",
            "--out",
            "{tmp}/neg.jsonl",
        ],
        None,  # runs for real: the config is read back from neg.stats.json
        lambda p: retrieve_settings(p).mining,
        MiningConfig,
        "retrieve.mining",
        ("num_negatives", 3),
        ("--num-negatives", 2),
    ),
    "judge": (
        ["judge", "--corpus", "{tmp}/corpus.jsonl", "--queries", "{tmp}/queries.jsonl", "--pairs"]
        + ["{tmp}/qrels.tsv", "--llm", "hf:x", "--out", "{tmp}/j.jsonl"],
        "relforge.judge.run",
        judge_config,
        JudgeConfig,
        "judge",
        ("batch_size", 4),
        ("--batch-size", 2),
    ),
    "dataset build": (
        ["dataset", "build", "--queries", "{tmp}/queries.jsonl", "--positives", "{tmp}/qrels.tsv", "--run"]
        + ["{tmp}/run.trec", "--corpus", "{tmp}/corpus.jsonl", "--out", "{tmp}/groups"],
        "relforge.dataset.run",
        lambda p: variant_config(p.groups, "judged"),  # = plain's: the variant the command builds
        GroupConfig,
        "groups",
        ("group_size", 4),
        ("--group-size", 3),
    ),
    "train": (
        ["train", "--groups", "{tmp}/groups", "--out", "{tmp}/model"],
        "relforge.train.run",
        _train,
        TrainConfig,
        "train",
        ("epochs", 3.0),
        ("--epochs", 4.0),
    ),
    "rerank": (
        ["rerank", "--model", "minilm", "--corpus", "{tmp}/corpus.jsonl", "--queries", "{tmp}/queries.jsonl"]
        + ["--run", "{tmp}/run.trec", "--out", "{tmp}/rr.trec", "--kind", "bi"],
        "relforge.train.rerank_run",
        rerank_config,
        RerankConfig,
        "rerank",
        ("top_k", 7),
        ("--top-k", 9),
    ),
    "evaluate": (
        ["evaluate", "--qrels", "{tmp}/qrels.tsv", "--run", "{tmp}/run.trec"],
        "relforge.evaluate.run",
        lambda p: eval_config(p, p.evaluate.baseline),
        EvalConfig,
        "evaluate",
        ("permutation_rounds", 200),
        ("--rounds", 300),
    ),
}


class Recorded(RelforgeError):
    """Raised by the recording stage ``run`` once it has the config (nothing after it runs)."""

    exit_code = 99


@pytest.fixture
def tiny(tmp_path):
    docs = [Document(f"d{i}", f"Document {i} about gout and its treatment.") for i in range(6)]
    write_corpus(tmp_path / "corpus.jsonl", docs)
    write_queries(tmp_path / "queries.jsonl", [Query("q1", "gout treatment"), Query("q2", "gout pain")])
    write_qrels(tmp_path / "qrels.tsv", {"q1": {"d0": 3}, "q2": {"d1": 3}})
    write_run(
        tmp_path / "run.trec", {q: {f"d{i}": 10.0 - i for i in range(6)} for q in ("q1", "q2")}, tag="t"
    )
    return tmp_path


@pytest.fixture
def stage(monkeypatch, tiny):
    """``stage(command, *extra) -> (exit code, config or None)``: the command run with ``extra`` arguments."""
    import importlib

    seen: list = []

    def record(cfg, *args, **kwargs):
        seen.append(cfg)
        raise Recorded("recorded")

    for _, module, *_ in COMMANDS.values():
        if module:
            monkeypatch.setattr(importlib.import_module(module), "run", record)
    # relforge data import resolves data.source before its run (some configs/ name a file not here)
    monkeypatch.setattr("relforge.data.io.resolve_data_source", lambda source, *a: Path(source))

    def call(command: str, *extra: str):
        argv, module, *_ = COMMANDS[command]
        args = [a.format(tmp=tiny) for a in argv] + [str(x) for x in extra] + ["--overwrite"]
        seen.clear()
        code = main(args)
        if code == Recorded.exit_code:
            cfg = seen[-1]
            if command == "retrieve":  # run() is handed a RetrieveStageConfig: the command's RetrieveConfig
                assert isinstance(cfg, RetrieveStageConfig)  # (methods, mining: unused without test queries)
                cfg = RetrieveConfig(**cfg.model_dump(include=set(RetrieveConfig.model_fields)))
            return 0, cfg
        if module is None and code == 0:
            return 0, MiningConfig(**json.loads((tiny / "neg.stats.json").read_text())["config"])
        return code, None

    return call


def _json(cfg) -> dict:
    return cfg.model_dump(mode="json")


# --------------------------------------------------------------------------- (a) the pipeline's config


@pytest.mark.parametrize("command", COMMANDS)
def test_pipeline_yaml_gives_the_config_the_pipeline_runs_the_stage_with(stage, command, capsys):
    _, _, pipeline_builds, model, *_ = COMMANDS[command]
    differs = []
    for path in PIPELINE_YAMLS:
        code, cfg = stage(command, "--config", path)
        # a YAML silent on this stage gets the pipeline's defaults for it, as relforge run does
        assert code == 0, (path.name, capsys.readouterr().err)
        expected = pipeline_builds(load_config(path))
        assert type(cfg) is model and _json(cfg) == _json(expected), path.name
        differs.append(_json(cfg) != _json(model()))
    assert any(differs)  # some pipeline YAML sets this stage's keys: the comparison has teeth


@pytest.mark.parametrize("command", COMMANDS)
def test_the_section_of_a_pipeline_yaml_works_as_is(stage, command, tmp_path, capsys):
    _, _, pipeline_builds, _, section, *_ = COMMANDS[command]
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for part in section.split("."):
        raw = raw.get(part, {})
    (tmp_path / "section.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, cfg = stage(command, "--config", tmp_path / "section.yaml")
    assert code == 0, capsys.readouterr().err
    got, expected = _json(cfg), _json(pipeline_builds(load_config(DEMO)))
    if (
        command == "train"
    ):  # unset train.dev_top_k is the pipeline's rerank.top_k: a section alone cannot see it
        from relforge.train import TrainConfig

        assert got.pop("dev_top_k") == TrainConfig().dev_top_k and expected.pop("dev_top_k") == 20
    assert got == expected


def test_pipeline_only_keys_are_named_on_stderr(stage, tmp_path, capsys):
    (tmp_path / "j.yaml").write_text(
        "preset: best\nbatch_size: 3\nagreement: {max_pairs: 5}\n", encoding="utf-8"
    )
    code, cfg = stage("judge", "--config", tmp_path / "j.yaml")  # its --llm given: the LLM judge
    assert code == 0 and cfg.batch_size == 3
    err = capsys.readouterr().err
    assert "agreement: pipeline setting(s) relforge judge does not read" in err  # preset: read
    assert "--llm given: the preset of" in err


def test_a_pipeline_yaml_spreads_its_top_level_precision_as_the_pipeline_does(stage, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "precision: bf16\nretrieve:\n  top_k: 5\nrerank:\n  batch_size: 8\n", encoding="utf-8"
    )
    assert stage("retrieve", "--config", tmp_path / "p.yaml")[1].precision == "bf16"
    rerank = stage("rerank", "--config", tmp_path / "p.yaml")[1]
    assert (rerank.precision, rerank.top_k, rerank.batch_size) == ("bf16", 20, 8)  # top_k: the section's
    (tmp_path / "s.yaml").write_text("batch_size: 8\n", encoding="utf-8")  # a rerank file: the command's
    assert stage("rerank", "--config", tmp_path / "s.yaml")[1].top_k == RerankConfig().top_k == 100


# --------------------------------------------------------------------------- (b) precedence


@pytest.mark.parametrize("command", COMMANDS)
def test_set_overrides_the_file_and_a_flag_given_overrides_set(stage, command):
    _, _, _, _, _, (key, value), (flag, flag_value) = COMMANDS[command]

    def field(cfg):
        for part in key.split("."):
            cfg = getattr(cfg, part)
        return cfg

    from_file = field(stage(command, "--config", DEMO)[1])
    assert from_file not in (value, flag_value)
    assert field(stage(command, "--config", DEMO, "--set", f"{key}={value}")[1]) == value
    assert (
        field(stage(command, "--config", DEMO, "--set", f"{key}={value}", flag, flag_value)[1]) == flag_value
    )
    assert field(stage(command, "--set", f"{key}={value}")[1]) == value  # no file: --set over the defaults
    assert field(stage(command, flag, flag_value, "--set", f"{key}={value}")[1]) == flag_value


def test_set_values_are_yaml_and_dotted_keys_reach_sub_models(stage):
    _, cfg = stage("generate", "--set", "filters.round_trip=bm25", "--set", "select.diverse_by=null")
    assert cfg.filters.round_trip == "bm25" and cfg.select.diverse_by is None
    _, cfg = stage("evaluate", "--set", "measures=[nDCG@10, 'RR(rel=2)@10']", "--set", "rel=2")
    assert cfg.measures == ["nDCG@10", "RR(rel=2)@10"] and cfg.rel == 2


# --------------------------------------------------------------------------- (c) errors


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_keys_are_usage_errors(stage, command, tmp_path, capsys):
    assert stage(command, "--set", "bogus=1") == (2, None)
    assert "--set bogus: unknown key 'bogus'; allowed:" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("bogus: 1\n", encoding="utf-8")
    assert stage(command, "--config", tmp_path / "bad.yaml") == (2, None)
    assert f"{tmp_path / 'bad.yaml'}: bogus: unknown key 'bogus'" in capsys.readouterr().err


def test_config_errors_name_the_file_key_or_flag(stage, tmp_path, capsys):
    def fails(code: int, *args, needle: str, command: str = "generate") -> None:
        assert stage(command, *args) == (code, None)
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err

    fails(2, "--set", "select.bogus=1", needle="unknown key 'select.bogus'; allowed under select:")
    fails(2, "--set", "enabled=false", needle="unknown key 'enabled'")  # pipeline-only: not a stage key
    fails(2, "--set", "per_doc", needle="--set 'per_doc': give key=value")
    fails(
        2,
        "--set",
        "select.sample=0",
        needle="--set select.sample: Input should be greater than or equal to 1",
    )
    fails(2, "--per-doc", "0", needle="invalid generate setting: --per-doc: Input should be greater")
    (tmp_path / "v.yaml").write_text("select:\n  sample: -3\n", encoding="utf-8")
    fails(2, "--config", tmp_path / "v.yaml", needle=f"{tmp_path / 'v.yaml'}: select.sample: Input should be")
    (tmp_path / "p.yaml").write_text("generate:\n  per_doc: 0\n", encoding="utf-8")
    fails(
        2, "--config", tmp_path / "p.yaml", needle=f"{tmp_path / 'p.yaml'}: generate.per_doc: Input should be"
    )
    (tmp_path / "y.yaml").write_text("select: [1,\n", encoding="utf-8")
    fails(2, "--config", tmp_path / "y.yaml", needle=f"{tmp_path / 'y.yaml'}:2: invalid YAML")
    (tmp_path / "other.yaml").write_text("name: x\ndata:\n  test_queries: -5\n", encoding="utf-8")
    fails(2, "--config", tmp_path / "other.yaml", needle="a pipeline YAML, read for its generate: section")
    (tmp_path / "list.yaml").write_text("- 1\n", encoding="utf-8")
    fails(2, "--config", tmp_path / "list.yaml", needle="expected a mapping of GenerateConfig keys")
    fails(4, "--config", tmp_path / "missing.yaml", needle="missing.yaml: no such config file (--config)")
    (tmp_path / "pipe.yaml").write_text("rerank:\n  first_stage: dense\nretrieve:\n  methods: [bm25]\n")
    fails(
        2, "--config", tmp_path / "pipe.yaml", needle="rerank.first_stage 'dense' is not in", command="rerank"
    )


# --------------------------------------------------------------------------- end to end


def test_retrieve_mine_with_the_demo_config_equals_its_flags(tiny):
    """``relforge retrieve mine --config configs/demo.yaml`` writes what the same settings as flags write."""
    from relforge.retrieve.mining import read_negatives

    base = ["retrieve", "mine", "--run", str(tiny / "run.trec"), "--qrels", str(tiny / "qrels.tsv")]
    assert main([*base, "--out", str(tiny / "a.jsonl"), "--config", str(DEMO)]) == 0
    flags = [
        "--rank-min",
        "1",
        "--rank-max",
        "30",
        "--num-negatives",
        "10",
        "--random-share",
        "0.5",
    ]  # demo.yaml's
    assert main([*base, "--out", str(tiny / "b.jsonl"), *flags]) == 0
    assert main([*base, "--out", str(tiny / "c.jsonl")]) == 0  # the defaults: rank_min 2, 8 negatives
    a, b, c = ((tiny / f"{n}.jsonl").read_bytes() for n in "abc")
    assert a == b and a != c
    assert (tiny / "a.stats.json").read_bytes() == (tiny / "b.stats.json").read_bytes()
    negs = read_negatives(tiny / "a.jsonl")
    assert [len(v) for v in negs.values()] == [5, 5]  # d0..d5 minus the positive
