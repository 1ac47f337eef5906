"""Issue 18: ``--precision`` on ``relforge judge`` and ``relforge generate`` reaches the local (hf) backend
(the summary records what ran, the cache keeps precisions apart) and is refused for remote/GGUF backends."""

from __future__ import annotations

import json

import pytest

from relforge.cli import main
from relforge.data import write_corpus
from relforge.errors import UsageError
from relforge.llm.net_options import llm_precision_options
from relforge.types import Document


@pytest.fixture()
def beir(tmp_path):
    docs = [
        Document("d1", "Anemia is caused by a lack of iron.", title="Anemia"),
        Document("d2", "Influenza causes fever and cough.", title="Flu"),
    ]
    write_corpus(tmp_path / "corpus.jsonl", docs)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "What causes anemia?"}\n')
    (tmp_path / "pairs.tsv").write_text("q1\td1\nq1\td2\n")
    return tmp_path


def _judge(beir, llm, out, *extra):
    return main(
        [
            "judge", "--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl"),
            "--pairs", str(beir / "pairs.tsv"), "--llm", llm, "--out", str(out), "--no-progress",
            "--max-doc-tokens", "16", "--cache", str(beir / "cache.sqlite"), *extra,
        ]
    )  # fmt: skip


def _summary(path):
    return json.loads(path.read_text())


def test_judge_precision_reaches_the_backend_and_the_cache_key(beir, tiny_llm_dir):
    llm = f"hf:{tiny_llm_dir}"
    assert _judge(beir, llm, beir / "fp32.jsonl") == 0
    base = _summary(beir / "fp32.summary.json")
    assert base["llm_backend"]["precision"] == "fp32" and base["llm_backend"]["dtype"] == "float32"

    assert _judge(beir, llm, beir / "bf16.jsonl", "--precision", "bf16") == 0
    s = _summary(beir / "bf16.summary.json")
    assert s["llm_backend"]["precision"] == "bf16" and s["llm_backend"]["dtype"] == "bfloat16"
    assert s["llm_backend"]["precision_requested"] == "bf16"
    assert s["llm_stats"]["hits"] == 0 and s["llm_stats"]["misses"] > 0  # not served fp32's cached calls

    assert _judge(beir, llm, beir / "int8.jsonl", "--precision", "int8") == 0
    assert _summary(beir / "int8.summary.json")["llm_backend"]["precision"] == "int8"

    assert _judge(beir, llm, beir / "again.jsonl", "--precision", "fp32") == 0  # fp32 = the default, same key
    assert _summary(beir / "again.summary.json")["llm_stats"]["misses"] == 0


def test_generate_precision_reaches_the_backend(tmp_path, tiny_llm_dir):
    write_corpus(tmp_path / "c.jsonl", [Document("d1", "Gout causes joint pain and swelling.")])
    out = tmp_path / "q.jsonl"
    args = [
        "generate",
        "--corpus",
        str(tmp_path / "c.jsonl"),
        "--out",
        str(out),
        "--llm",
        f"hf:{tiny_llm_dir}",
    ]
    args += ["--max-new-tokens", "4", "--no-cache", "--output", "json", "--precision", "bf16"]
    assert main(args) == 0
    backend = _summary(tmp_path / "q.summary.json")["llm_backend"]
    assert backend["backend"] == "hf" and backend["precision"] == "bf16" and backend["dtype"] == "bfloat16"


@pytest.mark.parametrize("spec", ["openai:http://127.0.0.1:9/v1#m", "llamacpp:/nowhere/x.gguf"])
def test_precision_refused_for_non_hf_backends(beir, spec, capsys):
    assert _judge(beir, spec, beir / "j.jsonl", "--precision", "bf16") == 2
    err = capsys.readouterr().err
    assert "--precision bf16 applies to local hf: models only" in err and spec.split(":")[0] + ":" in err
    assert not (beir / "j.jsonl").exists()
    args = ["generate", "--corpus", str(beir / "corpus.jsonl"), "--out", str(beir / "q.jsonl"), "--llm", spec]
    assert main([*args, "--precision", "int8"]) == 2
    assert "--precision int8 applies to local hf: models only" in capsys.readouterr().err
    assert llm_precision_options(spec, "auto") == {} and llm_precision_options(spec, None) == {}


def test_precision_bad_value_and_preset(beir, tiny_llm_dir, capsys):
    assert _judge(beir, f"hf:{tiny_llm_dir}", beir / "j.jsonl", "--precision", "fp64") == 2
    assert "precision 'fp64' is not one of auto, fp32, bf16" in capsys.readouterr().err
    with pytest.raises(UsageError, match="not one of"):
        llm_precision_options("smollm2", "double")
    assert llm_precision_options("smollm2", "bfloat16") == {"precision": "bf16"}
    assert main(["judge", "--preset", "best", "--precision", "bf16"]) == 2
    assert "drop --precision" in capsys.readouterr().err
