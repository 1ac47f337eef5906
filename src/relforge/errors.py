"""One error type with fixed exit codes (2 usage, 4 missing input, 5 validation, 6 runtime)."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_MISSING = 4
EXIT_VALIDATION = 5
EXIT_RUNTIME = 6


class RelforgeError(Exception):
    """Base error: the CLI prints its message on one line and exits with ``exit_code``."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(RelforgeError):
    exit_code = EXIT_USAGE


class MissingInputError(RelforgeError):
    exit_code = EXIT_MISSING


class DataError(RelforgeError):
    """Bad input data. The message always names the file and, where there is one, the line."""

    exit_code = EXIT_VALIDATION

    def __init__(self, message: str, *, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}" + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ModelNotFoundError(MissingInputError):
    pass


#: the packages of each install extra that relforge's core runs without (pyproject.toml)
EXTRAS = {
    "local": ("torch", "transformers", "sentence_transformers", "peft", "gguf", "onnx", "onnxruntime"),
    "train": ("accelerate",),
}


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """For a package of an install extra that is not installed, the sentence that says which extra to
    install; None for any other missing module (a real bug, reported as such)."""
    root = (e.name or "").split(".")[0]
    for extra, names in EXTRAS.items():
        if root in names:
            pip = "pip install 'relforge[train]'" if extra == "train" else "pip install 'relforge[local]'"
            return (
                f"this command needs {root!r}, which is not installed: {pip} (local models; add [train] to train "
                "rerankers or fine-tune judges). Without it relforge still runs data, BM25, groups, evaluate, "
                "report and the judge over an OpenAI-compatible server (--llm openai:URL#model)."
            )
    return None
