"""Secrets never shown, stored or keyed: redaction of LLM specs and URLs, and refusal of keys in configs.

Policy (docs/llm-secrets.md):

- An API key comes from the environment only: ``$RELFORGE_API_KEY`` or ``$OPENAI_API_KEY`` (or a variable
  named by ``api_key_env``). It is sent as ``Authorization: Bearer``, never logged, printed or cached.
- Credentials in a base URL are **redacted everywhere a spec is shown or stored** (judgment ``model``
  fields, summaries, the LLM cache's ``model`` column, logs, error messages) by :func:`redact_spec` /
  :func:`redact_text`, and are never part of a cache key (:func:`url_identity`).
- ``user:pass@`` in a base URL is **never sent** (httpx would silently turn it into Basic auth): it is dropped
  with a warning naming the environment variables. Secret-looking query parameters (``api_key``, ``key``,
  ``token``, ``sig``...) are still sent, because some gateways authenticate that way, but only the
  server sees them.
- A key written in a config (``llm.options.api_key``, ``LLMConfig``...) is refused at validation, before
  anything is written, by :func:`check_no_secrets`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from relforge.errors import EXIT_VALIDATION, RelforgeError

REDACTED = "***"
KEY_ENVS = ("RELFORGE_API_KEY", "OPENAI_API_KEY")

#: query parameter / option names that are secret whatever their value (compared lower-case, ``-`` = ``_``)
SECRET_NAMES = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "auth",
        "authorization",
        "bearer",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "code",
        "session",
        "credential",
        "credentials",
    }
)
#: words that make a compound name secret (``x_amz_security_token``, ``openai_api_key``, ``hf_token``)
SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "credential",
        "credentials",
        "authorization",
        "bearer",
    }
)
#: names that look secret but hold none (``*_env`` names the variable that holds one)
NOT_SECRET = frozenset({"max_tokens", "max_new_tokens", "top_logprobs"})

_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class SecretInConfigError(RelforgeError, ValueError):
    """A secret was written in a config or option; exit code 5 (validation). Also a ``ValueError``, so
    pydantic validators can raise it."""

    exit_code = EXIT_VALIDATION


def is_secret_name(name: str) -> bool:
    """True for names like ``api_key``, ``key``, ``token``, ``sig``, ``X-Amz-Security-Token``, ``hf_token``;
    False for ``api_key_env`` (a variable's name), ``max_tokens``, ``tokenizer``."""
    n = str(name).strip().lower().replace("-", "_")
    if n in NOT_SECRET or n.endswith("_env"):
        return False
    return n in SECRET_NAMES or any(w in SECRET_WORDS for w in n.split("_"))


def _netloc_without_userinfo(netloc: str) -> str:
    return netloc.rsplit("@", 1)[-1]


def redact_url(url: str) -> str:
    """``http://user:pass@host/v1?api_key=x&v=2`` -> ``http://***@host/v1?api_key=***&v=2``.

    Only URLs with credentials change; the rest of the URL is kept byte for byte where possible.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{_netloc_without_userinfo(netloc)}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = "&".join(
                f"{k}={REDACTED}" if is_secret_name(k) else urlencode([(k, v)]) for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: Any) -> str:
    """Every URL inside ``text`` redacted with :func:`redact_url` (error messages, log lines)."""
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), str(text))


def redact_spec(spec: str) -> str:
    """An LLM spec as it may be shown or stored: ``openai:http://u:p@h/v1?key=k#m`` ->
    ``openai:http://***@h/v1?key=***#m``. Specs without URLs come back unchanged."""
    if not isinstance(spec, str):
        return spec
    scheme, sep, rest = spec.partition(":")
    if sep and scheme.lower() == "openai":
        url, hash_, model = rest.rpartition("#")
        if hash_:
            return f"{scheme}:{redact_url(url)}#{model}"
        return f"{scheme}:{redact_url(rest)}"
    return redact_text(spec)


def redact_obj(obj: Any) -> Any:
    """A copy of a nested dict/list structure with every string passed through :func:`redact_spec`
    (what a run writes as ``config.yaml`` / ``manifest.json``)."""
    if isinstance(obj, str):
        return redact_spec(obj)
    if isinstance(obj, Mapping):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def has_userinfo(url: str) -> bool:
    """True when the URL carries ``user[:pass]@``."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def strip_userinfo(url: str) -> str:
    """The URL without ``user:pass@`` (what is actually requested)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=_netloc_without_userinfo(parts.netloc)))


def url_identity(url: str) -> str:
    """The URL without userinfo and without secret query parameters: what cache keys and names use, so
    rotating a key never invalidates a cache and no key ends up in one."""
    parts = urlsplit(strip_userinfo(url))
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_name(k)]
    return urlunsplit(parts._replace(query=urlencode(pairs)))


def secret_values(url: str) -> list[str]:
    """The secret strings inside a URL (user, password, values of secret query parameters), to scrub
    from any text a server sends back (servers echo URLs in their errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [unquote(x) for x in userinfo.split(":", 1)]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k)]
    return sorted({v for v in found if len(v) >= 3}, key=len, reverse=True)


def scrub(text: Any, values: list[str]) -> str:
    """:func:`redact_text`, then every one of ``values`` replaced by ``***``."""
    out = redact_text(text)
    for v in values:
        out = out.replace(v, REDACTED)
    return out


def find_secrets(options: Any, where: str = "") -> list[str]:
    """Dotted paths of secret-looking keys (non-empty values) in a nested mapping / list of options."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for k, v in options.items():
            path = f"{where}.{k}" if where else str(k)
            if is_secret_name(k) and v not in (None, "", False):
                found.append(path)
            else:
                found.extend(find_secrets(v, path))
    elif isinstance(options, (list, tuple)):
        for i, v in enumerate(options):
            found.extend(find_secrets(v, f"{where}[{i}]"))
    return found


def check_no_secrets(options: Any, where: str = "llm.options") -> None:
    """Refuse secrets written in a config, before anything is written.

    Args:
        options: the mapping to check (``llm.options``, an ``LLMConfig`` dump, a whole config).
        where: the dotted name of ``options`` in the config, used in the message.

    Raises:
        SecretInConfigError: naming every offending key and the environment variable to use instead.
    """
    bad = find_secrets(options, where)
    if bad:
        raise SecretInConfigError(
            f"{', '.join(bad)}: keys and tokens are not accepted in configs or options (they would be copied "
            f"into the run's config.yaml and manifest.json). Remove {'it' if len(bad) == 1 else 'them'} and put "
            f"the key in the environment variable {' or '.join(KEY_ENVS)} (or name another variable with "
            f"api_key_env)."
        )
