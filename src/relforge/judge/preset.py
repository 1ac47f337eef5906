"""Judge presets: a shipped labeller = feature extractors (LLM query likelihood, MiniLM cosine) + a
:class:`~relforge.judge.calibrate.CalibrationHead` fitted on human labels.

``relforge judge --preset best`` loads ``presets/best.json`` (a hidden-state probe + cosine, written by
``benchmarks/judge_probe_preset.py``, see docs/judge-probe.md; ``--preset ql`` is the previous one, query
likelihood + cosine, written by ``benchmarks/judge_preset.py``, see docs/judge-preset.md), computes the
features it names for every pair and writes judgments with the head's grade, expected grade and
probabilities.

Features (all per (query, document) pair; documents are ``title + "\\n" + text`` unless said otherwise):

- ``ql_cond``, ``ql_prior``, ``ql_pmi``: query likelihood under the preset's LLM (:mod:`relforge.judge.ql`);
- ``probe``: a ridge probe on the LLM's hidden states (:class:`~relforge.judge.probe.ProbeSpec`, the
  preset's ``probe``), RankLLaMA-style with the LLM frozen (docs/judge-probe.md);
- ``cos``: cosine of the embedder's vectors of the query and ``title + " " + text``;
- ``cos_text``: the same with the text only; ``cos_title``: with the title only (the text when no title).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from relforge.errors import UsageError
from relforge.judge.calibrate import CalibrationHead
from relforge.judge.probe import ProbeSpec
from relforge.judge.ql import QL_INSTRUCTION
from relforge.precision import PrecisionSetting
from relforge.types import doc_text

PRESET_DIR = Path(__file__).with_name("presets")
QL_FEATURES = ("ql_cond", "ql_prior", "ql_pmi")
PROBE_FEATURES = ("probe",)
#: the features that need the preset's LLM
LLM_FEATURES = QL_FEATURES + PROBE_FEATURES
COS_FEATURES = ("cos", "cos_text", "cos_title")
FEATURES = LLM_FEATURES + COS_FEATURES


class JudgePreset(BaseModel):
    """A shipped labeller: which models compute which features, and the head mapping them to grades."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    #: LLM spec for the query-likelihood features (only loaded when the head uses one)
    llm: str = "smollm2"
    #: precision of a local (``smollm2`` / ``hf:``) LLM: ``auto`` = bf16 on a CPU with AVX-512 BF16 / AMX,
    #: else fp32 (measured on the shipped preset: same labels, 1.55x faster; benchmarks/precision_preset.py)
    precision: PrecisionSetting = "fp32"
    #: sentence-transformers model for the cosine features (named model or folder)
    embedder: str = "minilm"
    ql_max_doc_tokens: int = 96
    ql_instruction: str = QL_INSTRUCTION
    #: query field read from queries.jsonl (``text``; LiveQA-Med also has ``message``)
    query_field: str = "text"
    head: CalibrationHead
    #: the hidden-state probe behind the ``probe`` feature (needed when the head uses it)
    probe: ProbeSpec | None = None
    #: the cross-validated numbers that chose this preset (docs/judge-preset.md)
    measured: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _probe_if_used(self) -> JudgePreset:
        if "probe" in self.head.features and self.probe is None:
            raise ValueError("the head uses the 'probe' feature but the preset has no 'probe' section")
        return self

    @classmethod
    def load(cls, name_or_path: str | Path) -> JudgePreset:
        """A shipped preset by name (``best``) or a preset JSON file."""
        from pydantic import ValidationError

        from relforge.errors import DataError, MissingInputError

        p = Path(name_or_path)
        if not p.suffix:
            p = PRESET_DIR / f"{name_or_path}.json"
        if not p.is_file():
            shipped = sorted(x.stem for x in PRESET_DIR.glob("*.json"))
            raise MissingInputError(f"judge preset {str(name_or_path)!r} not found (shipped: {shipped})")
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except ValidationError as e:
            why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'preset'}: {x['msg']}" for x in e.errors()[:3])
            raise DataError(f"not a judge preset: {why}", path=p) from None
        except ValueError as e:
            raise DataError(f"not a judge preset: {str(e).splitlines()[0]}", path=p) from None


def query_text(q: Any, field: str) -> str:
    if field == "text":
        return q.text
    value = (getattr(q, "metadata", None) or {}).get(field)
    return str(value) if value else q.text


def cosine_features(
    embedder: Any, queries: Sequence[str], docs: Sequence[Any], names: Sequence[str], batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Cosine features of aligned (query text, Document) pairs; each distinct text is embedded once."""
    views = {
        "cos": lambda d: f"{d.title} {d.text}".strip(),
        "cos_text": lambda d: d.text,
        "cos_title": lambda d: d.title or d.text,
    }
    texts = sorted(set(queries) | {views[n](d) for n in names for d in docs})
    vec = embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    at = {t: i for i, t in enumerate(texts)}
    qv = vec[[at[q] for q in queries]]
    return {n: np.einsum("ij,ij->i", qv, vec[[at[views[n](d)] for d in docs]]) for n in names}


def compute_features(
    names: Sequence[str],
    queries: Sequence[str],
    docs: Sequence[Any],
    *,
    llm: Any = None,
    embedder: Any = None,
    ql_max_doc_tokens: int = 96,
    ql_instruction: str = QL_INSTRUCTION,
    probe: ProbeSpec | None = None,
) -> dict[str, np.ndarray]:
    """The named features of aligned (query text, Document) pairs (see the module doc)."""
    unknown = sorted(set(names) - set(FEATURES))
    if unknown:
        raise UsageError(f"unknown judge features {unknown}; known: {list(FEATURES)}")
    out: dict[str, np.ndarray] = {}
    if any(n in QL_FEATURES for n in names):
        from relforge.judge.ql import query_likelihood

        ql = query_likelihood(
            llm,
            queries,
            [doc_text(d) for d in docs],
            max_doc_tokens=ql_max_doc_tokens,
            instruction=ql_instruction,
        )
        out.update({k: np.asarray(v) for k, v in ql.items() if k in names})
    if "probe" in names:
        if probe is None:
            raise UsageError("the 'probe' feature needs a fitted probe (a preset's 'probe' section)")
        out["probe"] = probe.score(llm, queries, [doc_text(d) for d in docs])
    cos = [n for n in names if n in COS_FEATURES]
    if cos:
        out.update(cosine_features(embedder, queries, docs, cos))
    return out


def load_embedder(spec: str) -> Any:
    from sentence_transformers import SentenceTransformer

    from relforge.models import resolve_model

    return SentenceTransformer(resolve_model(spec), device="cpu")
