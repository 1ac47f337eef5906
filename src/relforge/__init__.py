"""relforge: graded relevance datasets from small open LLMs, and fast rerankers trained on them."""

from relforge.errors import DataError, RelforgeError
from relforge.types import Document, Qrels, Query, Run

__version__ = "0.1.0"
__all__ = ["DataError", "Document", "Qrels", "Query", "RelforgeError", "Run", "__version__"]
