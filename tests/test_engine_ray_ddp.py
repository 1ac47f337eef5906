"""`relforge train` data-parallel: `torchrun --nproc-per-node 2` of the real CLI on CPU (gloo backend).

The trainers are HF `Trainer`s, so torchrun / `accelerate launch` make them DDP with no relforge flag:
each rank reads its share of every global batch, gradients are all-reduced, rank 0 writes the model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from relforge.types import Document, Query

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _groups(folder: Path) -> Path:
    from relforge.dataset import GroupConfig, build_groups
    from relforge.dataset.groups import write_groups

    corpus, queries, qrels = {}, {}, {}
    for t in ["gout", "asthma", "anemia", "glaucoma", "psoriasis", "measles", "rickets", "scurvy"]:
        corpus[t] = Document(t, f"{t} is caused by many things.", title=t.title())
        queries[f"q-{t}"] = Query(f"q-{t}", f"causes of {t}?")
        qrels[f"q-{t}"] = {t: 1}
    run = {q: {d: 1.0 for d in corpus} for q in queries}
    ds, summary = build_groups(
        queries, qrels, run, corpus, None, GroupConfig(group_size=4, sampling="random")
    )
    return write_groups(ds, summary, folder)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ~45 s on 2 busy cores (two processes each importing torch + sentence-transformers)
def test_torchrun_two_cpu_processes_train_one_model(tmp_path):
    groups = _groups(tmp_path / "groups")
    out = tmp_path / "model"
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_port()),
    ]
    cmd += ["-m", "relforge.cli", "train", "--groups", str(groups), "--out", str(out), "--base", "minilm"]
    cmd += ["--max-steps", "2", "--max-length", "24", "--batch-groups", "2", "--lr", "1e-4"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(out), device="cpu")
    scores = model.predict([("causes of gout?", "gout is caused by many things."), ("x", "y")])
    assert len(scores) == 2 and all(s == s for s in scores)  # loads and scores (finite)
    assert not (out / ".checkpoints").exists()
