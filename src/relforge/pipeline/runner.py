"""The stage runner: an artifacts folder, a manifest, skip-if-unchanged and resume.

A :class:`Stage` declares the files it reads and writes (paths relative to the artifacts folder, or
absolute for external inputs), the part of the configuration it depends on, and a function doing the
work. :func:`run_stages` runs them in order and keeps ``manifest.json`` up to date after every stage:

- a stage is **skipped** when its record says ``done``, its configuration hash is unchanged, every
  input still has the recorded hash and every output exists with the recorded hash;
- a stage that crashed, was interrupted (Ctrl-C) or killed has no ``done`` record, so the next run
  starts it again; its LLM calls are answered by the SQLite cache, so finished calls are not recomputed;
- ``from_stage`` forces that stage and every later one to run; ``only`` runs just one stage (its inputs
  must exist); ``to_stage`` stops after that stage; :func:`plan` answers "what would run and why" without running anything (``--dry-run``).

Stage outputs are written atomically by the stages (temp file + rename); the manifest itself too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relforge.artifacts import MANIFEST, MANIFEST_VERSION, Manifest
from relforge.errors import MissingInputError, UsageError

LLM_CACHE = "llm-cache.sqlite"


# --------------------------------------------------------------------------- hashing


def _hash_file(path: Path, h: Any | None = None) -> str:
    own = h is None
    h = h or hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() if own else ""


#: sub-folders of a hashed folder that hold derived caches, not content: the ONNX export that
#: ``relforge.train.rerank`` caches beside a model the first time it reranks with it
HASH_IGNORE_DIRS = frozenset({"onnx"})


def hash_path(path: str | os.PathLike) -> str | None:
    """Content hash of a file, or of a folder (relative names + contents, sorted); None if missing.

    Hidden temp files (``.name.tmp``) left by an interrupted atomic write, and derived caches
    (:data:`HASH_IGNORE_DIRS`), are ignored.
    """
    p = Path(path)
    if p.is_file():
        return "f:" + _hash_file(p)
    if p.is_dir():
        h = hashlib.blake2b(digest_size=16)
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            if (f.name.endswith(".tmp") and f.name.startswith(".")) or f.relative_to(p).parts[
                0
            ] in HASH_IGNORE_DIRS:
                continue
            h.update(rel.encode() + b"\0")
            _hash_file(f, h)
            h.update(b"\0")
        return "d:" + h.hexdigest()
    return None


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able configuration (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


# --------------------------------------------------------------------------- stages


@dataclass
class Stage:
    """One step of the pipeline.

    Args:
        name: stage id (used by ``--from`` / ``--only`` and in the manifest).
        run: ``run(ctx) -> dict | None``; the dict (counts, metrics, ...) is stored in the manifest.
        inputs: ``inputs(cfg) -> list[str]`` files/folders read (relative to the artifacts folder, or absolute).
        outputs: ``outputs(cfg) -> list[str]`` files/folders written (relative to the artifacts folder).
        config: ``config(cfg) -> JSON-able`` the settings the stage depends on (hashed).
        enabled: ``enabled(cfg) -> bool``; disabled stages are neither run nor required.
        description: one line shown in the plan.
        version: bump when the stage's code changes what it writes (invalidates old records).
    """

    name: str
    run: Callable[[StageContext], dict[str, Any] | None]
    inputs: Callable[[Any], list[str]] = lambda cfg: []
    outputs: Callable[[Any], list[str]] = lambda cfg: []
    config: Callable[[Any], Any] = lambda cfg: None
    enabled: Callable[[Any], bool] = lambda cfg: True
    description: str = ""
    version: str = "1"

    def config_hash(self, cfg: Any) -> str:
        return config_hash({"stage": self.name, "version": self.version, "config": self.config(cfg)})


@dataclass
class StageContext:
    """What a stage function gets: the config, the artifacts folder and shared services."""

    cfg: Any
    out_dir: Path
    stage: str
    runner: Runner
    counts: dict[str, Any] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        """Absolute path of an artifact (parent folders created)."""
        p = self.out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def llm(self, spec: str, *, adapter: str | None = None, **kw: Any) -> Any:
        """Load an LLM once per pipeline run, with the artifacts folder's SQLite cache."""
        return self.runner.llm(spec, adapter=adapter, **kw)

    def set_manifest(self, key: str, value: Any) -> None:
        """Record a top-level manifest key (e.g. ``reranker_model``)."""
        self.runner.manifest[key] = value

    def log(self, msg: str) -> None:
        self.runner.log(f"[{self.stage}] {msg}")


@dataclass
class PlanItem:
    stage: str
    action: str  # "run" | "skip" | "disabled" | "not selected"
    reason: str


# --------------------------------------------------------------------------- manifest


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """``manifest.json`` of a run folder, read through :class:`~relforge.artifacts.Manifest` (a fresh one
    when there is none), as the plain data the runner updates."""
    from pydantic import ValidationError

    p = Path(out_dir) / MANIFEST
    if not p.exists():
        return {"version": MANIFEST_VERSION, "stages": {}}
    try:
        data = Manifest.read(p).to_data()
    except ValidationError as e:
        # the manifest is always written atomically, so this is a hand edit: say so and start over
        from relforge.errors import DataError

        err = e.errors()[0]
        what = (
            f"is not valid JSON ({err['msg']})"
            if err["type"] == "json_invalid"
            else f"is not a relforge manifest ({'.'.join(map(str, err['loc']))}: {err['msg']})"
        )
        raise DataError(f"manifest {what}; delete it to rerun every stage", path=p) from None
    data.setdefault("stages", {})
    return data


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Stamp ``updated`` and write ``manifest`` through :class:`~relforge.artifacts.Manifest` (checked)."""
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Manifest.model_validate(manifest).write(Path(out_dir) / MANIFEST)


def _abs(out_dir: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else out_dir / p


def hash_many(out_dir: Path, paths: list[str]) -> dict[str, str | None]:
    return {p: hash_path(_abs(out_dir, p)) for p in paths}


# --------------------------------------------------------------------------- decisions


def stage_status(stage: Stage, cfg: Any, out_dir: Path, manifest: dict[str, Any]) -> tuple[bool, str]:
    """(up_to_date, reason) for one stage, looking at the files as they are now."""
    rec = manifest.get("stages", {}).get(stage.name)
    if rec is None:
        return False, "never run"
    if rec.get("status") != "done":
        return False, f"last run {rec.get('status', 'unknown')}" + (
            f": {rec['error']}" if rec.get("error") else ""
        )
    if rec.get("config_hash") != stage.config_hash(cfg):
        return False, "configuration changed"
    recorded_in = rec.get("inputs", {})
    for p in stage.inputs(cfg):
        now = hash_path(_abs(out_dir, p))
        if p not in recorded_in:
            return False, f"new input {p}"
        if now != recorded_in[p]:
            return False, f"input {p} {'is missing' if now is None else 'changed'}"
    recorded_out = rec.get("outputs", {})
    for p in stage.outputs(cfg):
        now = hash_path(_abs(out_dir, p))
        if now is None:
            return False, f"output {p} is missing"
        if recorded_out.get(p) != now:
            return False, f"output {p} was modified"
    return True, "up to date"


def _check_names(stages: list[Stage], *names: str | None) -> None:
    known = [s.name for s in stages]
    for n in names:
        if n is not None and n not in known:
            raise UsageError(f"unknown stage {n!r}; stages: {', '.join(known)}")


def plan(
    stages: list[Stage],
    cfg: Any,
    out_dir: str | os.PathLike,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    to_stage: str | None = None,
) -> list[PlanItem]:
    """What :func:`run_stages` would do, and why, without running anything."""
    out_dir = Path(out_dir)
    _check_names(stages, from_stage, only, to_stage)
    past_end = False
    manifest = read_manifest(out_dir)
    items: list[PlanItem] = []
    will_change: dict[str, str] = {}  # output path -> producing stage that will run
    forced = False
    for st in stages:
        if not st.enabled(cfg):
            items.append(PlanItem(st.name, "disabled", "disabled in the configuration"))
            continue
        if past_end:
            items.append(PlanItem(st.name, "not selected", f"after --to {to_stage}"))
            continue
        past_end = st.name == to_stage
        if only is not None and st.name != only:
            items.append(PlanItem(st.name, "not selected", f"--only {only}"))
            continue
        if from_stage is not None and st.name == from_stage:
            forced = True
        if only is not None:
            action, reason = "run", "--only"
        elif forced:
            action, reason = "run", f"--from {from_stage}"
        elif from_stage is not None:
            action, reason = "skip", f"before --from {from_stage}"
        else:
            upstream = next(
                (f"input {p} is rewritten by {will_change[p]}" for p in st.inputs(cfg) if p in will_change),
                None,
            )
            if upstream:
                action, reason = "run", upstream
            else:
                ok, why = stage_status(st, cfg, out_dir, manifest)
                action, reason = ("skip", why) if ok else ("run", why)
        if action == "run":
            for p in st.outputs(cfg):
                will_change[p] = st.name
        items.append(PlanItem(st.name, action, reason))
    return items


# --------------------------------------------------------------------------- running


class Runner:
    """Holds the manifest and the shared LLMs of one pipeline run."""

    def __init__(
        self,
        stages: list[Stage],
        cfg: Any,
        out_dir: str | os.PathLike,
        *,
        log: Callable[[str], None] | None = None,
        llm_loader: Callable[..., Any] | None = None,
    ):
        self.stages = stages
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = read_manifest(self.out_dir)
        self.manifest.setdefault("version", MANIFEST_VERSION)
        self.manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._log = log or (lambda m: None)
        self._llms: dict[tuple, Any] = {}
        self._llm_loader = llm_loader

    def log(self, msg: str) -> None:
        self._log(msg)

    # -- LLMs, shared by stages, one SQLite cache file in the artifacts folder
    def llm(self, spec: str, *, adapter: str | None = None, **kw: Any) -> Any:
        key = (spec, adapter, json.dumps(kw, sort_keys=True, default=str))
        if key not in self._llms:
            if self._llm_loader is not None:
                loader = self._llm_loader
            else:
                from relforge.llm import load_llm as loader
            self._llms[key] = loader(spec, adapter=adapter, cache=str(self.out_dir / LLM_CACHE), **kw)
        return self._llms[key]

    def _llm_stats(self) -> dict[str, int]:
        tot = {"prompt_tokens": 0, "completion_tokens": 0, "cache_hits": 0, "cache_misses": 0}
        for llm in self._llms.values():
            st = getattr(llm, "stats", None)
            if st is None:
                continue
            tot["prompt_tokens"] += int(getattr(st, "prompt_tokens", 0))
            tot["completion_tokens"] += int(getattr(st, "completion_tokens", 0))
            tot["cache_hits"] += int(getattr(st, "hits", 0))
            tot["cache_misses"] += int(getattr(st, "misses", 0))
        return tot

    def save(self) -> None:
        write_manifest(self.out_dir, self.manifest)

    def _clear_outputs(self, st: Stage) -> None:
        root = self.out_dir.resolve()
        for rel in st.outputs(self.cfg):
            p = _abs(self.out_dir, rel).resolve()
            if root not in p.parents:
                raise UsageError(f"stage {st.name} declares output {rel} outside the artifacts folder {root}")
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def run_stage(self, st: Stage, reason: str) -> dict[str, Any]:
        cfg, out = self.cfg, self.out_dir
        missing = [p for p in st.inputs(cfg) if hash_path(_abs(out, p)) is None]
        if missing:
            producers = ", ".join(missing)
            raise MissingInputError(
                f"stage {st.name!r} needs {producers}, which does not exist yet; run the earlier stages "
                f"first (drop --only/--from)"
            )
        inputs = hash_many(out, st.inputs(cfg))
        rec: dict[str, Any] = {
            "status": "running",
            "reason": reason,
            "config_hash": st.config_hash(cfg),
            "inputs": inputs,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.manifest["stages"][st.name] = rec
        self.save()
        self._clear_outputs(st)
        before = self._llm_stats()
        ctx = StageContext(cfg=cfg, out_dir=out, stage=st.name, runner=self)
        t0, c0 = time.perf_counter(), time.process_time()
        self.log(f"[{st.name}] running ({reason})")
        try:
            result = st.run(ctx) or {}
        except BaseException as e:
            rec["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            rec["error"] = f"{type(e).__name__}: {e}"[:500]
            rec["wall_s"] = round(time.perf_counter() - t0, 3)
            self.save()
            raise
        wall = time.perf_counter() - t0
        after = self._llm_stats()
        llm = {k: after[k] - before[k] for k in after}
        missing_out = [p for p in st.outputs(cfg) if not _abs(out, p).exists()]
        if missing_out:
            rec["status"] = "failed"
            rec["error"] = f"stage did not write {', '.join(missing_out)}"
            self.save()
            raise RuntimeError(f"stage {st.name!r} finished without writing {', '.join(missing_out)} (a bug)")
        rec.update(
            status="done",
            wall_s=round(wall, 3),
            cpu_s=round(time.process_time() - c0, 3),  # this process's CPU time (all threads)
            llm=llm if any(llm.values()) else None,
            counts={**ctx.counts, **result},
            outputs=hash_many(out, st.outputs(cfg)),
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        if any(llm.values()):  # the report's keys (relforge.report contract)
            rec["llm_tokens"] = {"prompt": llm["prompt_tokens"], "completion": llm["completion_tokens"]}
            rec["cache_hits"] = llm["cache_hits"]
            rec["cache_misses"] = llm["cache_misses"]
        rec.pop("error", None)
        self.save()
        self.log(f"[{st.name}] done in {wall:.1f}s")
        return rec

    def run(
        self, *, from_stage: str | None = None, only: str | None = None, to_stage: str | None = None
    ) -> dict[str, Any]:
        _check_names(self.stages, from_stage, only, to_stage)
        past_end = False
        self.manifest["stage_order"] = [s.name for s in self.stages if s.enabled(self.cfg)]
        forced = False
        t0 = time.perf_counter()
        ran: list[str] = []
        for st in self.stages:
            if not st.enabled(self.cfg):
                if only is None and from_stage is None:
                    self.manifest["stages"].pop(st.name, None)  # a stale record of a now-disabled stage
                continue
            if past_end:
                break
            past_end = st.name == to_stage
            if only is not None and st.name != only:
                continue
            if from_stage is not None and st.name == from_stage:
                forced = True
            if only is not None:
                self.run_stage(st, "--only")
            elif forced:
                self.run_stage(st, f"--from {from_stage}")
            elif from_stage is not None:
                ok, why = stage_status(st, self.cfg, self.out_dir, self.manifest)
                if not ok:
                    raise MissingInputError(
                        f"--from {from_stage}: earlier stage {st.name!r} is not up to date ({why}); "
                        f"run without --from first"
                    )
                continue
            else:
                ok, why = stage_status(st, self.cfg, self.out_dir, self.manifest)
                if ok:
                    self.log(f"[{st.name}] skipped ({why})")
                    self.manifest["stages"][st.name]["skipped_last_run"] = True
                    continue
                self.run_stage(st, why)
                ran.append(st.name)
            self.manifest["stages"][st.name].pop("skipped_last_run", None)
        self.manifest["last_run_wall_s"] = round(time.perf_counter() - t0, 3)
        self.manifest["total_stage_wall_s"] = round(
            sum(
                r.get("wall_s", 0) or 0 for r in self.manifest["stages"].values() if r.get("status") == "done"
            ),
            3,
        )
        self.save()
        return self.manifest


def run_stages(
    stages: list[Stage],
    cfg: Any,
    out_dir: str | os.PathLike,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    to_stage: str | None = None,
    log: Callable[[str], None] | None = None,
    llm_loader: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Run ``stages`` in order in ``out_dir``; returns the manifest (also written to ``manifest.json``).

    ``from_stage`` forces that stage and the later ones; ``only`` runs one stage; ``to_stage`` stops after it.
    """
    return Runner(stages, cfg, out_dir, log=log, llm_loader=llm_loader).run(
        from_stage=from_stage, only=only, to_stage=to_stage
    )
