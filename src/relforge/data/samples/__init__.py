"""Small BEIR datasets shipped inside the package (for the demo, tests and first experiments).

- ``medquad``: a stratified, deterministic pick of whole MedQuAD documents (a few hundred answered
  question-answer pairs from all 9 answered sources) with train/dev/test qrels (CC BY 4.0).
- ``liveqa-med``: 51 TREC 2017 LiveQA medical questions with 1,236 human graded (0..3) judgments of
  1,065 MedQuAD answers; ``qrels/test.tsv`` (CC BY 4.0).

Each folder carries a README.md with its attribution; rebuild with ``python -m relforge.data.samples.build``.
"""

from __future__ import annotations

from pathlib import Path

from relforge.errors import MissingInputError, UsageError

#: sample name -> one-line description
SAMPLES = {
    "medquad": "MedQuAD answers as documents, original questions as queries; qrels/{train,dev,test}.tsv",
    "liveqa-med": "TREC 2017 LiveQA medical questions, human graded (0..3) MedQuAD answers; qrels/test.tsv",
}

_HERE = Path(__file__).resolve().parent


def sample_path(name: str) -> Path:
    """Folder of a packaged BEIR sample (``corpus.jsonl``, ``queries.jsonl``, ``qrels/``, ``README.md``).

    Args:
        name: one of :data:`SAMPLES` (``"medquad"``, ``"liveqa-med"``).

    Returns:
        The folder inside the installed package (read it, do not write to it; copy it out with
        ``relforge data sample NAME --out DIR``).

    Raises:
        UsageError: unknown name (the message lists the available samples).
    """
    if name not in SAMPLES:
        raise UsageError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    path = _HERE / name
    if not (path / "corpus.jsonl").exists():
        raise MissingInputError(
            f"sample {name!r} is missing from the installed package ({path}); reinstall relforge or rebuild "
            "it with: python -m relforge.data.samples.build"
        )
    return path
