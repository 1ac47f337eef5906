"""Settings of the data stage (``relforge data ...``, the pipeline's stage import). Every default of the stage
lives here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class ImportConfig(BaseModel):
    """Where the documents and the held-out human questions come from (the pipeline's ``data:`` section).

    ``source``: ``sample:medquad`` (bundled sample), a MedQuAD ``.tar.xz`` / XML folder (imported), or a
    BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
    """

    model_config = ConfigDict(extra="forbid")

    source: str = "sample:medquad"
    #: cap the corpus (None: all); the evaluation questions' answers are always kept
    max_docs: int | None = Field(None, ge=1)
    #: split(s) of the human questions used for evaluation (comma-separated, e.g. ``dev,test``) and how
    #: many of them (None: all). No human question is ever used for training: only synthetic queries are.
    test_split: str = "test"
    test_queries: int | None = Field(100, ge=1)
    #: use the source's human questions of this split (e.g. ``train``) as the training queries instead of
    #: generating them (no LLM): the "what would real queries buy" stand-in. Never an evaluation split.
    train_split: str | None = None
    #: how many of those questions (None: all), sampled with ``seed``
    train_queries: int | None = Field(None, ge=1)
    #: human questions of this split (e.g. ``dev``) choose each trained model's checkpoint, the untrained
    #: start included (``train.keep_start``); never trained on, never evaluated on. None: no selection
    dev_split: str | None = None
    #: how many of those questions (None: all), sampled with ``seed``
    dev_queries: int | None = Field(None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _train_not_test(self) -> ImportConfig:
        test = {x.strip() for x in self.test_split.split(",") if x.strip()}
        if self.train_split is not None and self.train_split.strip() in test:
            raise ValueError(
                f"train_split {self.train_split!r} is also an evaluation split (test_split "
                f"{self.test_split!r}); pick another split"
            )
        if self.dev_split is not None:
            dev = {x.strip() for x in self.dev_split.split(",") if x.strip()}
            clash = dev & (test | {(self.train_split or "").strip()})
            if clash:
                raise ValueError(
                    f"dev_split {self.dev_split!r} is also a test or train split ({', '.join(sorted(clash))}); "
                    f"model selection needs questions of its own"
                )
        return self
