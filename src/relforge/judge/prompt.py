"""The judge's structured prompt: one versioned template file, rendered to a chat.

One source of truth for judging *and* judge fine-tuning: :meth:`JudgeTemplate.build_chat` is what
both use, so a tuned adapter is judged exactly as it was trained.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from relforge.errors import DataError, UsageError
from relforge.llm.base import Chat
from relforge.types import Document, Query

DEFAULT_TEMPLATE = "relevance-0to3"
_REQUIRED = ("id", "role", "guidelines", "scale", "output_format", "user")


@functools.lru_cache(maxsize=32)
def _compile_user(source: str) -> jinja2.Template:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False).from_string(
        source
    )


def builtin_templates() -> list[str]:
    """Ids of the templates shipped in ``relforge/judge/templates`` (pass one to :meth:`JudgeTemplate.load`)."""
    folder = resources.files("relforge.judge") / "templates"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


_ACRONYMS = {"url": "URL", "id": "ID", "doi": "DOI", "pmid": "PMID"}


def _display_name(field_name: str) -> str:
    """``title`` -> ``Title``, ``url`` -> ``URL``, ``focus_area`` -> ``Focus area``."""
    if field_name.lower() in _ACRONYMS:
        return _ACRONYMS[field_name.lower()]
    return field_name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Grade:
    label: str  # the exact string the model outputs, e.g. "2"
    name: str
    definition: str
    value: int  # numeric grade


@dataclass
class JudgeTemplate:
    id: str
    version: int
    role: str
    guidelines: str
    scale: list[Grade]
    output_format: str
    user: str
    document_fields: list[str] = field(default_factory=lambda: ["title", "text"])
    max_doc_tokens: int | None = 384
    truncation_marker: str = " [... truncated]"
    reasoning: bool = False
    reasoning_format: str = ""
    few_shot: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name_or_path: str | Path | None = None, **overrides: Any) -> JudgeTemplate:
        """Load a built-in template by id, or a YAML file; ``overrides`` replace top-level keys."""
        name_or_path = name_or_path or DEFAULT_TEMPLATE
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or p.exists():
            if not p.exists():
                raise UsageError(f"judge template {p} does not exist")
            text, source = p.read_text(encoding="utf-8"), str(p)
        else:
            f = resources.files("relforge.judge") / "templates" / f"{name_or_path}.yaml"
            if not f.is_file():
                raise UsageError(
                    f"unknown judge template {name_or_path!r}; built-in: {builtin_templates()}, or a .yaml path"
                )
            text, source = f.read_text(encoding="utf-8"), f"builtin:{name_or_path}"
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise DataError(f"invalid YAML: {e}", path=source) from None
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=source)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "") -> JudgeTemplate:
        """Build and validate a template from a parsed YAML mapping (``source`` names it in errors)."""
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise DataError(f"judge template misses keys {missing}", path=source or None)
        scale = []
        for i, s in enumerate(raw["scale"]):
            if "label" not in s:
                raise DataError(f"scale entry {i} has no 'label'", path=source or None)
            scale.append(
                Grade(
                    label=str(s["label"]),
                    name=str(s.get("name", s["label"])),
                    definition=str(s.get("definition", "")),
                    value=int(s.get("value", i)),
                )
            )
        if len({g.label for g in scale}) != len(scale) or len(scale) < 2:
            raise DataError("scale needs at least two grades with distinct labels", path=source or None)
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DataError(f"unknown template keys {unknown}; known: {sorted(known)}", path=source or None)
        kw = {k: v for k, v in raw.items() if k in known and k != "scale"}
        kw.setdefault("version", 1)
        tpl = cls(scale=scale, source=source, **kw)
        try:
            jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(tpl.user)
        except jinja2.TemplateSyntaxError as e:
            raise DataError(f"template 'user' does not parse: {e}", path=source or None) from None
        return tpl

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        """Everything that shapes the prompt, as plain data (what :attr:`hash` hashes)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("scale", "source")}
        d["scale"] = [g.__dict__ for g in self.scale]
        return d

    @property
    def hash(self) -> str:
        """Short hash of everything that changes the rendered prompt (recorded on every judgment)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def labels(self) -> list[str]:
        """The choice strings, in grade order (what ``score_choices`` scores)."""
        return [g.label for g in self.scale]

    @property
    def values(self) -> list[int]:
        """The numeric grade of each label, in scale order."""
        return [g.value for g in self.scale]

    def label_of(self, value: int) -> str:
        """The label string of a grade value (``ValueError`` if it is not on the scale)."""
        for g in self.scale:
            if g.value == value:
                return g.label
        raise ValueError(f"grade {value} is not on the scale {self.values}")

    # ------------------------------------------------------------------ rendering
    def truncate(self, text: str, tokenizer: Any = None, max_tokens: int | None = None) -> str:
        """Cut ``text`` to ``max_tokens`` (model tokens with ``tokenizer``; else ~0.75 words a token)."""
        budget = self.max_doc_tokens if max_tokens is None else max_tokens
        if not budget or budget <= 0:
            return text
        from relforge.textcut import cut_chars

        full = text
        text, cut = cut_chars(text, budget)  # characters first: never tokenise a 50 MB document whole
        if tokenizer is not None:
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) <= budget:
                return text + self.truncation_marker if cut else full
            return tokenizer.decode(ids[:budget]).rstrip() + self.truncation_marker
        words = text.split()
        max_words = max(1, int(budget * 0.75))
        if len(words) <= max_words:
            return text + self.truncation_marker if cut else full
        return " ".join(words[:max_words]) + self.truncation_marker

    def _fields(self, doc: Document, tokenizer: Any, max_doc_tokens: int | None) -> list[tuple[str, str]]:
        out = []
        for name in self.document_fields:
            if name == "title":
                value = doc.title
            elif name == "text":
                value = self.truncate(doc.text, tokenizer, max_doc_tokens)
            else:
                value = doc.metadata.get(name)
            if value is None or str(value).strip() == "":
                continue
            out.append((_display_name(name), str(value).strip()))
        return out

    def render_user(
        self, query: Query, doc: Document, tokenizer: Any = None, max_doc_tokens: int | None = None
    ) -> str:
        """The user message for one pair (guidelines, scale, query, document fields, output format)."""
        labels = self.labels
        label_str = ", ".join(labels[:-1]) + " or " + labels[-1]
        output = self.reasoning_format if self.reasoning else self.output_format
        return (
            _compile_user(self.user)
            .render(
                guidelines=self.guidelines.strip(),
                scale=self.scale,
                query=query.text.strip(),
                intent=query.metadata.get("intent") or query.metadata.get("qtype") or "",
                fields=self._fields(doc, tokenizer, max_doc_tokens),
                output=output.format(labels=label_str).strip(),
            )
            .strip()
        )

    def build_chat(
        self, query: Query, doc: Document, tokenizer: Any = None, max_doc_tokens: int | None = None
    ) -> Chat:
        """The full chat for one pair: system role, few-shot turns, then the pair to judge."""
        chat: Chat = [{"role": "system", "content": self.role.strip()}]
        for ex in self.few_shot:
            q = Query(id="fewshot", text=str(ex["query"]))
            d = Document(id="fewshot", title=str(ex.get("title", "")), text=str(ex.get("text", "")))
            chat.append({"role": "user", "content": self.render_user(q, d, tokenizer, max_doc_tokens)})
            answer = (
                str(ex.get("reasoning", "")).strip() + "\nGrade: "
                if self.reasoning and ex.get("reasoning")
                else ""
            )
            chat.append({"role": "assistant", "content": answer + self.label_of(int(ex["grade"]))})
        chat.append({"role": "user", "content": self.render_user(query, doc, tokenizer, max_doc_tokens)})
        return chat
