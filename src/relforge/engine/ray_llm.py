"""An LLM (``generate`` / ``score_choices``) whose calls run on Ray Data over OpenAI-compatible endpoints.

:class:`RayLLM` has the interface of relforge's LLMs, so the judge (:func:`relforge.judge.judge_pairs`)
and query generation call it exactly as they call a local backend: prompts come from the same template
code, and the request bodies and the parsing of the responses are the OpenAI backend's own
(:meth:`~relforge.llm.openai_compat.OpenAIBackend.score_payloads` /
:meth:`~relforge.llm.openai_compat.OpenAIBackend.parse_score`, ``generate_payload`` /
``parse_completion``), so ``probs`` mode reads the grade log-probs the same exact way.

One call = one Ray Data job: the missing calls become a dataset (one row per request), the LLM step is
``ray.data.llm.build_processor(HttpRequestProcessorConfig(...))`` whose ``session_factory`` routes the
requests over every endpoint (:mod:`relforge.engine.router`), and the driver writes each finished call to a
shard (:mod:`relforge.engine.shards`) keyed by the LLM cache's content hash
(:func:`relforge.llm.cache.call_key` of backend identity, call kind, exact chat and parameters). A rerun
after a kill recomputes nothing that finished.

The backend identity is ``openai:pool#<model>`` (plus ``|score=<method>`` for exact scoring): every
endpoint must serve the same model, and a shard stays valid when endpoints are added, removed or moved.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from relforge.engine.config import EngineConfig
from relforge.engine.router import PLACEHOLDER, RouterFactory
from relforge.engine.shards import ShardStore
from relforge.errors import RelforgeError, UsageError
from relforge.llm._util import check_chat, check_choices
from relforge.llm.base import CacheStats, Chat, Completion, GenParams
from relforge.llm.cache import call_key
from relforge.progress import progress, warn

#: prompt log-prob entries kept per response (a grade label is a few tokens at the end of the prompt)
KEEP_PROMPT_LOGPROBS = 64


def _pre(row: dict) -> dict:
    return {"key": row["key"], "part": row["part"], "n": row["n"], "payload": json.loads(row["payload_json"])}


def _slim(resp: Any) -> Any:
    """The response without what no parser reads: only the last prompt log-probs (None entries, which
    Arrow adds when it merges rows with different token-id keys, dropped again)."""
    if not isinstance(resp, dict):
        return resp
    plp, ids = resp.get("prompt_logprobs"), resp.get("prompt_token_ids")
    if isinstance(plp, list):
        same = isinstance(ids, list) and len(ids) == len(plp)
        tail = [{k: v for k, v in (e or {}).items() if v is not None} for e in plp[-KEEP_PROMPT_LOGPROBS:]]
        resp = {**resp, "prompt_logprobs": [None, *tail]}
        if same:
            resp["prompt_token_ids"] = [ids[0], *list(ids)[-KEEP_PROMPT_LOGPROBS:]]
    return resp


def _post(row: dict) -> dict:
    resp = row.get("http_response")
    return {
        "key": row["key"],
        "part": row["part"],
        "n": row["n"],
        "response": json.dumps(_slim(resp), default=_np),
    }


def _np(o: Any) -> Any:
    return o.tolist() if hasattr(o, "tolist") else str(o)


class RayLLM:
    """relforge LLM interface over Ray Data + several OpenAI-compatible endpoints (module docstring).

    Args:
        backends: one :class:`~relforge.llm.openai_compat.OpenAIBackend` per endpoint (same model).
        engine: the engine settings (cluster address, actors, batch size, retries).
        workdir: the shard folder (locked for the lifetime of this object; :meth:`close` releases it).
        memo: where the scoring method probed on the first endpoint is remembered (the LLM cache).
        progress: plain progress lines / a bar while a job runs.
    """

    def __init__(
        self,
        backends: list[Any],
        engine: EngineConfig,
        workdir: str | Path,
        *,
        memo: Any = None,
        progress: bool = True,
    ):
        if not backends:
            raise UsageError("--engine ray needs at least one --llm openai:URL#MODEL endpoint")
        models = {b.model for b in backends}
        if len(models) != 1:
            raise UsageError(f"all endpoints of one run must serve the same model, got {sorted(models)}")
        self.backends = backends
        self.primary = backends[0]
        self.engine = engine
        self.memo = memo
        self.progress = progress
        self.model = self.primary.model
        urls = ",".join(b.display_url for b in backends)
        self.name = self.primary.name if len(backends) == 1 else f"openai:{urls}#{self.model}"
        self.cache_id = f"openai:pool#{self.model}"
        self.one_job = True  # callers should hand over all their chats at once (one Ray Data job)
        self.store = ShardStore(workdir).__enter__()
        self._volatile: dict[str, Any] = {}  # results never stored (unscorable items), this run only
        self.stats = CacheStats(
            extra={
                "engine": "ray",
                "endpoints": len(backends),
                "workdir": str(self.store.dir),
                "resumed_from_shards": len(self.store.done),
                "torn_lines": self.store.torn,
                "ray_jobs": 0,
                "ray_seconds": 0.0,
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            **self.primary.describe(),
            "engine": "ray",
            "endpoints": [b.display_url for b in self.backends],
        }

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ LLM interface
    def score_choices(self, chats: list[Chat], choices: list[str]) -> list[dict[str, float]]:
        """Probabilities over ``choices`` per chat (the OpenAI backend's method and parsing)."""
        choices = check_choices(choices)
        for c in chats:
            check_chat(c)
        method = self.primary.resolve_score_method(choices, self.memo)
        backend_id = self.cache_id if method == "top_logprobs" else f"{self.cache_id}|score={method}"
        keys = [call_key(backend_id, "score", c, list(choices)) for c in chats]
        self._compute(
            keys,
            chats,
            lambda chat: self.primary.score_payloads(chat, choices),
            lambda datas: self.primary.parse_score(datas, choices),
            usable=bool,
        )
        return [self._result(k) for k in keys]

    def generate(self, chats: list[Chat], params: GenParams | None = None) -> list[Completion]:
        """One completion per chat; completions read back from the shards come with ``cached=True``."""
        params = params or GenParams()
        for c in chats:
            check_chat(c)
        keys = [call_key(self.cache_id, "generate", c, params.key()) for c in chats]
        fresh = set(
            self._compute(
                keys,
                chats,
                lambda chat: [self.primary.generate_payload(chat, params)],
                lambda datas: asdict(self.primary.parse_completion(datas[0])),
                usable=lambda r: r.get("finish_reason") != "error",
            )
        )
        out = []
        for k in keys:
            c = Completion(**{**self._result(k), "cached": False})
            c.cached = k not in fresh
            out.append(c)
        return out

    # ------------------------------------------------------------------ the Ray job
    def _result(self, key: str) -> Any:
        if key in self._volatile:
            return self._volatile[key]
        return self.store.done[key]["result"]

    def _compute(self, keys, chats, payloads, decode, usable) -> list[str]:
        """Run the calls whose key is not in the shards; returns the keys computed now."""
        todo: dict[str, list[dict]] = {}
        for k, chat in zip(keys, chats, strict=True):
            if k in self.store.done or k in todo:
                continue
            todo[k] = payloads(chat)
        self.stats.hits += sum(1 for k in dict.fromkeys(keys) if k not in todo)
        if not todo:
            return []
        self._run(todo, decode, usable)
        self.stats.misses += len(todo)
        return list(todo)

    def _processor(self, ray: Any) -> Any:
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        e = self.engine
        key = self.primary._api_key()
        cfg = HttpRequestProcessorConfig(
            url=PLACEHOLDER + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"} if key else None,
            max_retries=e.max_retries,
            base_retry_wait_time_in_s=e.retry_wait,
            session_factory=RouterFactory([b.base_url for b in self.backends], e.timeout, e.down_seconds),
            batch_size=e.batch_size,
            concurrency=(e.concurrency, e.concurrency),  # a fixed pool: an int autoscales from 1 actor
            http_request_stage={"num_cpus": e.num_cpus_per_actor},
        )
        small = {"num_cpus": min(0.1, e.num_cpus_per_actor)}
        return build_processor(
            cfg, preprocess=_pre, postprocess=_post, preprocess_map_kwargs=small, postprocess_map_kwargs=small
        )

    def _run(self, todo: dict[str, list[dict]], decode, usable) -> None:
        from relforge.engine.cluster import init_ray, quiet_data_context

        ray = init_ray(self.engine)
        quiet_data_context(ray)
        rows = [
            {"key": k, "part": j, "n": len(ps), "payload_json": json.dumps(p, ensure_ascii=False)}
            for k, ps in todo.items()
            for j, p in enumerate(ps)
        ]
        blocks = max(1, math.ceil(len(rows) / self.engine.batch_size))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        partial: dict[str, dict[int, dict]] = {}
        done = 0
        t0 = t_first = time.perf_counter()
        try:
            with progress(len(todo), "ray", enabled=self.progress) as advance:
                for row in self._processor(ray)(ds).iter_rows():
                    parts = partial.setdefault(row["key"], {})
                    parts[int(row["part"])] = json.loads(row["response"])
                    if len(parts) < int(row["n"]):
                        continue
                    datas = [parts[j] for j in range(len(parts))]
                    del partial[row["key"]]
                    self._finish(row["key"], datas, decode, usable)
                    done += 1
                    if done == 1:
                        t_first = time.perf_counter()
                    advance()
        except (KeyboardInterrupt, RelforgeError):
            raise
        except Exception as e:  # a Ray task failed for good: what finished is saved
            raise RelforgeError(
                f"the Ray job stopped after {done} of {len(todo)} calls ({len(self.store.done)} in all are saved "
                f"in {self.store.dir}); rerun the same command to continue. Cause: {type(e).__name__}: "
                f"{str(e)[-600:]}"
            ) from e
        finally:
            self.store.sync()
            self._record(t0, t_first, done)

    def _record(self, t0: float, t_first: float, done: int) -> None:
        """Job timing in ``stats.extra``: start-up (until the first result) and the rate after it."""
        end = time.perf_counter()
        x = self.stats.extra
        x["ray_jobs"] += 1
        x["ray_seconds"] = round(x["ray_seconds"] + end - t0, 3)
        steady = (done - 1) / (end - t_first) if done > 1 and end > t_first else None
        x["last_job"] = {
            "calls": done,
            "first_result_s": round(t_first - t0, 3),
            "steady_calls_per_s": round(steady, 3) if steady else None,
        }

    def _finish(self, key: str, datas: list[dict], decode, usable) -> None:
        result = decode(datas)
        usage = (datas[0].get("usage") if isinstance(datas[0], dict) else None) or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        if usable(result):
            self.store.add({"key": key, "result": result, "prompt_tokens": pt, "completion_tokens": ct})
        else:
            self._volatile[key] = result
            warn(f"{self.name}: one call gave an unusable result (not saved; a rerun retries it)")


def open_ray_llm(
    specs: list[str],
    engine: EngineConfig,
    workdir: str | Path,
    *,
    cache: Any = None,
    progress: bool = True,
    **backend_kw: Any,
) -> RayLLM:
    """A :class:`RayLLM` over the ``openai:URL#MODEL`` specs (``--llm`` repeated plus ``engine.endpoints``).

    ``cache`` is the LLM cache option of the CLI (None: the default file, False: none, or a path); it only
    remembers which scoring method the server supports, so a rerun sends no probe.
    """
    from relforge.llm import DEFAULT, LLMCache, default_cache_path, parse_spec
    from relforge.llm.cache import _Memo
    from relforge.llm.openai_compat import OpenAIBackend

    specs = list(dict.fromkeys([*specs, *engine.endpoints]))
    backends = []
    for spec in specs:
        scheme, rest = parse_spec(spec)
        base, sep, model = rest.rpartition("#")
        if scheme != "openai" or not sep:
            raise UsageError(
                f"--engine ray sends requests to OpenAI-compatible endpoints; {spec!r} is not openai:URL#MODEL. "
                f"Serve the model (`relforge llm serve --llm {rest or spec}` or vLLM) and pass --llm openai:URL#MODEL"
            )
        backends.append(OpenAIBackend(base, model, progress=False, **backend_kw))
    memo = None
    if cache is not False:
        path = default_cache_path() if cache is None or cache is DEFAULT else cache
        memo = _Memo(LLMCache(path))
    return RayLLM(backends, engine, workdir, memo=memo, progress=progress)
