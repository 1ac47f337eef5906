"""BEIR / TREC readers and writers: bad input names file and line; writes are atomic."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from relforge.data import (
    atomic_write,
    check_qrels_file,
    iter_corpus,
    iter_lines,
    read_beir,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    validate_corpus,
    write_corpus,
    write_jsonl,
    write_qrels,
    write_queries,
    write_run,
)
from relforge.errors import DataError, MissingInputError
from relforge.types import Document, Query

DOCS = [
    Document("d1", "Aspirin thins the blood.", "Aspirin", {"source": "x", "cuis": ["C1"]}),
    Document("d2", "Ibuprofen is an NSAID.\nSecond line: ünïcödé", "Ibuprofen"),
    Document("d3", "No title here."),
]
QUERIES = [Query("q1", "what thins blood", {"qtype": "information"}), Query("q2", "nsaid examples")]
QRELS = {"q1": {"d1": 3, "d2": 0}, "q2": {"d2": 2}}


def _write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _beir(folder, qrels_text="query-id\tcorpus-id\tscore\nq1\td1\t3\nq1\td2\t0\nq2\td2\t2\n"):
    write_corpus(folder / "corpus.jsonl", DOCS)
    write_queries(folder / "queries.jsonl", QUERIES)
    _write(folder / "qrels" / "test.tsv", qrels_text)
    return folder


# --------------------------------------------------------------------------- round trips


def test_beir_folder_round_trip(tmp_path):
    corpus, queries, qrels = read_beir(_beir(tmp_path), "test")
    assert corpus == {d.id: d for d in DOCS}
    assert queries == {q.id: q for q in QUERIES}
    assert qrels == QRELS


def test_gzipped_files_read_and_write(tmp_path):
    write_corpus(tmp_path / "corpus.jsonl.gz", DOCS)
    with gzip.open(tmp_path / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        assert json.loads(fh.readline())["_id"] == "d1"
    assert read_corpus(tmp_path / "corpus.jsonl.gz") == {d.id: d for d in DOCS}
    write_queries(tmp_path / "queries.jsonl.gz", QUERIES)
    _write(tmp_path / "qrels" / "test.tsv", "q1\td1\t1\n")
    corpus, queries, qrels = read_beir(tmp_path, "test")  # finds the .gz files
    assert len(corpus) == 3 and len(queries) == 2 and qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize("fmt", ["beir", "trec"])
def test_qrels_round_trip(tmp_path, fmt):
    p = tmp_path / f"qrels.{fmt}"
    assert write_qrels(p, QRELS, format=fmt) == 3
    first = p.read_text().splitlines()[0]
    assert first == ("query-id\tcorpus-id\tscore" if fmt == "beir" else "q1 0 d1 3")
    assert read_qrels(p) == QRELS


def test_trec_run_round_trip_and_tie_policy(tmp_path):
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 2.5}, "q2": {"x": -0.25}}
    p = tmp_path / "run.trec"
    write_run(p, run, tag="t")
    lines = p.read_text().splitlines()
    # score desc, then doc id asc for ties
    assert [ln.split()[2] for ln in lines[:3]] == ["c", "a", "b"]
    assert lines[0] == "q1 Q0 c 1 2.5 t"
    assert read_run(p) == run


def test_writes_are_atomic_and_readable(tmp_path):
    p = tmp_path / "out.jsonl"
    write_jsonl(p, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_write(p) as fh:
            fh.write("partial")
            raise RuntimeError("crash mid-write")
    assert p.read_text() == '{"a": 1}\n'  # the old file survives a crash
    assert [f.name for f in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


# --------------------------------------------------------------------------- bad input


def test_malformed_json_line_names_file_and_line(tmp_path):
    p = _write(tmp_path / "corpus.jsonl", '{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": \n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: malformed JSON") as e:
        list(iter_corpus(p))
    assert e.value.line == 3


def test_missing_id(tmp_path):
    p = _write(tmp_path / "corpus.jsonl", '{"_id": "a", "text": "x"}\n{"text": "no id"}\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: missing '_id'"):
        read_corpus(p)


def test_duplicate_ids(tmp_path):
    p = _write(tmp_path / "queries.jsonl", '{"_id": "q", "text": "x"}\n{"_id": "q", "text": "y"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:2: duplicate query id 'q'"):
        read_queries(p)
    c = _write(
        tmp_path / "corpus.jsonl",
        '{"_id": "d", "text": "x"}\n{"_id": "e", "text": "y"}\n{"_id": "d", "text": "z"}\n',
    )
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: duplicate document id 'd'"):
        read_corpus(c)


def test_empty_text(tmp_path):
    p = _write(
        tmp_path / "corpus.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "title": "", "text": "  "}\n'
    )
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: document 'b' has empty text"):
        read_corpus(p)
    stats: dict = {}
    assert len(list(iter_corpus(p, allow_empty=True, stats=stats))) == 2 and stats == {"empty": 1}
    q = _write(tmp_path / "queries.jsonl", '{"_id": "q", "text": ""}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:1: query 'q' has empty"):
        read_queries(q)


def test_wrong_encoding_names_the_right_line(tmp_path):
    # 200 long UTF-8 lines first: a chunked text decoder would blame line 1
    good = "".join(json.dumps({"_id": f"d{i}", "text": "ü" * 100}) + "\n" for i in range(200))
    bad = '{"_id": "x", "text": "caf\xe9"}\n'.encode("latin-1")
    p = _write(tmp_path / "corpus.jsonl", good.encode("utf-8") + bad)
    with pytest.raises(DataError, match=r"corpus\.jsonl:201: not valid UTF-8 .*re-encode") as e:
        read_corpus(p)
    assert e.value.line == 201


def test_utf8_bom_is_accepted(tmp_path):
    p = _write(tmp_path / "q.jsonl", "\ufeff" + '{"_id": "q", "text": "x"}\n')
    assert list(read_queries(p)) == ["q"]
    assert next(iter_lines(p)) == (1, '{"_id": "q", "text": "x"}')


def test_truncated_gzip_names_file(tmp_path):
    p = tmp_path / "corpus.jsonl.gz"
    write_corpus(p, [Document(f"d{i}", "text " * 50) for i in range(200)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"corpus\.jsonl\.gz: corrupt or truncated gzip"):
        read_corpus(p)


@pytest.mark.parametrize(
    "text, line, msg",
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", 2, r"relevance grade 'high' is not an integer"),
        ("q1\td1\t1.5\n", 1, r"relevance grade '1.5' is not an integer"),
        ("q1 0 d1 2\nq2 0 d2\n", 2, r"expected 4 columns \(trec qrels\), got 3"),
        ("q1 d1\n", 1, r"cannot tell the qrels format"),
        ("q1\td1\tnan\n", 1, r"relevance grade 'nan' is not an integer"),
    ],
)
def test_bad_qrels(tmp_path, text, line, msg):
    p = _write(tmp_path / "qrels.tsv", text)
    with pytest.raises(DataError, match=rf"qrels\.tsv:{line}: {msg}"):
        read_qrels(p)


def test_bad_run(tmp_path):
    p = _write(tmp_path / "run.trec", "q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 abc t\n")
    with pytest.raises(DataError, match=r"run\.trec:2: score 'abc' is not a number"):
        read_run(p)
    p = _write(tmp_path / "run2.trec", "q1 Q0 d1 1 0.5\n")
    with pytest.raises(DataError, match=r"run2\.trec:1: expected 6 columns"):
        read_run(p)


def test_qrels_naming_unknown_query_or_doc(tmp_path):
    folder = _beir(tmp_path / "a", "query-id\tcorpus-id\tscore\nq1\td1\t3\nq9\td1\t1\n")
    with pytest.raises(DataError, match=r"qrels/test\.tsv:3: qrels name unknown query id 'q9'"):
        read_beir(folder, "test")
    folder = _beir(tmp_path / "b", "q1\td1\t3\nq2\td2\t1\nq2\tnope\t0\n")
    with pytest.raises(DataError, match=r"qrels/test\.tsv:3: qrels name unknown document id 'nope'"):
        read_beir(folder, "test")
    _, _, qrels = read_beir(folder, "test", validate=False)
    assert qrels["q2"] == {"d2": 1, "nope": 0}
    with pytest.raises(DataError, match=r":3: .*unknown document id 'nope'"):
        check_qrels_file(folder / "qrels" / "test.tsv", {"q1", "q2"}, {"d1", "d2"})


def test_missing_inputs(tmp_path):
    with pytest.raises(MissingInputError, match="no such file"):
        read_corpus(tmp_path / "nope.jsonl")
    folder = _beir(tmp_path)
    with pytest.raises(MissingInputError, match=r"no such qrels split 'dev'; splits here: \['test'\]"):
        read_beir(folder, "dev")


def test_validate_corpus_counts_without_raising(tmp_path):
    rows = [
        '{"_id": "a", "text": "x"}',
        '{"_id": "b", "text": ""}',
        '{"_id": "a", "text": "y"}',
        '{"_id": "c", "title": "t", "text": ""}',
        '{"_id": "b", "text": "z"}',
    ]
    p = _write(tmp_path / "corpus.jsonl", "\n".join(rows) + "\n")
    v = validate_corpus(p)
    assert (v["documents"], v["unique_ids"], v["duplicates"], v["empty"]) == (5, 3, 2, 1)
    assert v["duplicate_lines"] == [3, 5] and v["empty_lines"] == [2]
    assert v["ids"] == {"a", "b", "c"}
    p2 = _write(tmp_path / "c2.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": 5}\n')
    with pytest.raises(DataError, match=r"c2\.jsonl:2: document 'b': 'text' must be a string"):
        validate_corpus(p2)


def test_read_labelled_takes_the_first_qrels_file_that_exists(tmp_path):
    from relforge.data.io import read_labelled

    write_corpus(tmp_path / "corpus.jsonl", [Document("d1", "a"), Document("d2", "b")])
    write_queries(tmp_path / "queries.jsonl", [Query("q1", "x")])
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    corpus, queries, qrels = read_labelled(tmp_path)
    assert set(corpus) == {"d1", "d2"} and set(queries) == {"q1"} and qrels == {"q1": {"d2": 1}}
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    assert read_labelled(tmp_path)[2] == {"q1": {"d1": 2}}
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t3\n")
    assert read_labelled(str(tmp_path))[2] == {"q1": {"d1": 3}}
    with pytest.raises(MissingInputError, match="no qrels.tsv or qrels/test.tsv"):
        read_labelled(tmp_path / "qrels")


def test_resolve_data_source_names_the_config_key(tmp_path):
    from relforge.data.io import read_labelled, resolve_data_source

    human = resolve_data_source("sample:liveqa-med", "judge.agreement.human")
    assert human.is_dir() and read_labelled(human)[2]  # the packaged human-labelled sample
    assert resolve_data_source(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(MissingInputError, match=r"data.source: .* sample:medquad"):
        resolve_data_source(str(tmp_path / "nope"))
    with pytest.raises(MissingInputError, match=r"judge_finetune.data: .* sample:liveqa-med"):
        resolve_data_source(str(tmp_path / "nope"), "judge_finetune.data")


def test_stage_packages_do_not_import_the_pipeline():
    """The pipeline wires the stage packages, never the reverse: no module outside relforge.pipeline
    (the root CLI aside) imports from it."""
    import ast
    from pathlib import Path

    import relforge

    root = Path(relforge.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "pipeline" or rel.name in ("cli.py", "__main__.py") and len(rel.parts) == 1:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{rel}:{node.lineno} {n}" for n in names if n.startswith("relforge.pipeline")]
    assert offenders == []
