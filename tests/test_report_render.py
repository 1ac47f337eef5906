"""The HTML report: every section from a full artifacts dir, "not run" notes, errors, the CLI."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from relforge.cli import main
from relforge.errors import DataError, MissingInputError
from relforge.evaluate import evaluate
from relforge.report import ARTIFACTS, render_report

FIX = Path(__file__).parent / "fixtures" / "eval"
IMG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
HEADINGS = [
    "Retrieval metrics",
    "Further test collections",
    "Judge labels",
    "Agreement with human labels",
    "Judge fine-tuning",
    "Training data buckets",
    "Dataset-size ablation",
    "Run configuration and timings",
]


def write_eval(root: Path):
    """eval/metrics.json (and .csv) as the evaluate stage writes them: relforge.evaluate.run.run."""
    from relforge.evaluate import EvalConfig, EvalResult
    from relforge.evaluate.run import EvalInputs, run

    runs = {
        "BM25": FIX / "bm25.trec",
        "dense MiniLM": FIX / "dense.trec",
        "reranker + judge": FIX / "reranker.trec",
    }
    inputs = EvalInputs(qrels=FIX / "qrels.trec", runs=runs, pairs=[("reranker + judge", "dense MiniLM")])
    run(EvalConfig(permutation_rounds=2000), inputs, root / "eval")
    return EvalResult.from_json(root / "eval" / "metrics.json")


def build_artifacts(root: Path) -> dict:
    """Write every artifact of the report contract, in the shapes the pipeline writes them: manifest,
    metrics, extra collections and ablation through their writers' own classes."""
    from relforge.evaluate.ablation import AblationResult
    from relforge.evaluate.extra import ExtraEntry, ExtraIndex
    from relforge.judge.judge import Judgment, write_judgments
    from relforge.pipeline.runner import write_manifest

    root.mkdir(parents=True, exist_ok=True)
    res = write_eval(root)
    manifest = {
        "config": {
            "name": "fixture-demo",
            "data": {"sample": "medquad", "max_docs": 2000},
            "judge": {"model": "smollm2", "mode": "probs"},
            "train": {"epochs": 1, "max_length": 128},
        },
        "stage_order": ["import", "generate", "retrieve", "judge", "train", "evaluate"],
        "stages": {
            "generate": {
                "wall_s": 312.5,
                "status": "done",
                "counts": {"queries": 300},
                "llm_tokens": {"prompt": 45000, "completion": 210},
                "cache_hits": 12,
                "config_hash": "ab12",
                "outputs": {"generate/queries.jsonl": "ff00"},
            },
            "import": {"wall_s": 3.2, "status": "done", "counts": {"docs": 2000, "queries": 300}},
            "retrieve": {
                "wall_s": 21.0,
                "status": "done",
                "counts": {"candidates": 30000},
                "skipped_last_run": True,
            },
            "judge": {
                "wall_s": 188.1,
                "status": "done",
                "counts": {"pairs": 2400},
                "llm_tokens": {"prompt": 1_200_000, "completion": 2400},
            },
            "train": {"wall_s": 241.7, "status": "done", "counts": {"steps": 120}},
            "evaluate": {"wall_s": 1.4, "status": "done"},
        },
        "systems": {
            "BM25": "BM25",
            "dense MiniLM": "dense (MiniLM cosine)",
            "reranker + judge": "reranker, judge re-bucketed",
        },
        "reranker_model": "train/reranker",
        "relforge_version": "0.1.0",
    }
    write_manifest(root, manifest)
    grades = [3] * 5 + [2] * 9 + [1] * 12 + [0] * 14 + [None] * 3
    write_judgments(
        root / "judge" / "judgments.jsonl",
        [
            Judgment(
                qid=f"q{i % 7}",
                docid=f"d{i}",
                grade=g,
                expected=None if g is None else g * 0.9 + 0.1,
                probs=None if g is None else {str(k): (0.7 if k == g else 0.1) for k in range(4)},
                mode="probs",
                model="smollm2",
                template_hash="abc",
                parse_ok=g is not None,
            )
            for i, g in enumerate(grades)
        ],
    )
    labels = ["0", "1", "2", "3"]
    held = {
        "human": "liveqa-med",
        "queries": [f"v{i}" for i in range(13)],
        "queries_from": "adapter validation split",
        "pairs": 250,
    }
    agreement = {  # relforge.pipeline's flat_agreement(): report names + balanced (pair_metrics names)
        "judge": {
            "n": 250,
            "tau_b": 0.4123,
            "per_query_tau_b": 0.3817,
            "kappa": 0.311,
            "weighted_kappa": 0.5234,
            "alpha": 0.498,
            "accuracy": 0.556,
            "macro_f1": 0.521,
            "labels": labels,
            "confusion": [[50, 10, 5, 1], [12, 30, 14, 4], [3, 11, 40, 9], [1, 2, 12, 46]],
            "per_class": {
                lab: {"precision": 0.6, "recall": 0.5, "f1": 0.55, "support": 60} for lab in labels
            },
            "rerank": {"nDCG@10": 0.7312},
            "balanced": {"n": 160, "kendall_tau_b": 0.3951, "quadratic_kappa": 0.5012, "accuracy": 0.49},
            "counts": {"unlabelled": 2},
            **held,
        },
        "minilm_cosine": {
            "model": "minilm",
            "n": 250,
            "tau_b": 0.2087,
            "per_query_tau_b": 0.1766,
            "rerank": {"nDCG@10": 0.6421},
            **held,
        },
    }
    (root / "judge" / "agreement.json").write_text(json.dumps(agreement))
    (root / "judge_finetune").mkdir(exist_ok=True)
    with open(root / "judge_finetune" / "metrics.jsonl", "w") as fh:  # relforge.judge.finetune's names
        for ep, tau in ((0, -0.2101), (1, 0.1501), (2, 0.4123), (3, 0.3302)):
            fh.write(
                json.dumps(
                    {
                        "epoch": ep,
                        "kendall_tau_b": tau,
                        "quadratic_kappa": tau + 0.1,
                        "accuracy": 0.3 + tau / 2,
                        "train_seconds": 30.0 * (ep > 0),
                        "per_class": {
                            lab: {"precision": 0.5, "recall": 0.4, "f1": 0.2 * ep + 0.05 * int(lab)}
                            for lab in labels
                        },
                    }
                )
                + "\n"
            )
    (root / "dataset").mkdir(exist_ok=True)
    (root / "dataset" / "summary.json").write_text(
        json.dumps(
            {
                "buckets": {"hard": 1817, "soft": 120, "false": 75, "unjudged": 300, "unjudged_dropped": 4},
                "groups_judged": 300,
                "negatives_drawn_judged": {"hard": 1500, "soft": 100},
                "group_size": 8,
            }
        )
    )
    AblationResult(
        rows=[
            {"size": n, "variant": v, "requested_size": n, "nDCG@10": x, "MRR@10": x + 0.1, "p_vs_bm25": 0.01}
            for v, pts in (
                ("judged", ((100, 0.4012), (200, 0.4431), (400, 0.4877), (800, 0.5219))),
                ("plain", ((100, 0.3901), (200, 0.4107), (400, 0.4512), (800, 0.4733))),
            )
            for n, x in pts
        ],
        reference={"BM25": 0.3334, "dense (MiniLM cosine)": 0.4602},
        x="training groups",
        variants=["judged", "plain"],
        seed=0,
    ).write(root / "ablation.json")
    extra = root / "eval" / "extra" / "ood"
    extra.mkdir(parents=True, exist_ok=True)
    ood = evaluate(FIX / "qrels.trec", {"BM25": FIX / "bm25.trec", "dense MiniLM": FIX / "dense.trec"})
    ood.to_json(extra / "metrics.json")
    entry = ExtraEntry(
        metrics="eval/extra/ood/metrics.json",
        source="sample:liveqa-med",
        split="test",
        mode="pool",
        first_stage="hybrid",
        top_k=20,
        queries=len(ood.queries),
        documents=40,
        description="out of domain",
    )
    ExtraIndex({"ood": entry}).write(root / "eval" / "extra" / "summary.json")
    return {"result": res, "ood": ood}


def test_extra_collections_get_their_own_table(full):
    root, _, html, _ = full
    table = html.split('data-collection="ood"')[1].split("</table>")[0]
    assert "<td>BM25" in table and "<td>dense MiniLM" in table
    assert "ood — out of domain" in html and "mode pool" in html
    assert "40 documents · source sample:liveqa-med (test)" in html and "see hybrid top 20" in html


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    info = build_artifacts(root)
    out = render_report(root)
    return root, out, out.read_text(encoding="utf-8"), info["result"]


def test_full_report_has_every_section(full):
    root, out, html, _ = full
    assert out == root / "report.html"
    for h in HEADINGS:
        assert f"<h2>{h}</h2>" in html
    assert "Not run" not in html and "Could not read" not in html
    assert "<title>relforge report — fixture-demo</title>" in html


def test_full_report_images_are_inlined_pngs(full):
    _, _, html, _ = full
    images = IMG.findall(html)
    # metrics bars, label distribution, confusion matrix (judge), fine-tuning curves, buckets, ablation
    assert len(images) == 6
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html  # nothing loaded from the network


def test_full_report_shows_the_key_numbers(full):
    _, _, html, res = full
    for run in res.runs:
        for m in res.measures:
            assert f"{res.aggregates[run][m]:.4f}" in html
    best = max(res.runs, key=lambda r: res.aggregates[r]["nDCG@10"])
    assert f'<span class="big">{best}</span> is the best system on nDCG@10' in html
    t = res.significance[best]["nDCG@10"]
    assert f"{t.delta:+.4f}" in html and f"{t.ttest_p:.3f}" in html
    assert res.marks(best, "nDCG@10") in html and "†" in html
    assert "vs <strong>dense MiniLM</strong>" in html  # the pairwise comparison
    assert "reranker, judge re-bucketed" in html  # system descriptions from the manifest
    # judgments: counts and the unparsed warning
    assert '<td>2</td><td class="num">9</td>' in html and "3 outputs could not be parsed" in html
    # agreement: both labellers, the balanced row, rerank nDCG, held-out description, unlabelled note
    for text in (
        "LLM judge",
        "MiniLM cosine (baseline)",
        "LLM judge — class-balanced subsample",
        "0.412",
        "0.382",
        "0.209",
        "0.395",
        "0.7312",
        "0.6421",
        "250 held-out pairs · 13 queries",
        "2 pairs had an unparseable judgment",
    ):
        assert text in html, text
    # fine-tuning (pair_metrics names accepted): best trained epoch, zero-shot row
    assert "Best epoch by τ_b: <strong>2</strong> (τ_b 0.412)" in html and "0 (zero-shot)" in html
    assert "-0.210" in html
    # buckets, ablation (two variants), timings in stage_order, config
    assert "1,817" in html and "negatives_drawn_judged" in html
    assert "0.5219" in html and "0.4733" in html and '<th class="num">training groups</th>' in html
    assert "dense (MiniLM cosine)" in html
    assert "5 min 12 s" in html and "12 min 48 s" in html  # generate stage, total
    assert html.index("<td>import</td>") < html.index("<td>generate</td>")  # stage_order respected
    assert "config_hash" not in html and "ff00" not in html  # bookkeeping keys stay out of the table
    assert "max_docs: 2000" in html and "train/reranker" in html


def test_raw_agreement_output_is_accepted(tmp_path):
    from relforge.judge.agreement import agreement
    from relforge.judge.judge import Judgment

    human = {"q1": {"a": 0, "b": 1, "c": 2, "d": 3}, "q2": {"a": 3, "e": 0, "f": 2, "g": 1}}
    pred = {
        ("q1", "a"): 0,
        ("q1", "b"): 2,
        ("q1", "c"): 2,
        ("q1", "d"): 3,
        ("q2", "a"): 3,
        ("q2", "e"): 1,
        ("q2", "f"): 1,
        ("q2", "g"): 1,
    }
    js = [
        Judgment(
            qid=q, docid=d, grade=g, expected=float(g), probs=None, mode="probs", model="m", template_hash="h"
        )
        for (q, d), g in pred.items()
    ]
    rep = agreement(human, js)
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "agreement.json").write_text(json.dumps({"judge": rep}))
    html = render_report(tmp_path).read_text()
    assert f"{rep['all']['kendall_tau_b']:.3f}" in html and f"{rep['all']['quadratic_kappa']:.3f}" in html
    assert len(IMG.findall(html)) == 1  # the confusion matrix


def test_partial_report_notes_what_did_not_run(tmp_path):
    write_eval(tmp_path)
    html = render_report(tmp_path, tmp_path / "r.html").read_text()
    assert len(IMG.findall(html)) == 1
    for key in ARTIFACTS:
        if key != "metrics":
            assert f"no <code>{ARTIFACTS[key]}</code> in this artifacts directory" in html
    assert html.count('class="notrun"') == 7
    for h in HEADINGS:
        assert f"<h2>{h}</h2>" in html


def test_unreadable_artifact_is_flagged_not_hidden(tmp_path):
    write_eval(tmp_path)
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "agreement.json").write_text('{"judge": {"tau_b": 0.3,')
    (tmp_path / "judge" / "judgments.jsonl").write_text('{"qid": "q1", "grade": 1}\n{"qid": "q2"}\n')
    html = render_report(tmp_path).read_text()
    assert html.count('class="error"') == 2
    assert "agreement.json:1: malformed JSON" in html and "judgments.jsonl:2:" in html
    with pytest.raises(DataError, match=r"judgments.jsonl:2"):
        render_report(tmp_path, strict=True)


def test_agreement_single_entry_and_ablation_rows_sorted(tmp_path):
    from relforge.evaluate.ablation import AblationResult

    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "agreement.json").write_text(json.dumps({"tau_b": 0.25, "kappa": 0.1}))
    rows = [{"size": 50, "nDCG@10": 0.3}, {"size": 25, "nDCG@10": 0.2}]
    AblationResult(rows=rows, reference={"BM25": 0.1}).write(tmp_path / "ablation.json")
    html = render_report(tmp_path).read_text()
    assert "LLM judge" in html and "0.250" in html
    assert html.index(">25<") < html.index(">50<")  # rows sorted by size
    assert len(IMG.findall(html)) == 1  # ablation curve; no confusion matrix without 'confusion'


def test_artifacts_not_in_their_writers_shape_are_flagged(tmp_path):
    """The report reads manifest.json and ablation.json through their writers' classes: a shape the
    pipeline never writes is an error box, not a guess."""
    write_eval(tmp_path)
    (tmp_path / "ablation.json").write_text(json.dumps([{"size": 50, "nDCG@10": 0.3}]))
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {"train": {"status": "skipped"}}}))
    html = render_report(tmp_path).read_text()
    assert html.count('class="error"') == 2
    assert "ablation.json: not a AblationResult" in html and "stages.train.status" in html


def test_missing_or_empty_dir(tmp_path):
    with pytest.raises(MissingInputError, match="no such artifacts directory"):
        render_report(tmp_path / "nope")
    with pytest.raises(MissingInputError, match="none of the report's artifacts"):
        render_report(tmp_path)


def test_report_cli(full, tmp_path, capsys):
    root, _, _, _ = full
    out = tmp_path / "x" / "report.html"
    assert main(["report", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and out.stat().st_size > 10_000
    assert main(["report", str(tmp_path / "missing")]) == 4
    assert "no such artifacts directory" in capsys.readouterr().err
    write_eval(tmp_path / "partial")
    assert main(["report", str(tmp_path / "partial")]) == 0
    assert "not run (no file): manifest.json" in capsys.readouterr().err


def test_label_distribution_shows_the_whole_scale(tmp_path):
    from relforge.report import load_artifacts

    (tmp_path / "judge").mkdir()
    probs = {"0": 0.7, "1": 0.1, "2": 0.1, "3": 0.1}
    lines = [{"qid": "q1", "docid": f"d{i}", "grade": 0, "expected": 0.6, "probs": probs} for i in range(4)]
    lines.append({"qid": "q2", "docid": "x", "grade": None, "expected": None, "probs": None})
    (tmp_path / "judge" / "judgments.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    j = load_artifacts(tmp_path)["judgments"]
    assert j["counts"] == {"0": 4, "1": 0, "2": 0, "3": 0, "unparsed": 1}
    assert j["n"] == 5 and j["queries"] == 2 and j["mean_expected"] == pytest.approx(0.6)


def test_report_says_plainly_when_no_trained_reranker_beats_the_backbone(tmp_path):
    runs = {"backbone": FIX / "dense.trec", "plain": FIX / "bm25.trec"}
    res = evaluate(FIX / "qrels.trec", runs, permutation_rounds=200)
    assert res.aggregates["plain"]["nDCG@10"] < res.aggregates["backbone"]["nDCG@10"]
    (tmp_path / "eval").mkdir()
    res.to_json(tmp_path / "eval" / "metrics.json")
    html = render_report(tmp_path).read_text()
    assert "No trained reranker beats its untrained backbone on nDCG@10" in html
    swapped = evaluate(FIX / "qrels.trec", {"backbone": runs["plain"], "plain": runs["backbone"]})
    swapped.to_json(tmp_path / "eval" / "metrics.json")
    assert "No trained reranker beats" not in render_report(tmp_path).read_text()


def test_system_descriptions_name_the_settings_and_the_judge():
    """The manifest's ``systems`` lines (relforge.report.systems), as the pipeline has written them."""
    from relforge.config import parse_config
    from relforge.report.systems import describe_systems

    cfg = parse_config(
        {
            "train": {"kind": "bi", "variants": ["plain", "judged", "soft"], "soft_loss": "margin_mse"},
            "retrieve": {"methods": ["bm25", "dense", "hybrid"], "stemmer": "none"},
        }
    )
    got = describe_systems(cfg, ["bm25", "hybrid", "backbone", "judged", "soft", "other"], "a judge")
    assert got == {
        "bm25": "BM25 (none stemming), top-100",
        "hybrid": "reciprocal-rank fusion of BM25 and dense (k=60)",
        "backbone": "untrained minilm (cosine of its embeddings), reranking hybrid top-20",
        "judged": "bi-encoder from minilm, loss lce, reranking hybrid top-20; groups re-bucketed by the "
        "judge's grades (judge: a judge)",
        "soft": "bi-encoder from minilm, loss margin_mse on the judge's expected grades (soft labels), "
        "reranking hybrid top-20 (judge: a judge)",
        "other": "other",
    }
    plain = describe_systems(cfg, ["plain", "judged"])
    assert plain["judged"].endswith("re-bucketed by the judge's grades")
    assert (
        plain["plain"]
        == "bi-encoder from minilm, loss lce, reranking hybrid top-20; groups of mined negatives, no judge labels"
    )
