"""Dense corpus encoding on Ray Data: chunks of the corpus as a dataset, ``map_batches`` over an actor pool
whose actors each hold the sentence-transformers model (``num_gpus`` per actor on a GPU cluster).

The driver writes each chunk's embeddings as the part file the local dense cache uses
(``<cache>.parts/<start>.npy``, see :func:`relforge.retrieve.dense.encode_corpus`) as soon as it arrives,
so an interrupted run, local or Ray, continues where it stopped; parts already on disk are not sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from relforge.engine.config import EngineConfig


class _Encoder:
    """One actor: the model loaded once, one corpus chunk per call."""

    def __init__(self, model: str, max_seq_length: int | None, batch_size: int):
        from relforge.retrieve.dense import load_encoder

        self.enc = load_encoder(model, max_seq_length)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, list] = {"start": [], "rows": [], "emb": []}
        for start, texts in zip(batch["start"], batch["texts"], strict=True):
            emb = self.enc.encode(
                [str(t) for t in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            out["start"].append(int(start))
            out["rows"].append(emb.shape[0])
            out["emb"].append(emb.tobytes())
        return out


def encode_chunks_ray(
    texts: list[str],
    chunk_size: int,
    parts_dir: Path | None,
    model: str,
    *,
    engine: EngineConfig,
    batch_size: int = 64,
    max_seq_length: int | None = None,
) -> list[np.ndarray]:
    """Embeddings of ``texts`` in chunks of ``chunk_size`` (in order), encoded by Ray actors; parts saved
    in ``parts_dir`` as they finish (and read back instead of recomputed)."""
    from relforge.engine.cluster import init_ray, quiet_data_context
    from relforge.retrieve.dense import _save_npy

    starts = list(range(0, len(texts), chunk_size))
    got: dict[int, np.ndarray] = {}
    if parts_dir is not None:
        for s in starts:
            if (parts_dir / f"{s:09d}.npy").is_file():
                got[s] = np.load(parts_dir / f"{s:09d}.npy")
    todo = [s for s in starts if s not in got]
    if todo:
        ray = init_ray(engine)
        quiet_data_context(ray)
        ds = ray.data.from_items(
            [{"start": s, "texts": texts[s : s + chunk_size]} for s in todo], override_num_blocks=len(todo)
        )
        out = ds.map_batches(
            _Encoder,
            fn_constructor_kwargs={
                "model": model,
                "max_seq_length": max_seq_length,
                "batch_size": batch_size,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=engine.dense_actors),
            num_cpus=engine.dense_num_cpus,
            num_gpus=engine.dense_num_gpus or None,
        )
        for row in out.iter_rows():
            s, n = int(row["start"]), int(row["rows"])
            emb = np.frombuffer(row["emb"], dtype=np.float32).reshape(n, -1).copy()
            if parts_dir is not None:
                parts_dir.mkdir(parents=True, exist_ok=True)
                _save_npy(parts_dir / f"{s:09d}.npy", emb)
            got[s] = emb
    return [got[s] for s in starts]
