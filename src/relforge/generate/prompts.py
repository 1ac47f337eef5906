"""Query-generation prompts as data: YAML files with Jinja strings, rendered to chats.

Few-shot examples become real chat turns (user: example document, assistant: example query), not
text inside one message: small instruction models copy the document back without them.

A prompt file has: ``id``, ``version``, ``style``, ``system`` and ``user`` (Jinja; variables
``domain``, ``document``, ``title``, ``text``, ``style``), ``examples`` (``builtin:<name>`` or a path),
``example_key`` (which key of an example holds its query), ``n_examples``, ``domain``,
``document_fields`` and ``max_doc_words``.

Examples sources: a YAML list or JSONL file of ``{document, query}`` rows (``question`` / ``keyword``
keys also work), or a BEIR folder (each query paired with its best-graded document). Rows with a
query but no document (e.g. a plain ``queries.jsonl`` of real user queries) are shown in the system
message as style examples instead of chat turns.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from relforge.errors import DataError, UsageError
from relforge.llm.base import Chat
from relforge.types import Document

_REQUIRED = ("id", "style", "system", "user")
_DOC_KEYS = ("document", "doc", "passage")
_QUERY_KEYS = ("query", "question", "keyword", "text")
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def builtin_prompts() -> list[str]:
    """Ids of the prompt files shipped in ``relforge/generate/prompts``."""
    folder = resources.files("relforge.generate") / "prompts"
    return sorted(
        p.name[:-5]
        for p in folder.iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("examples-")
    )


def _read_builtin(name: str) -> str:
    f = resources.files("relforge.generate") / "prompts" / f"{name}.yaml"
    if not f.is_file():
        raise UsageError(
            f"unknown built-in prompt file {name!r}; built-in prompts: {builtin_prompts()}, or a .yaml path"
        )
    return f.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Example:
    query: str
    document: str | None = None


def _row_query(row: dict[str, Any], key: str | None) -> str | None:
    for k in ((key,) if key else ()) + _QUERY_KEYS:
        if k and isinstance(row.get(k), str) and row[k].strip():
            return row[k].strip()
    return None


def _rows_to_examples(rows: list[tuple[int | None, Any]], key: str | None, source: str) -> list[Example]:
    out = []
    for line, row in rows:
        if not isinstance(row, dict):
            raise DataError(
                f"an example must be a mapping with a query, got {type(row).__name__}", path=source, line=line
            )
        q = _row_query(row, key)
        if q is None:
            raise DataError(
                f"example has no query (keys tried: {[key, *_QUERY_KEYS]})", path=source, line=line
            )
        doc = next((row[k] for k in _DOC_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
        out.append(Example(query=q, document=doc.strip() if doc else None))
    return out


def load_examples(source: str, key: str | None = None) -> list[Example]:
    """Load few-shot examples from ``builtin:<name>``, a YAML/JSONL file or a BEIR folder."""
    if source.startswith("builtin:"):
        rows = yaml.safe_load(_read_builtin(source[len("builtin:") :])) or []
        return _rows_to_examples([(None, r) for r in rows], key, source)
    p = Path(source)
    if not p.exists():
        raise UsageError(f"examples source {source!r} does not exist (setting: examples / --examples)")
    if p.is_dir():
        from relforge.data import read_beir

        for split in ("train", "dev", "test"):
            if (p / "qrels" / f"{split}.tsv").is_file():
                corpus, queries, qrels = read_beir(p, split)
                break
        else:
            corpus, queries, qrels = _read_flat_beir(p)
        out = []
        for qid in sorted(qrels):
            best = max(qrels[qid].items(), key=lambda kv: (kv[1], kv[0]), default=None)
            if best and best[1] > 0 and qid in queries and best[0] in corpus:
                out.append(Example(query=queries[qid].text, document=corpus[best[0]].text))
        return out
    if p.suffix in (".yaml", ".yml"):
        try:
            rows = yaml.safe_load(p.read_text(encoding="utf-8")) or []
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", path=p) from None
        if not isinstance(rows, list):
            raise DataError("examples YAML must be a list of {document, query} mappings", path=p)
        return _rows_to_examples([(None, r) for r in rows], key, str(p))
    from relforge.data import iter_jsonl

    return _rows_to_examples(list(iter_jsonl(p)), key, str(p))


def _read_flat_beir(p: Path):
    from relforge.data import read_corpus, read_qrels, read_queries

    for name in ("qrels.tsv", "qrels.txt"):
        if (p / name).is_file():
            return read_corpus(p / "corpus.jsonl"), read_queries(p / "queries.jsonl"), read_qrels(p / name)
    raise DataError(
        "a BEIR examples folder needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv or qrels.tsv", path=p
    )


def truncate_words(text: str, max_words: int | None) -> str:
    """Keep the first ``max_words`` whitespace-separated words (None = unchanged)."""
    if not max_words:
        return text
    from relforge.textcut import cut_chars

    text, cut = cut_chars(text, 2 * max_words)  # characters first (16 per word): no 50 MB split()
    words = text.split()
    if cut and len(words) <= max_words:
        return text + " ..."
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


@dataclass
class QueryPrompt:
    """A loaded generation prompt plus its examples; :meth:`build_chat` renders a document."""

    id: str
    style: str
    system: str
    user: str
    version: int = 1
    domain: str = ""
    examples: list[Example] = field(default_factory=list)
    n_examples: int = 3
    document_fields: list[str] = field(default_factory=lambda: ["title", "text"])
    max_doc_words: int | None = 200
    max_example_words: int | None = None
    seed: int = 0
    source: str = ""
    selection: str = "fixed"

    @classmethod
    def load(
        cls,
        name_or_path: str | Path | None = None,
        *,
        style: str = "question",
        examples: str | None = None,
        n_examples: int | None = None,
        domain: str | None = None,
        seed: int = 0,
        selection: str = "fixed",
        max_example_words: int | None = None,
    ) -> QueryPrompt:
        """Load a built-in prompt (``inpars-question``, ``inpars-keyword``) or a YAML file.

        Args:
            name_or_path: prompt id or ``.yaml`` path; None picks ``inpars-<style>``.
            style: ``question`` or ``keyword`` (used for the default prompt and checked against the file).
            examples: override the examples source (file or BEIR folder).
            n_examples: override how many examples become chat turns.
            domain: override the domain instruction slot.
            seed: picks which examples are used when there are more than ``n_examples``.
            selection: ``fixed`` (the same examples for every document) or ``nearest`` (the caller picks
                them per document with :meth:`nearest_examples`; every example with a document is a
                candidate).
            max_example_words: cut each example's document to this many words (None = the prompt's
                ``max_example_words``, else ``max_doc_words``); the target document keeps ``max_doc_words``.
        """
        name_or_path = str(name_or_path or f"inpars-{style}")
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or p.exists():
            if not p.is_file():
                raise UsageError(f"prompt file {p} does not exist (setting: prompt / --prompt)")
            text, source = p.read_text(encoding="utf-8"), str(p)
        else:
            text, source = _read_builtin(name_or_path), f"builtin:{name_or_path}"
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", path=source) from None
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise DataError(
                f"prompt file lacks required keys {missing} (required: {list(_REQUIRED)})", path=source
            )
        if raw["style"] != style:
            raise UsageError(
                f"prompt {raw['id']!r} is written for style {raw['style']!r} but style {style!r} was requested; "
                f"pass --style {raw['style']} or another prompt"
            )
        key = raw.get("example_key")
        ex_source = examples or raw.get("examples")
        ex = load_examples(ex_source, key) if ex_source else []
        prompt = cls(
            id=str(raw["id"]),
            version=int(raw.get("version", 1)),
            style=raw["style"],
            system=raw["system"],
            user=raw["user"],
            domain=domain if domain is not None else raw.get("domain", ""),
            examples=ex,
            n_examples=n_examples if n_examples is not None else int(raw.get("n_examples", 3)),
            document_fields=list(raw.get("document_fields", ["title", "text"])),
            max_doc_words=raw.get("max_doc_words", 200),
            max_example_words=max_example_words or raw.get("max_example_words"),
            seed=seed,
            source=source,
            selection=selection,
        )
        if selection == "nearest" and not any(e.document for e in ex):
            raise UsageError(
                f"example_selection 'nearest' needs examples with documents; {ex_source or source!r} has none "
                "(setting: examples / --examples)"
            )
        prompt._check_templates()  # fail at load time, not after the first LLM call
        return prompt

    def _check_templates(self) -> None:
        """Render ``system`` and ``user`` once with dummy values; a broken template names its file."""
        for name in ("system", "user"):
            try:
                _ENV.from_string(getattr(self, name)).render(
                    domain="d", document="x", title="t", text="x", style=self.style
                )
            except jinja2.TemplateError as e:
                raise DataError(f"prompt {name!r} does not render: {e}", path=self.source) from None

    # ---------------------------------------------------------------- rendering
    def turn_examples(self) -> list[Example]:
        """The examples used as chat turns (with a document), chosen once per seed; with ``nearest``
        selection every one of them is a candidate (:meth:`nearest_examples` picks per document)."""
        pool = [e for e in self.examples if e.document]
        if self.selection == "nearest":
            return pool
        if len(pool) > self.n_examples:
            idx = sorted(random.Random(self.seed).sample(range(len(pool)), self.n_examples))
            pool = [pool[i] for i in idx]
        return pool[: self.n_examples]

    def query_only_examples(self) -> list[str]:
        """Real queries without a document: listed in the system message as style examples."""
        return [e.query for e in self.examples if not e.document][: max(self.n_examples, 5)]

    def render_document(self, doc: Document | str, max_words: int | None = None) -> str:
        """The document's fields, cut to ``max_words`` words (default ``max_doc_words``)."""
        limit = max_words or self.max_doc_words
        if isinstance(doc, str):
            return truncate_words(doc, limit)
        parts = []
        for f in self.document_fields:
            v = doc.title if f == "title" else doc.text if f == "text" else doc.metadata.get(f, "")
            if v and str(v).strip():
                parts.append(str(v).strip())
        return truncate_words("\n".join(parts), limit)

    def _render_user(self, doc: Document | str, max_words: int | None = None) -> str:
        title = doc.title if isinstance(doc, Document) else ""
        text = doc.text if isinstance(doc, Document) else doc
        return _ENV.from_string(self.user).render(
            document=self.render_document(doc, max_words),
            title=title,
            text=text,
            domain=self.domain,
            style=self.style,
        )

    def system_message(self) -> str:
        msg = _ENV.from_string(self.system).render(
            domain=self.domain, style=self.style, document="", title="", text=""
        )
        extra = self.query_only_examples()
        if extra:
            msg += "\n\nExamples of real queries from this domain:\n" + "\n".join(f"- {q}" for q in extra)
        return msg

    def nearest_examples(
        self, docs: list[Document], encode: Callable[[list[str]], Any]
    ) -> list[list[Example]]:
        """Per document, the ``n_examples`` pool examples whose rendered documents are closest to its own
        (``encode``: texts -> normalised embeddings), most similar last (nearest the document in the chat).
        An example whose document is the document itself (cosine > 0.999) is never shown."""
        import numpy as np

        pool = self.turn_examples()
        k = min(self.n_examples, len(pool))
        if not docs or k == 0:
            return [[] for _ in docs]
        e = np.asarray(encode([self.render_document(x.document or "") for x in pool]))
        d = np.asarray(encode([self.render_document(x) for x in docs]))
        sim = d @ e.T
        sim[sim > 0.999] = -np.inf
        order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        return [[pool[j] for j in row[::-1]] for row in order]

    def build_chat(self, doc: Document | str, examples: list[Example] | None = None) -> Chat:
        """system, then (user: example document, assistant: example query) per example, then the document.

        ``examples``: this document's chat-turn examples (from :meth:`nearest_examples`); default the fixed ones.
        """
        if examples is None and self.selection == "nearest":
            raise UsageError("example_selection 'nearest': pass each document's examples (nearest_examples)")
        chat: Chat = [{"role": "system", "content": self.system_message()}]
        for ex in self.turn_examples() if examples is None else examples:
            chat.append({"role": "user", "content": self._render_user(ex.document, self.max_example_words)})
            chat.append({"role": "assistant", "content": ex.query})
        chat.append({"role": "user", "content": self._render_user(doc)})
        return chat

    @property
    def example_queries(self) -> list[str]:
        return [e.query for e in self.turn_examples()] + self.query_only_examples()

    @property
    def hash(self) -> str:
        """SHA-256 (16 hex) of everything that shapes the chat: templates, examples used, domain, doc settings."""
        blob = json.dumps(
            {
                "id": self.id,
                "version": self.version,
                "style": self.style,
                "system": self.system,
                "user": self.user,
                "domain": self.domain,
                "fields": self.document_fields,
                "max_doc_words": self.max_doc_words,
                **({"max_example_words": self.max_example_words} if self.max_example_words else {}),
                "turns": [(e.document, e.query) for e in self.turn_examples()],
                "extra": self.query_only_examples(),
                **({"selection": self.selection, "k": self.n_examples} if self.selection != "fixed" else {}),
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
