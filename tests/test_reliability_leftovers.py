"""Issue 15 leftovers: zero step/epoch counts refused at config load; conflicting duplicate qrels warned
about (file, count, first line); training cuts huge texts by characters before tokenising. (``generate
--timeout/--retries`` against a real 127.0.0.1 server: tests/test_reliability_network.py.)"""

from __future__ import annotations

import json
import logging

import pytest
from tests.test_reliability_outputs import relforge

from relforge.cli import main
from relforge.config import parse_config
from relforge.errors import DataError

# --------------------------------------------------------------------------- zero counts


@pytest.mark.parametrize(
    "raw, key, hint",
    [
        ({"train": {"max_steps": 0}}, "train.max_steps", "-1 (run the epochs) or a number of steps >= 1"),
        ({"train": {"max_steps": -3}}, "train.max_steps", "-1 (run the epochs)"),
        ({"judge_finetune": {"epochs": 0}}, "judge_finetune.epochs", "greater than or equal to 1"),
    ],
)
def test_zero_steps_and_epochs_are_refused_at_config_load(raw, key, hint):
    with pytest.raises(DataError) as e:
        parse_config(raw)
    assert key in str(e.value) and hint in str(e.value)


def test_valid_step_and_epoch_counts_still_load(tmp_path):
    cfg = parse_config({"train": {"max_steps": -1}, "judge_finetune": {"epochs": 1}})
    assert cfg.train.max_steps == -1 and cfg.judge_finetune.epochs == 1
    assert parse_config({"train": {"max_steps": 3}}).train.max_steps == 3
    # the CLI refuses it before touching any input
    args = ["train", "--groups", str(tmp_path / "none"), "--out", str(tmp_path / "m"), "--max-steps", "0"]
    assert main(args) == 2


# --------------------------------------------------------------------------- conflicting qrels


def test_read_qrels_warns_on_conflicting_duplicates(tmp_path, caplog):
    from relforge.data import read_qrels

    p = tmp_path / "q.tsv"
    p.write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t3\nq1\td1\t3\nq1\td2\t1\nq1\td2\t0\nq2\td1\t2\nq2\td1\t1\n"
    )
    with caplog.at_level(logging.WARNING, logger="relforge.data"):
        qrels = read_qrels(p)
    assert qrels == {"q1": {"d1": 3, "d2": 0}, "q2": {"d1": 1}}  # the last row of each pair
    [msg] = [r.getMessage() for r in caplog.records if r.name == "relforge.data"]
    assert str(p) in msg and "2 (query, doc) pairs are judged twice with different grades" in msg
    assert "first at line 5 (query q1, doc d2: grade 0, earlier 1)" in msg

    caplog.clear()
    p.write_text("q1\td1\t3\nq1\td1\t3\n")  # an identical repeat is not a conflict
    with caplog.at_level(logging.WARNING, logger="relforge.data"):
        assert read_qrels(p) == {"q1": {"d1": 3}}
    assert not caplog.records


def test_conflicting_qrels_warning_reaches_the_console(tmp_path):
    q = tmp_path / "q.tsv"
    q.write_text("q1\td1\t3\nq1\td2\t0\nq1\td1\t1\n")
    run = tmp_path / "r.trec"
    run.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\n")
    r = relforge("evaluate", "--qrels", q, "--run", run)
    assert r.returncode == 0, r.stderr
    assert f"{q}: 1 (query, doc) pairs are judged twice with different grades; first at line 3" in r.stderr


# --------------------------------------------------------------------------- training text cut


def test_cut_long_texts_cuts_by_characters_only_what_is_huge():
    import datasets

    from relforge.textcut import char_budget
    from relforge.train.trainer import cut_long_texts

    huge = "word " * 400_000  # 2 MB
    ds = datasets.Dataset.from_dict(
        {
            "query": ["q one", "q two"],
            "positive": [huge, "short"],
            "negative_1": ["n", huge],
            "labels": [[1, 0]] * 2,
        }
    )
    out, n = cut_long_texts(ds, 32)
    assert n == 2 and len(out["positive"][0]) == char_budget(32) == len(out["negative_1"][1])
    assert (
        out["positive"][1] == "short" and out["query"] == ["q one", "q two"] and out["labels"] == ds["labels"]
    )
    assert out.features == ds.features
    small = ds.select_columns(["query"])
    assert cut_long_texts(small, 32) == (small, 0)  # nothing long: the same dataset, no copy


def test_training_cuts_a_huge_document_and_counts_it(tmp_path, capsys):
    import datasets
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from relforge.models import resolve_model
    from relforge.train.config import TrainConfig
    from relforge.train.trainer import train_cross_encoder

    base = tmp_path / "tiny-ce"
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(0)
    bert = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(bert).save_pretrained(base)
    tok.save_pretrained(base)
    groups = datasets.Dataset.from_dict(
        {
            "query": ["what causes gout", "symptoms of anemia"],
            "positive": ["gout is caused by uric acid " * 20_000, "anemia makes you tired"],  # 560 kB
            "negative_1": ["measles gives a rash", "tetanus"],
        }
    )
    cfg = TrainConfig(base=str(base), max_length=32, max_steps=1, batch_groups=2, logging_steps=1)
    summary = train_cross_encoder(groups, tmp_path / "out", cfg)
    assert summary["texts_cut_by_chars"] == 1 and summary["steps"] == 1
    saved = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert saved["texts_cut_by_chars"] == 1
    assert "train: 1 texts longer than 256 characters cut before tokenising" in capsys.readouterr().err
