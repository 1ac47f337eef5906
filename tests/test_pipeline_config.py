"""PipelineConfig validation messages, the demo config, and ``relforge run --dry-run``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from relforge.cli import main
from relforge.config import PipelineConfig, load_config, parse_config
from relforge.errors import EXIT_VALIDATION, DataError
from relforge.pipeline import demo_config_path, plan_pipeline

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, raw) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return p


def test_unknown_key_names_the_section_and_the_allowed_keys(tmp_path):
    p = _write(tmp_path, {"judge": {"mdoe": "probs"}})
    with pytest.raises(DataError) as e:
        load_config(p)
    line = str(e.value)
    assert line.startswith("config.yaml: judge.mdoe: unknown key 'mdoe'; allowed: ")
    assert "mode" in line and "adapter" in line


def test_wrong_types_one_line_each(tmp_path):
    p = _write(tmp_path, {"judge": {"mode": "vote"}, "train": {"epochs": "many"}, "nope": 1})
    with pytest.raises(DataError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert len(lines) == 3
    assert "config.yaml: judge.mode: Input should be 'probs' or 'generate' (got 'vote')" in lines
    assert any(
        x.startswith("config.yaml: train.epochs: Input should be a valid number") and "(got 'many')" in x
        for x in lines
    )
    assert any(x.startswith("config.yaml: nope: unknown key 'nope'; allowed: ablation, data,") for x in lines)


def test_cross_section_checks():
    with pytest.raises(DataError, match="judge.adapter is 'finetune' but judge_finetune.enabled is false"):
        parse_config({"judge": {"adapter": "finetune"}})
    with pytest.raises(DataError, match="rerank.first_stage 'dense' is not in retrieve.methods"):
        parse_config({"retrieve": {"methods": ["bm25"]}, "rerank": {"first_stage": "dense"}})
    with pytest.raises(DataError, match=r"ablation.sizes.*positive"):
        parse_config({"ablation": {"sizes": [0, 10]}})


def test_bad_yaml_names_the_line(tmp_path):
    p = _write(tmp_path, "judge:\n  mode: [probs\n")
    with pytest.raises(DataError, match=r"config.yaml:\d+: invalid YAML"):
        load_config(p)


def test_cli_reports_config_errors_with_exit_code(tmp_path, capsys):
    p = _write(tmp_path, {"generate": {"per_doc": "two"}})
    assert main(["run", str(p), "--out", str(tmp_path / "out"), "--dry-run"]) == EXIT_VALIDATION
    err = capsys.readouterr().err
    assert "config.yaml: generate.per_doc: Input should be a valid integer" in err


def test_stage_sections_extend_the_stage_models():
    from relforge.config import GroupConfig, JudgeConfig, RetrieveConfig, stage_part

    cfg = PipelineConfig()
    # each section accepts the stage's own settings and converts back to the stage's model
    assert set(JudgeConfig.model_fields) <= set(type(cfg.judge).model_fields)
    assert isinstance(stage_part(cfg.retrieve, RetrieveConfig), RetrieveConfig)
    assert stage_part(cfg.groups, GroupConfig).group_size == cfg.groups.group_size


def test_demo_config_is_packaged_and_equal_to_the_repository_copy():
    packaged = demo_config_path()
    assert packaged.read_text() == (REPO / "configs" / "demo.yaml").read_text()
    cfg = load_config(packaged)
    assert cfg.offline and cfg.llm.spec == "smollm2" and cfg.train.variants == ["plain", "judged"]


def test_every_shipped_config_validates():
    names = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert {"demo.yaml", "medquad-full-vllm.yaml", "judge-finetune.yaml", "medquad-human-train.yaml"} <= set(
        names
    )
    for name in names:
        load_config(REPO / "configs" / name)


def test_train_split_and_rerank_backend_checks():
    with pytest.raises(DataError, match="train_split 'test' is also an evaluation split"):
        parse_config({"data": {"test_split": "dev,test", "train_split": "test"}})
    # bi-encoders rerank on ONNX Runtime too (relforge.train.onnx_bi)
    assert (
        parse_config({"train": {"kind": "bi"}, "rerank": {"backend": "onnx-int8"}}).rerank.backend
        == "onnx-int8"
    )
    with pytest.raises(DataError, match="rerank.precision 'bf16' cannot run on rerank.backend 'onnx'"):
        parse_config({"rerank": {"backend": "onnx", "precision": "bf16"}})
    cfg = parse_config(
        {"data": {"train_split": "train", "train_queries": 5}, "rerank": {"backend": "onnx-int8"}}
    )
    assert cfg.data.train_split == "train" and cfg.rerank.backend == "onnx-int8"


def _beir(tmp_path: Path) -> Path:
    from relforge.data import write_corpus, write_qrels, write_queries
    from relforge.types import Document, Query

    d = tmp_path / "beir"
    write_corpus(d / "corpus.jsonl", [Document(f"d{i}", f"text {i}") for i in range(4)])
    write_queries(d / "queries.jsonl", [Query("q1", "question")])
    write_qrels(d / "qrels" / "test.tsv", {"q1": {"d1": 1}})
    return d


def test_dry_run_plan(tmp_path, capsys):
    src = _beir(tmp_path)
    cfg = {"data": {"source": str(src)}, "judge": {"adapter": None}}
    items = plan_pipeline(cfg, tmp_path / "out")
    acts = {i.stage: (i.action, i.reason) for i in items}
    assert acts["import"] == ("run", "never run")
    assert acts["judge_finetune"] == ("disabled", "disabled in the configuration")
    assert acts["ablation"][0] == "disabled"
    assert [i.stage for i in items] == [
        "import",
        "generate",
        "retrieve",
        "judge_finetune",
        "judge",
        "agreement",
        "groups",
        "train",
        "rerank",
        "evaluate",
        "evaluate_extra",
        "ablation",
        "report",
    ]
    p = _write(tmp_path, cfg)
    assert main(["run", str(p), "--out", str(tmp_path / "out"), "--dry-run", "--sizes", "10,20"]) == 0
    out = capsys.readouterr().out
    assert "ablation" in out and "never run" in out
    assert not (tmp_path / "out" / "manifest.json").exists()  # a dry run writes nothing
    assert main(["run", str(p), "--out", str(tmp_path / "out"), "--dry-run", "--only", "nope"]) == 2


def test_demo_dry_run_plans_every_stage(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for stage in (
        "import",
        "generate",
        "retrieve",
        "judge",
        "agreement",
        "groups",
        "train",
        "rerank",
        "evaluate",
        "ablation",
        "report",
    ):
        assert stage in out
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the demo never touches a model hub
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").iterdir())


def _dev_files(out: Path, first_stage: str) -> None:
    """A run folder's dev files: 2 dev questions, 12 documents, the first stage's top 12 of each."""
    import json

    from relforge.pipeline import layout

    (out / "data").mkdir(parents=True)
    (out / "retrieve").mkdir()
    docs = "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(12))
    (out / layout.CORPUS).write_text(docs)
    (out / layout.DEV_QUERIES).write_text('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n')
    (out / layout.DEV_QRELS).write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td5\t1\n")
    run = "".join(f"{q} Q0 d{i} {i + 1} {12 - i} x\n" for q in ("q1", "q2") for i in range(12))
    (out / layout.first_stage_dev(first_stage)).write_text(run)


@pytest.mark.parametrize(
    "raw, depth",
    [
        (
            {},
            20,
        ),  # the pipeline's default: rerank.top_k (its own default, 20), as before train.dev_top_k counted
        ({"rerank": {"top_k": 7}}, 7),
        ({"rerank": {"top_k": 7}, "train": {"dev_top_k": 11}}, 11),
    ],
)
def test_pipeline_dev_candidates_are_relforge_trains(tmp_path, raw, depth):
    """The pipeline's checkpoint-selection dev set is what ``relforge train`` builds from the variant's
    TrainConfig: the dev run's top ``train.dev_top_k`` (None: ``rerank.top_k``), recorded in that config."""
    from relforge.pipeline import layout
    from relforge.pipeline.runner import StageContext
    from relforge.pipeline.stages_train import dev_set
    from relforge.train.run import TrainInputs, load_dev, variant_config

    cfg = parse_config({"data": {"dev_split": "dev"}, **raw})
    tc = variant_config(cfg.train, "plain", soft_loss=cfg.train.soft_loss)
    assert cfg.train.dev_top_k == tc.dev_top_k == depth
    _dev_files(tmp_path, cfg.rerank.first_stage)
    ours = dev_set(StageContext(cfg=cfg, out_dir=tmp_path, stage="train", runner=None))
    p = tmp_path
    cli = TrainInputs(
        groups=p,
        dev_corpus=p / layout.CORPUS,
        dev_queries=p / layout.DEV_QUERIES,
        dev_qrels=p / layout.DEV_QRELS,
        dev_run=p / layout.first_stage_dev(cfg.rerank.first_stage),
    )
    theirs = load_dev(cli.dev_corpus, cli.dev_queries, cli.dev_qrels, cli.dev_run, top_k=tc.dev_top_k)
    assert ours == theirs and ours.top_k == depth and len(ours.run["q1"]) == 12
