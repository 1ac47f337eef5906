"""The real pipeline on a very small slice: tiny random LLM for generate + judge, MiniLM for retrieval and
as the reranker backbone, 2 training steps. Checks the artifacts, skipping on rerun, the ablation file,
and resuming after SIGKILL during the judge stage without recomputing finished LLM calls."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from relforge.cli import main
from relforge.pipeline import plan_pipeline


def tiny_config(llm_dir: str, **over) -> dict:
    cfg = {
        "name": "tiny",
        "data": {"source": "sample:medquad", "max_docs": 30, "test_queries": 5, "test_split": "test"},
        "llm": {"spec": f"hf:{llm_dir}", "batch_size": 4},
        "generate": {
            "select": {"sample": 6},
            "max_new_tokens": 10,
            # a random model writes gibberish: keep it, the point here is the plumbing
            "filters": {"min_words": 1, "max_words": 200, "max_copy_overlap": 1.0, "check_style": False},
        },
        "retrieve": {"method": "hybrid", "top_k": 12, "mining": {"rank_min": 1, "num_negatives": 3}},
        "judge": {"adapter": None, "max_doc_tokens": 48, "agreement": {"queries": "all", "max_pairs": 8}},
        "groups": {"group_size": 4, "min_positive_grade": 0},
        "train": {"max_length": 48, "max_steps": 2, "batch_groups": 4},
        "rerank": {"first_stage": "hybrid", "top_k": 8, "max_length": 48},
        "evaluate": {"permutation_rounds": 200, "measures": ["nDCG@10", "MRR@10"]},
    }
    for k, v in over.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


SYSTEMS = ["bm25", "dense", "hybrid", "backbone", "plain", "judged", "soft"]
#: the soft variant (margin-MSE on the judge's expected grades) and one out-of-domain pool collection
SOFT_OOD = {
    "train": {"variants": ["plain", "judged", "soft"], "soft_loss": "margin_mse"},
    "evaluate": {
        "extra": [{"name": "liveqa-med", "source": "sample:liveqa-med", "mode": "pool", "max_queries": 3}]
    },
}


def _check_soft_and_ood(out: Path, printed: str) -> None:
    """evaluate.extra: its own metrics and report table, with every system; the soft variant's summary."""
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert {(c["run"], c["versus"]) for c in metrics["pairwise"]} >= {("soft", "plain"), ("soft", "backbone")}
    index = json.loads((out / "eval" / "extra" / "summary.json").read_text())
    assert index["liveqa-med"]["queries"] == 3 and index["liveqa-med"]["mode"] == "pool"
    ood = json.loads((out / index["liveqa-med"]["metrics"]).read_text())
    assert list(ood["aggregates"]) == SYSTEMS
    folder = out / "eval" / "extra" / "liveqa-med"
    sizes = {len((folder / f"{s}.trec").read_text().splitlines()) for s in SYSTEMS}
    assert len(sizes) == 1  # pool mode: every system ranks exactly the same judged pools
    html = (out / "report.html").read_text()
    table = html.split('data-collection="liveqa-med"')[1].split("</table>")[0]
    assert all(f"<td>{s}" in table for s in SYSTEMS)
    assert json.loads((out / "train" / "soft-summary.json").read_text())["loss"] == "margin_mse"
    groups = json.loads((out / "dataset" / "soft" / "summary.json").read_text())
    assert groups["policies"]["bad_positive"]["policy"] == "keep-as-soft"
    assert "bad_positive policy 'keep-as-soft'" in printed


def test_tiny_end_to_end(tmp_path, tiny_llm_dir, capsys):
    cfg = _write(tmp_path / "tiny.yaml", tiny_config(tiny_llm_dir, **SOFT_OOD))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--sizes", "2,1000"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    _check_soft_and_ood(out, captured.out + captured.err)
    m = json.loads((out / "manifest.json").read_text())
    assert m["reranker_model"] == "train/judged"
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(out / m["reranker_model"]))
    assert len(ce.predict([("a question", "a document")])) == 1
    done = {k for k, v in m["stages"].items() if v["status"] == "done"}
    assert done == {
        "import",
        "generate",
        "retrieve",
        "judge",
        "agreement",
        "groups",
        "train",
        "rerank",
        "evaluate",
        "evaluate_extra",
        "ablation",
        "report",
    }
    assert m["stages"]["generate"]["llm_tokens"]["completion"] > 0
    assert all(m["stages"][s]["wall_s"] > 0 for s in done)
    # the report renders what the real stages wrote: every section, and the systems' descriptions
    html = (out / "report.html").read_text()
    for heading in (
        "Retrieval metrics",
        "Judge labels",
        "Agreement with human labels",
        "Training data buckets",
        "Dataset-size ablation",
        "Run configuration and timings",
    ):
        assert f"<h2>{heading}</h2>" in html, heading
    assert list(m["systems"]) == SYSTEMS
    assert "groups re-bucketed by the judge" in html and "untrained minilm" in html
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert list(metrics["aggregates"]) == SYSTEMS
    agree = json.loads((out / "judge" / "agreement.json").read_text())
    assert set(agree) == {"judge", "minilm_cosine"} and agree["judge"]["n"] == 8
    ab = json.loads((out / "ablation.json").read_text())
    assert [r["size"] for r in ab["rows"]] == [2, m["stages"]["groups"]["counts"]["judged_groups"]]
    assert ab["rows"][1]["nDCG@10"] == round(
        metrics["aggregates"]["judged"]["nDCG@10"], 4
    )  # reused, not retrained
    assert "BM25" in ab["reference"]
    assert "report:" in printed and "Wall time per stage" in printed

    # a second run changes nothing and runs nothing
    before = {p: p.stat().st_mtime_ns for p in (out / "eval").iterdir()}
    assert main(["run", str(cfg), "--out", str(out), "--sizes", "2,1000"]) == 0
    m2 = json.loads((out / "manifest.json").read_text())
    assert [k for k, v in m2["stages"].items() if not v.get("skipped_last_run")] == []
    assert before == {p: p.stat().st_mtime_ns for p in (out / "eval").iterdir()}

    # a changed training setting reruns train and what depends on it, not the LLM stages
    changed = _write(
        tmp_path / "tiny.yaml",
        tiny_config(tiny_llm_dir, **{**SOFT_OOD, "train": {**SOFT_OOD["train"], "lr": 1e-4}}),
    )
    acts = {i.stage: (i.action, i.reason) for i in plan_pipeline(changed, out, sizes=[2, 1000])}
    assert acts["train"] == ("run", "configuration changed")
    assert acts["rerank"][0] == "run" and acts["ablation"][0] == "run"
    assert all(
        acts[s][0] == "skip" for s in ("import", "generate", "retrieve", "judge", "agreement", "groups")
    )

    # the demo's setting: the same groups train a bi-encoder with dense LCE, reranked and evaluated as such
    bi = _write(
        tmp_path / "tiny.yaml",
        tiny_config(
            tiny_llm_dir, **{**SOFT_OOD, "train": {**SOFT_OOD["train"], "kind": "bi", "loss": "lce"}}
        ),
    )
    assert main(["run", str(bi), "--out", str(out), "--sizes", "2,1000"]) == 0
    m3 = json.loads((out / "manifest.json").read_text())
    assert m3["stages"]["judge"].get("skipped_last_run") and not m3["stages"]["train"].get("skipped_last_run")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out / m3["reranker_model"]))
    assert st.encode(["a question"]).shape == (1, 384)
    assert (out / m3["reranker_model"] / "1_Pooling").is_dir()  # a SentenceTransformer, not a CrossEncoder
    metrics3 = json.loads((out / "eval" / "metrics.json").read_text())
    assert list(metrics3["aggregates"]) == SYSTEMS
    ab3 = json.loads((out / "ablation.json").read_text())
    assert ab3["rows"][1]["nDCG@10"] == round(metrics3["aggregates"]["judged"]["nDCG@10"], 4)


def _score_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM llm_calls WHERE kind = 'score'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _stage_status(out: Path, stage: str) -> str | None:
    try:
        return json.loads((out / "manifest.json").read_text())["stages"].get(stage, {}).get("status")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_sigkill_during_judge_then_resume(tmp_path, tiny_llm_dir):
    # batch size 1 and ~100 pairs make the judge stage long enough to be killed in the middle
    cfg = tiny_config(
        tiny_llm_dir,
        data={"max_docs": 80},
        generate={"select": {"sample": 12}},
        retrieve={"top_k": 20, "mining": {"rank_min": 1, "num_negatives": 8}},
        judge={"batch_size": 1, "agreement": {"enabled": False}},
        llm={"batch_size": 1},
    )
    path = _write(tmp_path / "tiny.yaml", cfg)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "relforge", "run", str(path), "--out", str(out), "--to", "judge"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "llm-cache.sqlite"
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            if _stage_status(out, "judge") == "running" and _score_rows(db) >= 5:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = _score_rows(db)
    assert _stage_status(out, "judge") == "running"  # killed: no record of success
    assert not (out / "judge" / "judgments.jsonl").exists()

    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    m = json.loads((out / "manifest.json").read_text())
    assert all(m["stages"][s].get("skipped_last_run") for s in ("import", "generate", "retrieve"))
    judge = m["stages"]["judge"]
    assert judge["status"] == "done"
    pairs = judge["counts"]["pairs"]
    assert finished < pairs
    assert judge["cache_hits"] >= finished  # every call finished before the kill came from the cache
    assert judge["cache_hits"] + judge["cache_misses"] == pairs

    # the same job, never interrupted, writes identical files
    ref = tmp_path / "ref"
    assert (
        subprocess.run(
            [*cmd[:-4], "--out", str(ref), "--to", "judge"], env=env, capture_output=True
        ).returncode
        == 0
    )
    for rel in ("generate/queries.jsonl", "retrieve/negatives.jsonl", "judge/judgments.jsonl"):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_human_train_split_replaces_generation_without_an_llm(tmp_path):
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.data.samples import sample_path

    cfg = {
        "name": "human",
        "llm": {"spec": f"hf:{tmp_path / 'no-such-model'}"},  # never loaded: no LLM stage runs
        "data": {
            "source": "sample:medquad",
            "max_docs": 60,
            "test_queries": 5,
            "train_split": "train",
            "train_queries": 12,
        },
    }
    path = _write(tmp_path / "human.yaml", cfg)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--to", "generate"]) == 0
    queries = read_queries(out / "generate" / "queries.jsonl")
    qrels = read_qrels(out / "generate" / "qrels.tsv")
    test = read_queries(out / "data" / "test-queries.jsonl")
    corpus = read_corpus(out / "data" / "corpus.jsonl")
    src_train = read_qrels(Path(sample_path("medquad")) / "qrels" / "train.tsv")
    assert len(queries) == 12 and set(qrels) == set(queries)
    assert set(queries) <= set(src_train) and not set(queries) & set(test)
    assert all(d in corpus and g > 0 for docs in qrels.values() for d, g in docs.items())
    assert len(corpus) == 60  # the training questions' answers are kept inside the corpus cap
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["generate"]["llm"] is None and m["stages"]["generate"]["counts"]["queries"] == 12


def test_dev_split_chooses_each_checkpoint_with_the_start_as_a_candidate(tmp_path):
    """Issue 17: ``data.dev_split`` human questions (apart from test and training) are retrieved and
    choose each variant's checkpoint, step 0 included; the summary, manifest and report say which."""
    from relforge.data import read_queries, read_run

    cfg = {
        "name": "dev",
        "llm": {"spec": f"hf:{tmp_path / 'no-such-model'}"},  # never loaded: human training questions
        "data": {
            "source": "sample:medquad",
            "max_docs": 80,
            "test_queries": 5,
            "train_split": "train",
            "train_queries": 12,
            "dev_split": "dev",
            "dev_queries": 6,
        },
        "retrieve": {"methods": ["bm25", "hybrid"], "top_k": 12, "mining": {"num_negatives": 3}},
        "judge": {"enabled": False},
        "groups": {"group_size": 4},
        # lr 1e-12: no checkpoint can beat the start, so the start must be kept (the demo's case)
        "train": {
            "kind": "bi",
            "variants": ["plain"],
            "max_length": 48,
            "max_steps": 4,
            "batch_groups": 4,
            "lr": 1e-12,
        },
        "rerank": {"first_stage": "hybrid", "top_k": 8, "max_length": 48},
        "evaluate": {
            "permutation_rounds": 200,
            "measures": ["nDCG@10"],
            "extra": [{"name": "ood", "source": "sample:liveqa-med", "split": "test", "max_queries": 3}],
        },
        "ablation": {"sizes": [5], "variants": ["plain"]},
    }
    out = tmp_path / "run"
    assert main(["run", str(_write(tmp_path / "dev.yaml", cfg)), "--out", str(out)]) == 0
    dev, test = (
        read_queries(out / "data" / "dev-queries.jsonl"),
        read_queries(out / "data" / "test-queries.jsonl"),
    )
    train = read_queries(out / "generate" / "queries.jsonl")
    assert len(dev) == 6 and not set(dev) & (set(test) | set(train))
    assert set(read_run(out / "retrieve" / "dev-hybrid.trec")) == set(dev)
    summary = json.loads((out / "train" / "plain-summary.json").read_text())
    assert summary["dev_curve"][0]["step"] == 0 and len(summary["dev_curve"]) >= 2
    assert summary["selected"] == "start" and summary["best_checkpoint_step"] == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["train"]["counts"]["plain"]["selected"] == summary["selected"]
    # a bi-encoder that kept its start is the backbone: its runs are the backbone's, not encoded again
    assert m["stages"]["rerank"]["counts"]["same_as_backbone"] == ["plain"]
    for folder in (out / "rerank", out / "eval" / "extra" / "ood"):
        plain, backbone = read_run(folder / "plain.trec"), read_run(folder / "backbone.trec")
        assert plain == backbone and plain
    (row,) = json.loads((out / "ablation.json").read_text())["rows"]
    assert row["same_as_backbone"] and (
        read_run(out / "ablation" / f"plain-{row['size']}.trec") == read_run(out / "rerank" / "backbone.trec")
    )
    html = (out / "report.html").read_text()
    assert "Checkpoint selection on 6 human dev questions" in html
    assert "it is the backbone, and its rows are the backbone" in html
    # a dev split that is also the test split is refused at load time
    bad = _write(tmp_path / "bad.yaml", {**cfg, "data": {**cfg["data"], "dev_split": "test"}})
    assert main(["run", str(bad), "--out", str(tmp_path / "bad")]) != 0
