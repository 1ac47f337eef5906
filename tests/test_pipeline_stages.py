"""The stage table's paths (what cached manifests are keyed by), stage import on the bundled sample, and
readers that take the one key their writer writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from relforge.config import parse_config
from relforge.data import read_corpus, read_qrels, read_queries
from relforge.pipeline import layout
from relforge.pipeline.runner import StageContext
from relforge.pipeline.stages import bucket_summary, build_stages, preset_cv, stage_import

FULL = {
    "data": {"train_split": "train", "dev_split": "dev"},
    "train": {"variants": ["plain", "judged"]},
    "ablation": {"sizes": [10], "variants": ["soft"]},
    "evaluate": {"extra": [{"name": "ood", "source": "sample:liveqa-med"}]},
}


def test_stage_table_names_and_paths_are_unchanged():
    cfg = parse_config(FULL)
    stages = build_stages(cfg)
    assert [s.name for s in stages] == [
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
    io = {s.name: (s.inputs(cfg), s.outputs(cfg)) for s in stages if s.name not in ("judge_finetune",)}
    data = ["data/corpus.jsonl", "data/test-queries.jsonl", "data/test-qrels.tsv"]
    train, dev = (
        ["data/train-queries.jsonl", "data/train-qrels.tsv"],
        ["data/dev-queries.jsonl", "data/dev-qrels.tsv"],
    )
    assert io["import"][1] == data + train + dev
    assert io["generate"] == (["data/corpus.jsonl", *train], ["generate/queries.jsonl", "generate/qrels.tsv"])
    assert io["retrieve"][0] == [*data[:2], "generate/queries.jsonl", "generate/qrels.tsv", dev[0]]
    assert io["retrieve"][1] == [
        "retrieve/candidates.trec",
        "retrieve/negatives.jsonl",
        *[f"retrieve/test-{m}.trec" for m in cfg.retrieve.methods],
        *[f"retrieve/dev-{m}.trec" for m in cfg.retrieve.methods],
    ]
    assert io["judge"][1] == ["judge/judgments.jsonl", "judge/qrels.tsv"]
    assert io["agreement"][1] == ["judge/agreement.json"]
    assert io["groups"] == (
        [data[0], "generate/queries.jsonl", "generate/qrels.tsv", "retrieve/candidates.trec"]
        + ["retrieve/negatives.jsonl", "judge/judgments.jsonl"],
        ["dataset/plain", "dataset/judged", "dataset/soft", "dataset/summary.json"],
    )
    dev_in = [*dev, "retrieve/dev-hybrid.trec"]
    assert io["train"] == (["dataset/plain", "dataset/judged", *dev_in], ["train/plain", "train/judged"])
    assert io["rerank"] == (
        [*data[:2], "retrieve/test-hybrid.trec", "train/plain", "train/judged"],
        ["rerank/backbone.trec", "rerank/plain.trec", "rerank/judged.trec"],
    )
    assert io["evaluate"][1] == ["eval/metrics.json", "eval/metrics.csv"]
    assert io["evaluate_extra"][1] == ["eval/extra/summary.json"]
    assert io["ablation"] == (
        [*data, "retrieve/test-hybrid.trec", "eval/metrics.json", "dataset/soft", *dev_in],
        ["ablation.json"],
    )
    assert io["report"] == (
        ["eval/metrics.json", "judge/judgments.jsonl", "judge/agreement.json"]
        + ["dataset/plain", "dataset/judged", "dataset/soft", "ablation.json", "eval/extra/summary.json"],
        ["report.html"],
    )


class _Runner:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)


def _import(tmp_path: Path, data: dict) -> tuple[dict, Path]:
    ctx = StageContext(cfg=parse_config({"data": data}), out_dir=tmp_path, stage="import", runner=_Runner())
    return stage_import(ctx), tmp_path


def test_stage_import_keeps_every_judged_document_and_separates_the_splits(tmp_path):
    data = {"train_split": "train", "train_queries": 30, "dev_split": "dev", "dev_queries": 7}
    res, out = _import(tmp_path / "a", {**data, "max_docs": 150, "test_queries": 20, "seed": 3})
    corpus = read_corpus(out / layout.CORPUS)
    assert res == {"documents": 150, "test_queries": 20} and len(corpus) == 150
    qrels = {
        name: read_qrels(out / rel)
        for name, rel in (
            ("test", layout.TEST_QRELS),
            ("train", layout.TRAIN_QRELS),
            ("dev", layout.DEV_QRELS),
        )
    }
    assert [len(qrels[n]) for n in ("test", "train", "dev")] == [20, 30, 7]
    assert not (set(qrels["test"]) & set(qrels["train"])) and not (
        set(qrels["dev"]) & (set(qrels["test"]) | set(qrels["train"]))
    )
    assert {d for q in qrels.values() for docs in q.values() for d in docs} <= set(corpus)
    assert list(read_queries(out / layout.TRAIN_QUERIES)) == sorted(qrels["train"])
    _import(tmp_path / "b", {**data, "max_docs": 150, "test_queries": 20, "seed": 3})
    for rel in (layout.CORPUS, layout.TEST_QRELS, layout.TRAIN_QRELS, layout.DEV_QRELS, layout.DATA_SUMMARY):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_readers_take_the_key_the_writer_writes():
    from relforge.judge.preset import JudgePreset

    preset = JudgePreset.load("best")
    cv = preset_cv(preset)
    assert cv["labeller"] == f"{preset.head.meta['labeller']}|{preset.head.kind}"
    with pytest.raises(KeyError, match="groups"):  # not a build_groups summary: say so, do not guess
        bucket_summary({"plain": {"candidates": {}, "queries_kept": 1}})
