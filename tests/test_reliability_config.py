"""Issue 15, family "config errors": the right key is named, --dry-run catches everything knowable,
duplicate YAML keys and empty files are errors. Real ``relforge run --dry-run`` subprocesses."""

from __future__ import annotations

from tests.test_reliability_outputs import relforge


def _dry(tmp_path, text: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    r = relforge("run", cfg, "--out", tmp_path / "out", "--dry-run")
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    return r


def test_missing_paths_name_their_key(tmp_path):
    r = _dry(tmp_path, "judge:\n  agreement:\n    human: /nope/human\n")
    assert r.returncode == 4
    assert "judge.agreement.human: '/nope/human' does not exist" in r.stderr
    assert "data.source" not in r.stderr
    r = _dry(tmp_path, "data:\n  source: /nope/medquad.tar.xz\n")
    assert r.returncode == 4 and "data.source: '/nope/medquad.tar.xz' does not exist" in r.stderr


def test_dry_run_catches_adapter_llm_options_and_templates_at_once(tmp_path):
    text = (
        "judge:\n  adapter: /nope/adapter\n  template: no-such-template\n"
        "llm:\n  options:\n    frobnicate: 3\n"
    )
    r = _dry(tmp_path, text)
    assert r.returncode == 4, r.stderr
    assert "judge.adapter: '/nope/adapter' does not exist" in r.stderr
    assert "llm.options: frobnicate not supported by the hf: backend" in r.stderr
    assert "judge.template:" in r.stderr
    r = _dry(tmp_path, "llm:\n  spec: nonsense-model\n")
    assert r.returncode == 2 and "llm.spec: unknown LLM spec" in r.stderr


def test_duplicate_yaml_keys_name_both_lines(tmp_path):
    r = _dry(tmp_path, "name: a\njudge:\n  top_k: 5\n  batch_size: 2\n  top_k: 50\n")
    assert r.returncode == 5
    assert "c.yaml:5:" in r.stderr and "duplicate key 'top_k' (first at line 3, again at line 5)" in r.stderr


def test_empty_yaml_is_an_error_not_the_default_pipeline(tmp_path):
    for text in ("", "# nothing but a comment\n", "---\n"):
        r = _dry(tmp_path, text)
        assert r.returncode == 5 and "the file is empty" in r.stderr, text


def test_secret_in_config_refused_before_anything_is_written(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  options:\n    api_key: sk-live-123456\n")
    r = relforge("run", cfg, "--out", tmp_path / "out")
    assert r.returncode == 5 and "llm.options.api_key" in r.stderr and "sk-live" not in r.stderr
    assert not (tmp_path / "out").exists()
