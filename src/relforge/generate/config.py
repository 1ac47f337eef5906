"""Settings of synthetic query generation (``relforge generate``). Every CLI default lives here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SelectConfig(BaseModel):
    """Which documents get queries: all, a random sample, or a diverse sample."""

    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(None, ge=1, description="number of documents; None = all")
    diverse_by: str | None = Field(
        None,
        description="None = uniform random sample; 'embeddings' = KMeans clusters of dense embeddings; "
        "any other value = a metadata field to stratify by (e.g. source, qtype)",
    )
    n_clusters: int | None = Field(None, ge=1, description="KMeans clusters (default: min(sample, 20))")
    model: str = Field("minilm", description="embedding model for diverse_by='embeddings'")
    cache_dir: str | None = Field(None, description="embedding cache folder for diverse_by='embeddings'")
    seed: int = 0


class FilterConfig(BaseModel):
    """Quality filters; each dropped query is counted under its first failing filter."""

    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(3, ge=1)
    max_words: int = Field(32, ge=1)
    ngram: int = Field(4, ge=1, description="n-gram size of the copy check (words)")
    max_copy_overlap: float = Field(
        0.6, ge=0.0, le=1.0, description="drop if this share of the query's n-grams occur in the document"
    )
    check_style: bool = Field(True, description="drop queries not in the requested style")
    round_trip: Literal["bm25", "dense"] | None = Field(
        None, description="keep a query only if its source document ranks in the top round_trip_k"
    )
    round_trip_k: int = Field(20, ge=1)
    round_trip_model: str = Field("minilm", description="model for round_trip='dense'")

    @model_validator(mode="after")
    def _check_lengths(self) -> FilterConfig:
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) must be >= min_words ({self.min_words})")
        return self


class GenerateConfig(BaseModel):
    """Prompt, sampling and filters of synthetic query generation."""

    model_config = ConfigDict(extra="forbid")

    style: Literal["question", "keyword"] = "question"
    prompt: str | None = Field(
        None, description="built-in prompt id or a YAML path (default: inpars-<style>)"
    )
    examples: str | None = Field(
        None,
        description="few-shot examples: a YAML/JSONL file of {document, query} pairs (default: the prompt's)",
    )
    n_examples: int | None = Field(None, ge=0, description="few-shot examples used (default: the prompt's)")
    example_selection: Literal["fixed", "nearest"] = Field(
        "fixed",
        description="fixed = the same n_examples (a seeded sample of the pool) for every document; nearest = "
        "per document the n_examples pool examples whose documents are most similar to it (cosine of "
        "example_model embeddings; KATE, Liu et al. 2022): the examples then show the kind of question "
        "this kind of document answers",
    )
    max_example_words: int | None = Field(
        None,
        ge=1,
        description="cut each few-shot example's document to this many words (default: the prompt's "
        "max_doc_words, 200 for the built-in prompts); the target document is not cut further. Shorter "
        "examples make a shorter prompt: generation on CPU is prefill-bound",
    )
    example_model: str = Field("minilm", description="embedding model for example_selection='nearest'")
    domain: str | None = Field(None, description="domain instruction slot (default: the prompt's)")
    per_doc: int = Field(1, ge=1, description="queries generated per document")
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(48, ge=1)
    seed: int = 0
    grade: int = Field(3, ge=1, description="qrels grade of a query's source document (a positive)")
    id_prefix: str = Field("gen", description="query ids are <prefix>-<doc id>-<n>")
    select: SelectConfig = Field(default_factory=SelectConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
