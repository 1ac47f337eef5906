"""relforge.review: a local web page for curating the human labels a judge is tuned on.

``relforge review`` loads pairs (with the judge's distribution and existing labels) into a SQLite
database (:mod:`relforge.review.store`), serves one keyboard-first screen per pair with curation queues
(:mod:`relforge.review.queues`) and live agreement (:mod:`relforge.review.stats`); ``relforge review
export`` writes BEIR/TREC qrels and Label Studio tasks (:mod:`relforge.review.export`). The web parts
need the ``review`` extra (``pip install 'relforge[review]'``).
"""

from relforge.review.config import ExportConfig, ReviewConfig
from relforge.review.export import export
from relforge.review.run import prepare, query_split, run, serve

__all__ = ["ExportConfig", "ReviewConfig", "export", "prepare", "query_split", "run", "serve"]
