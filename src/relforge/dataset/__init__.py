"""relforge.dataset: judged candidates -> hard-negative buckets -> LCE training groups."""

from relforge.dataset.config import BUCKETS, GroupConfig
from relforge.dataset.groups import (
    bucket_query,
    build_groups,
    doc_text,
    group_rows,
    judgment_grades,
    load_groups,
    sample_negatives,
    write_groups,
)

__all__ = [
    "BUCKETS",
    "GroupConfig",
    "bucket_query",
    "build_groups",
    "doc_text",
    "group_rows",
    "judgment_grades",
    "load_groups",
    "sample_negatives",
    "write_groups",
]
