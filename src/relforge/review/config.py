"""Settings of ``relforge review`` (the labelling web app) and ``relforge review export``: every default
lives here."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the curation strategies, in the order the start page lists them
QUEUES = ("balanced", "uncertain", "disagreement", "random", "overlap", "recheck")
Queue = Literal["balanced", "uncertain", "disagreement", "random", "overlap", "recheck"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReviewConfig(BaseModel):
    """One labelling session: where it listens, the scale, the split and the class targets.

    The targets default to the first source pipeline's curated set: 1,000 class-balanced training
    pairs and 250 validation pairs, each split evenly over the scale's grades.
    """

    model_config = ConfigDict(extra="forbid")

    #: address to bind; anything but loopback requires an access token (generated when not given)
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    #: access token for every request (None: none on loopback, a random one elsewhere)
    token: str | None = Field(None, min_length=16)
    #: judge template whose scale (labels, names, definitions) the grade buttons show
    template: str = "relevance-0to3"
    #: class-balanced targets (totals; split evenly over the grades, remainder to the lowest grades)
    train_target: int = Field(1000, ge=0)
    val_target: int = Field(250, ge=0)
    #: share of QUERIES held out as the validation split (a query and all its pairs stay on one side)
    val_fraction: float = Field(0.2, ge=0.0, le=1.0)
    #: seed of the split and of the random queue
    seed: int = 0
    #: queue a new annotator starts with (``balanced`` needs judgments; else ``random``)
    default_queue: Queue = "balanced"
    #: show the judge's distribution when a pair opens (off: no anchoring; ``h`` toggles it)
    show_judge: bool = False
    #: for a TREC run as --pairs: review each query's top k (None: all)
    top_k: int | None = Field(None, ge=1)
    #: annotator name given to labels pre-filled from --qrels
    prefill_annotator: str = "qrels"
    #: time spent on a pair is capped at this many seconds (a pause is not labelling time)
    max_seconds: float = Field(600.0, gt=0)
    #: query terms shorter than this are not highlighted in the document
    highlight_min_chars: int = Field(3, ge=1)

    @field_validator("prefill_annotator")
    @classmethod
    def _name(cls, v: str) -> str:
        from relforge.review.store import check_annotator

        return check_annotator(v)

    def needs_token(self) -> bool:
        return self.token is not None or not is_loopback(self.host)


class ExportConfig(BaseModel):
    """How ``relforge review export`` turns the label history into one grade per pair."""

    model_config = ConfigDict(extra="forbid")

    #: ``latest``: the most recent label by anyone; ``median``: the median of the annotators' current
    #: labels (the lower middle value for an even count)
    resolve: Literal["latest", "median"] = "latest"
    #: only these annotators' labels (None: everyone, including the --qrels pre-fill)
    annotators: list[str] | None = None
    #: pairs flagged by anyone are left out of the qrels unless this is on (they stay in Label Studio JSON)
    include_flagged: bool = False
