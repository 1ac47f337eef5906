"""Settings of the data stage (``relforge data ...``). Every CLI default of the stage lives here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: default seed of the MedQuAD train/dev/test split (a hash salt: changing it re-deals documents)
DEFAULT_SEED = 0
#: default train/dev/test shares of MedQuAD *documents* (XML files), not of questions
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: the formats ``relforge data convert`` reads and writes
FORMATS = ("beir", "trec", "jsonl", "csv", "tsv", "parquet", "hf")
#: the record kinds ``relforge data convert`` handles
KINDS = ("corpus", "queries", "qrels", "run")


class MedQuADConfig(BaseModel):
    """How ``relforge data medquad`` splits the questions."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(DEFAULT_SEED, description="salt of the hash that deals documents to splits")
    fractions: tuple[float, float, float] = Field(
        DEFAULT_FRACTIONS, description="train/dev/test shares of documents (sum to 1)"
    )

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {v}")
        return v
