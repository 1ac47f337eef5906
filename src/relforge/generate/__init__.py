"""Synthetic query generation: documents -> few-shot LLM prompt -> filtered queries + positive qrels."""

from relforge.generate.config import FilterConfig, GenerateConfig, SelectConfig
from relforge.generate.filters import FILTERS
from relforge.generate.prompts import QueryPrompt, builtin_prompts, load_examples
from relforge.generate.queries import GenerateResult, generate_queries
from relforge.generate.select import select_documents

__all__ = [
    "FILTERS",
    "FilterConfig",
    "GenerateConfig",
    "GenerateResult",
    "QueryPrompt",
    "SelectConfig",
    "builtin_prompts",
    "generate_queries",
    "load_examples",
    "select_documents",
]
