"""What every pipeline stage shares: the system names, JSON in and out, the data sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relforge.config import PipelineConfig
from relforge.data.summary import write_json  # noqa: F401  (re-exported: the pipeline stages import it from here)
from relforge.errors import MissingInputError

#: display names of the evaluated systems (keys of eval/metrics.json runs), in table order
SYSTEMS = {
    "bm25": "BM25",
    "dense": "dense (MiniLM cosine)",
    "hybrid": "hybrid (RRF)",
    "backbone": "untrained backbone",
    "plain": "reranker, mined negatives (no judge)",
    "judged": "reranker, judge re-bucketed",
    "soft": "reranker, judge soft labels",
}
#: training variants in table order
VARIANTS = ("plain", "judged", "soft")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dump(model: Any) -> Any:
    """A config section as JSON-able data (what goes into a stage's config hash)."""
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


def resolve_data_source(source: str, key: str = "data.source") -> Path:
    """``sample:<name>`` -> the packaged sample folder; anything else a path that must exist (the error
    names the config ``key`` holding it)."""
    if source.startswith("sample:"):
        from relforge.data.samples import sample_path

        return Path(sample_path(source.split(":", 1)[1]))
    p = Path(source).expanduser()
    if not p.exists():
        raise MissingInputError(
            f"{key}: {source!r} does not exist; set {key} to "
            + (
                "sample:medquad, a MedQuAD .tar.xz / folder, or a BEIR folder"
                if key == "data.source"
                else "sample:liveqa-med or a BEIR folder with human qrels"
            )
        )
    return p.resolve()


def read_labelled(folder: Path):
    """A human-labelled BEIR folder (not written by relforge): qrels in ``qrels.tsv``, ``qrels/test.tsv``
    or ``qrels/dev.tsv``, the first that exists."""
    from relforge.data import read_corpus, read_qrels, read_queries

    for q in (folder / "qrels.tsv", folder / "qrels" / "test.tsv", folder / "qrels" / "dev.tsv"):
        if q.exists():
            return read_corpus(folder / "corpus.jsonl"), read_queries(folder / "queries.jsonl"), read_qrels(q)
    raise MissingInputError(f"{folder}: no qrels.tsv or qrels/test.tsv with human labels")


def group_variants(cfg: PipelineConfig) -> list[str]:
    """The variants whose groups are built: those trained and those of the ablation, in table order."""
    return sorted(
        set(cfg.train.variants) | set(cfg.ablation.variants if cfg.ablation.sizes else []),
        key=VARIANTS.index,
    )


def backbone_model(cfg: PipelineConfig) -> str:
    """The untrained start every variant trains from (``train.base``); reranked as the ``backbone``."""
    return cfg.train.base
