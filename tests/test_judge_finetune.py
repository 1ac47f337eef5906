"""Judge LoRA fine-tuning on a tiny random Llama (plumbing, split, balancing, outputs, reload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relforge.judge.finetune import (
    Example,
    balance_examples,
    class_counts,
    finetune_judge,
    split_by_query,
)
from relforge.judge.finetune_config import FinetuneConfig
from relforge.types import Document, Query

VALUES = [0, 1, 2, 3]


def _data(n_queries: int = 8, docs_per_query: int = 5):
    words = "fever cough insulin diabetes asthma migraine gluten vaccine dosage allergy".split()
    corpus, queries, qrels = {}, {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        queries[qid] = Query(
            qid, f"what helps {words[q % len(words)]} in adults?", {"paraphrase": f"help {q}"}
        )
        qrels[qid] = {}
        for d in range(docs_per_query):
            did = f"d{q}-{d}"
            corpus[did] = Document(did, f"{words[(q + d) % len(words)]} " * 40, title=f"About {words[d]}")
            qrels[qid][did] = (q + d) % 4
    return corpus, queries, qrels


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        epochs=1,
        max_doc_tokens=24,
        lora_layers=1,
        lora_r=4,
        lr=5e-3,
        batch_size=4,
        eval_batch_size=8,
        val_fraction=0.25,
        max_per_class=None,
        balance="weights",
        seed=0,
    )
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.fixture(scope="module")
def tiny_run(tiny_llm_dir, tmp_path_factory):
    corpus, queries, qrels = _data()
    out = tmp_path_factory.mktemp("ft") / "adapter"
    summary = finetune_judge(f"hf:{tiny_llm_dir}", corpus, queries, qrels, out, _cfg(), progress=False)
    return out, summary, (corpus, queries, qrels)


def test_split_by_query_is_disjoint_deterministic_and_order_free():
    qids = [f"q{i}" for i in range(50)]
    train, val = split_by_query(qids, 0.2, seed=1)
    assert len(val) == 10 and not set(train) & set(val) and set(train) | set(val) == set(qids)
    assert split_by_query(list(reversed(qids)) + qids, 0.2, seed=1) == (train, val)
    assert split_by_query(qids, 0.2, seed=2)[1] != val
    assert split_by_query(qids, 0.0) == (sorted(qids), [])


def test_balancing_modes_report_the_counts_they_produce():
    ex = [Example(f"q{i % 7}", f"d{i}", g) for i, g in enumerate([0] * 30 + [1] * 12 + [2] * 5 + [3] * 3)]
    down = balance_examples(ex, VALUES, "downsample", seed=0)
    assert class_counts(down, VALUES) == {"0": 3, "1": 3, "2": 3, "3": 3}
    up = balance_examples(ex, VALUES, "upsample", seed=0)
    assert class_counts(up, VALUES) == {"0": 30, "1": 30, "2": 30, "3": 30}
    capped = balance_examples(ex, VALUES, "weights", seed=0, max_per_class=10)
    assert class_counts(capped, VALUES) == {"0": 10, "1": 10, "2": 5, "3": 3}
    w = {e.grade: e.weight for e in capped}
    assert w[3] > w[2] > w[0] == w[1]
    # weighted total mass is equal per class
    mass = {v: sum(e.weight for e in capped if e.grade == v) for v in VALUES}
    assert max(mass.values()) - min(mass.values()) < 1e-9
    assert balance_examples(ex, VALUES, "none", seed=0, max_per_class=None) != []
    with pytest.raises(Exception, match="balance"):
        balance_examples(ex, VALUES, "smote")
    for mode in ("none", "downsample", "upsample", "weights"):  # an empty side: [] (the caller says why)
        assert balance_examples([], VALUES, mode) == []


def test_one_epoch_writes_metrics_plot_and_meta(tiny_run):
    out, summary, (_, _, qrels) = tiny_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # zero-shot, then the epoch
    for r in rows:
        assert set(r["per_class"]) == {"0", "1", "2", "3"}
        assert {"kendall_tau_b", "quadratic_kappa", "accuracy"} <= set(r)
        assert sum(c["support"] for c in r["per_class"].values()) == r["n"]
    png = (out / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    meta = json.loads((out / "relforge.json").read_text())
    for key in (
        "base_model",
        "template",
        "labels",
        "label_scale",
        "data_hashes",
        "class_counts",
        "split",
        "best_epoch",
        "zero_shot",
        "best",
        "config",
        "timing",
        "judge_check",
        "max_doc_tokens",
    ):
        assert key in meta, key
    assert meta["template"]["id"] == "relevance-0to3" and len(meta["template"]["hash"]) == 12
    assert meta["labels"] == ["0", "1", "2", "3"] and meta["best_epoch"] == 1
    split = meta["split"]
    assert split["val_queries"] and not set(split["val_queries"]) & set(split["train_queries"])
    assert sorted(split["val_queries"] + split["train_queries"]) == sorted(qrels)
    # the class counts reported are those of the pairs actually used
    val_counts = {
        str(v): sum(1 for q in split["val_queries"] for g in qrels[q].values() if g == v) for v in VALUES
    }
    assert meta["class_counts"]["validation"] == val_counts
    assert sum(meta["class_counts"]["train_used"].values()) == sum(
        len(qrels[q]) for q in split["train_queries"]
    )
    preds = [json.loads(line) for line in (out / "val_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == rows[0]["n"] and {p["qid"] for p in preds} == set(split["val_queries"])
    assert abs(sum(preds[0]["tuned"].values()) - 1) < 1e-3


def test_adapter_reloads_with_peft_and_changes_the_judge_scores(tiny_run, tiny_llm_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relforge.judge.prompt import JudgeTemplate
    from relforge.llm.hf import HFBackend

    out, summary, (corpus, queries, qrels) = tiny_run
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_llm_dir
    )
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), str(out))
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in peft_model.named_parameters())

    tpl = JudgeTemplate.load()
    qid = summary["split"]["val_queries"][0]
    base = HFBackend.load(tiny_llm_dir, progress=False)
    tuned = HFBackend.load(tiny_llm_dir, adapter=str(out), progress=False)
    chats = [tpl.build_chat(queries[qid], corpus[d], base.tokenizer, 24) for d in sorted(qrels[qid])]
    p0 = base.score_choices(chats, tpl.labels)
    p1 = tuned.score_choices(chats, tpl.labels)
    diff = max(abs(a[k] - b[k]) for a, b in zip(p0, p1, strict=True) for k in tpl.labels)
    assert diff > 1e-4
    # the judge path reproduces the training-time validation numbers of the kept epoch
    check, best = summary["judge_check"], summary["best"]
    assert check["n"] == best["n"]
    assert check["accuracy"] == pytest.approx(best["accuracy"], abs=0.05)


def test_cached_frozen_bottom_matches_plain_training(tiny_llm_dir, tmp_path):
    corpus, queries, qrels = _data(6, 4)
    kw = dict(judge_check=False, balance="none")
    a = finetune_judge(
        f"hf:{tiny_llm_dir}",
        corpus,
        queries,
        qrels,
        tmp_path / "a",
        _cfg(cache_frozen=True, **kw),
        progress=False,
    )
    b = finetune_judge(
        f"hf:{tiny_llm_dir}",
        corpus,
        queries,
        qrels,
        tmp_path / "b",
        _cfg(cache_frozen=False, **kw),
        progress=False,
    )
    assert a["cached_frozen_layers"] and not b["cached_frozen_layers"]
    assert a["train_loss"][0] == pytest.approx(b["train_loss"][0], rel=1e-3)
    pa = [json.loads(x)["tuned"] for x in (tmp_path / "a" / "val_predictions.jsonl").read_text().splitlines()]
    pb = [json.loads(x)["tuned"] for x in (tmp_path / "b" / "val_predictions.jsonl").read_text().splitlines()]
    for x, y in zip(pa, pb, strict=True):
        for k in x:
            assert x[k] == pytest.approx(y[k], abs=1e-3)


def test_cli_finetune_with_merge_and_query_field(tiny_llm_dir, tmp_path):
    from relforge.cli import main
    from relforge.data import write_corpus, write_qrels, write_queries

    corpus, queries, qrels = _data(6, 4)
    write_corpus(tmp_path / "c.jsonl", corpus.values())
    write_queries(tmp_path / "q.jsonl", queries.values())
    write_qrels(tmp_path / "qrels.tsv", qrels)
    out = tmp_path / "out"
    args = [
        "judge",
        "finetune",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(tmp_path / "qrels.tsv"),
        "--llm",
        f"hf:{tiny_llm_dir}",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--max-doc-tokens",
        "16",
        "--lora-r",
        "2",
        "--lora-layers",
        "0",
        "--balance",
        "downsample",
        "--val-fraction",
        "0.34",
        "--merge",
        "--no-judge-check",
        "--no-progress",
        "--query-field",
        "paraphrase",
        "--seed",
        "3",
        "--target-modules",
        "q_proj,v_proj",
        "--eval-batch-size",
        "4",
        "--folds",
        "1",
    ]
    assert main(args) == 0
    meta = json.loads((out / "relforge.json").read_text())
    assert meta["config"]["query_field"] == "paraphrase" and meta["lora_layers_from"] == 0
    assert meta["config"]["target_modules"] == ["q_proj", "v_proj"] and meta["config"]["eval_batch_size"] == 4
    lora = json.loads((out / "adapter_config.json").read_text())
    assert sorted(lora["target_modules"]) == ["q_proj", "v_proj"]
    assert len(set(meta["class_counts"]["train_used"].values())) == 1  # downsampled: equal classes
    assert (out / "merged" / "config.json").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "merged")
    # bad settings are usage errors naming the setting
    assert main(args[:-2] + ["--balance", "smote"]) == 2
    assert main([*args[:3], str(tmp_path / "nope.jsonl"), *args[4:]]) == 4


def test_shipped_adapter_metadata_is_complete():
    from relforge.judge.finetune import shipped_adapter_dir
    from relforge.judge.prompt import JudgeTemplate

    d = shipped_adapter_dir()
    if not (d / "relforge.json").exists():
        pytest.skip("no shipped adapter in this checkout")
    meta = json.loads((d / "relforge.json").read_text())
    assert meta["template"]["hash"] == JudgeTemplate.load(meta["template"]["id"]).hash
    assert meta["split"]["val_queries"] and not set(meta["split"]["val_queries"]) & set(
        meta["split"]["train_queries"]
    )
    assert (d / "adapter_config.json").exists() and (d / "README.md").exists()
    # named by its spec, not by the conversion cache of the machine that trained it
    assert (
        json.loads((d / "adapter_config.json").read_text())["base_model_name_or_path"] == meta["base_model"]
    )
    assert sum(f.stat().st_size for f in Path(d).iterdir() if f.is_file()) < 10.5 * 2**20


def test_epoch_shuffle_replays_one_seeded_rng_per_epoch():
    import random

    from relforge.judge.finetune.train import EpochShuffle

    rng, s = random.Random(7), EpochShuffle(10, 7)
    for epoch in range(3):
        expected = list(range(10))
        rng.shuffle(expected)  # what the recipe's order is: the e-th shuffle of one Random(seed)
        s.set_epoch(epoch)
        assert list(s) == s.order(epoch) == expected and len(s) == 10
    assert s.order(0) != s.order(1)


def test_trainer_steps_schedule_and_data_order_follow_the_recipe(tiny_llm_dir, tmp_path, monkeypatch):
    """Seeded order per epoch, batches of batch_size, one optimizer step per grad_accum batches (a short
    last one), linear warmup of int(warmup_ratio * total) steps, then linear decay to 0."""
    import math

    from relforge.judge.finetune import train as tr

    batches: list[list[str]] = []
    steps: list[tuple[int, float]] = []
    collate = tr.TrainCollator.__call__

    def record_batch(self, items):
        batches.append([x.ex.docid for x in items])
        return collate(self, items)

    def record_step(self, args, state, control, **kw):
        steps.append((state.global_step, kw["lr_scheduler"].get_last_lr()[0]))

    monkeypatch.setattr(tr.TrainCollator, "__call__", record_batch)
    monkeypatch.setattr(tr.EpochAgreement, "on_step_end", record_step, raising=False)
    corpus, queries, qrels = _data(6, 4)
    cfg = _cfg(epochs=2, batch_size=3, grad_accum=2, warmup_ratio=0.3, val_fraction=0.34, lr=1e-2)
    cfg = cfg.model_copy(update={"judge_check": False, "balance": "none"})
    s = finetune_judge(f"hf:{tiny_llm_dir}", corpus, queries, qrels, tmp_path / "a", cfg, progress=False)
    train_q = s["split"]["train_queries"]
    labelled = [Example(q, d, qrels[q][d]) for q in train_q for d in sorted(qrels[q])]
    pairs = balance_examples(labelled, VALUES, "none", seed=0)  # the training pairs as the run orders them
    n_batches = math.ceil(len(pairs) / 3)
    assert len(batches) == 2 * n_batches and {len(b) for b in batches} == {3, len(pairs) % 3 or 3}
    for epoch in range(2):
        order = tr.EpochShuffle(len(pairs), 0).order(epoch)
        seen = [d for b in batches[epoch * n_batches : (epoch + 1) * n_batches] for d in b]
        assert seen == [pairs[i].docid for i in order]
    per_epoch = math.ceil(n_batches / 2)
    total, warmup = 2 * per_epoch, int(0.3 * 2 * per_epoch)
    assert [k for k, _ in steps] == list(range(1, total + 1))
    for k, lr in steps:
        factor = k / max(1, warmup) if k < warmup else max(0.0, (total - k) / max(1, total - warmup))
        assert lr == pytest.approx(1e-2 * factor)
    assert len(s["train_loss"]) == 2 and s["timing"]["epoch_seconds"] and s["best_epoch"] in (1, 2)
