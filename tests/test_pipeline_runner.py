"""The stage runner with toy stages: skip if unchanged, rerun on change, resume after a crash, plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relforge.errors import MissingInputError, UsageError
from relforge.pipeline.runner import Stage, hash_path, plan, read_manifest, run_stages


class Toy:
    """Three stages a -> b -> c; each appends its name to ``calls`` and writes one file."""

    def __init__(self, out: Path):
        self.out = out
        self.calls: list[str] = []
        self.fail_in: str | None = None
        self.cfg = {"a": 1, "b": 2, "c": 3}

    def stages(self) -> list[Stage]:
        def mk(name, src):
            def run(ctx):
                self.calls.append(name)
                if self.fail_in == name:
                    raise RuntimeError("boom")
                text = (ctx.path(src).read_text() if src else "") + f"{name}={ctx.cfg[name]};"
                ctx.path(f"{name}.txt").write_text(text)
                return {"chars": len(text)}

            return Stage(
                name,
                run,
                inputs=lambda cfg: [src] if src else [],
                outputs=lambda cfg: [f"{name}.txt"],
                config=lambda cfg: cfg[name],
            )

        return [mk("a", None), mk("b", "a.txt"), mk("c", "b.txt")]

    def run(self, **kw):
        return run_stages(self.stages(), self.cfg, self.out, **kw)


def test_first_run_records_every_stage(tmp_path):
    toy = Toy(tmp_path)
    m = toy.run()
    assert toy.calls == ["a", "b", "c"]
    assert (tmp_path / "c.txt").read_text() == "a=1;b=2;c=3;"
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    rec = on_disk["stages"]["b"]
    assert rec["status"] == "done" and rec["counts"] == {"chars": 8}
    assert rec["inputs"] == {"a.txt": hash_path(tmp_path / "a.txt")}
    assert rec["outputs"] == {"b.txt": hash_path(tmp_path / "b.txt")}
    assert rec["wall_s"] >= 0 and len(rec["config_hash"]) == 24
    assert m["stage_order"] == ["a", "b", "c"]


def test_unchanged_stages_are_skipped(tmp_path):
    toy = Toy(tmp_path)
    toy.run()
    toy.calls.clear()
    toy.run()
    assert toy.calls == []
    assert all(p.action == "skip" for p in plan(toy.stages(), toy.cfg, tmp_path))


def test_config_change_reruns_that_stage_and_dependants_only(tmp_path):
    toy = Toy(tmp_path)
    toy.run()
    toy.calls.clear()
    toy.cfg["b"] = 20
    items = plan(toy.stages(), toy.cfg, tmp_path)
    assert [(i.stage, i.action) for i in items] == [("a", "skip"), ("b", "run"), ("c", "run")]
    assert items[1].reason == "configuration changed"
    assert items[2].reason == "input b.txt is rewritten by b"
    toy.run()
    assert toy.calls == ["b", "c"]
    assert (tmp_path / "c.txt").read_text() == "a=1;b=20;c=3;"


def test_modified_or_deleted_output_is_rebuilt(tmp_path):
    toy = Toy(tmp_path)
    toy.run()
    toy.calls.clear()
    (tmp_path / "c.txt").write_text("hand edit")
    assert plan(toy.stages(), toy.cfg, tmp_path)[2].reason == "output c.txt was modified"
    toy.run()
    assert toy.calls == ["c"]
    (tmp_path / "b.txt").unlink()
    toy.calls.clear()
    toy.run()
    assert toy.calls == ["b"]  # b.txt comes back identical, so c stays up to date


def test_crash_then_resume_continues_at_the_failed_stage(tmp_path):
    toy = Toy(tmp_path)
    toy.fail_in = "b"
    with pytest.raises(RuntimeError, match="boom"):
        toy.run()
    m = read_manifest(tmp_path)
    assert m["stages"]["a"]["status"] == "done"
    assert m["stages"]["b"]["status"] == "failed" and "boom" in m["stages"]["b"]["error"]
    assert "c" not in m["stages"]
    assert plan(toy.stages(), toy.cfg, tmp_path)[1].reason.startswith("last run failed")
    toy.fail_in = None
    toy.calls.clear()
    toy.run()
    assert toy.calls == ["b", "c"]


def test_interrupt_is_recorded(tmp_path):
    toy = Toy(tmp_path)

    def ctrl_c(ctx):
        raise KeyboardInterrupt

    stages = toy.stages()
    stages[1].run = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        run_stages(stages, toy.cfg, tmp_path)
    assert read_manifest(tmp_path)["stages"]["b"]["status"] == "interrupted"


def test_from_and_only(tmp_path):
    toy = Toy(tmp_path)
    with pytest.raises(MissingInputError, match="needs a.txt"):
        toy.run(only="b")
    toy.run()
    toy.calls.clear()
    items = plan(toy.stages(), toy.cfg, tmp_path, from_stage="b")
    assert [(i.action, i.reason) for i in items] == [
        ("skip", "before --from b"),
        ("run", "--from b"),
        ("run", "--from b"),
    ]
    toy.run(from_stage="b")
    assert toy.calls == ["b", "c"]
    toy.calls.clear()
    toy.run(only="a")
    assert toy.calls == ["a"]
    assert [i.action for i in plan(toy.stages(), toy.cfg, tmp_path, only="c")] == [
        "not selected",
        "not selected",
        "run",
    ]
    with pytest.raises(UsageError, match="unknown stage 'zz'; stages: a, b, c"):
        toy.run(from_stage="zz")


def test_disabled_stage_is_not_run(tmp_path):
    toy = Toy(tmp_path)
    stages = toy.stages()
    stages[2].enabled = lambda cfg: False
    run_stages(stages, toy.cfg, tmp_path)
    assert toy.calls == ["a", "b"]
    assert plan(stages, toy.cfg, tmp_path)[2].action == "disabled"


def test_folder_outputs_hash_by_content(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "w.bin").write_bytes(b"123")
    h1 = hash_path(d)
    (d / ".w.bin.x.tmp").write_bytes(b"partial")  # a leftover temp file does not count
    assert hash_path(d) == h1
    (d / "onnx").mkdir()  # a derived export cached beside a model by rerank
    (d / "onnx" / "model.onnx").write_bytes(b"x")
    assert hash_path(d) == h1
    (d / "w.bin").write_bytes(b"124")
    assert hash_path(d) != h1
    assert hash_path(tmp_path / "nope") is None


def test_to_stops_after_the_named_stage(tmp_path):
    toy = Toy(tmp_path)
    toy.run(to_stage="b")
    assert toy.calls == ["a", "b"]
    items = plan(toy.stages(), toy.cfg, tmp_path, to_stage="a")
    assert [(i.action, i.reason) for i in items] == [
        ("skip", "up to date"),
        ("not selected", "after --to a"),
        ("not selected", "after --to a"),
    ]
    toy.calls.clear()
    toy.run()
    assert toy.calls == ["c"]
