"""Round trips through every format (JSONL, CSV, TSV, Parquet, HF datasets, BEIR, TREC), column mapping,
and bad rows named by file and line (CSV, JSONL) or row (Parquet, datasets)."""

from __future__ import annotations

import json

import pytest

from relforge.data import convert, from_dataset, iter_table, read_table, to_dataset, write_table
from relforge.data.formats import detect_format, parse_columns
from relforge.errors import DataError, UsageError
from relforge.types import Document, Query

CORPUS = {
    "d1": Document(
        "d1",
        'Aspirin, "thins" the blood;\nline two\twith tab',
        "Aspirin",
        {"source": "GARD", "cuis": ["C1", "C2"], "n": 3, "nested": {"a": None}},
    ),
    "d2": Document("d2", "Ibuprofen — ünïcödé ✓", "", {}),
    "10": Document("10", "numeric-looking id", "Ten", {"url": "http://x"}),
}
QUERIES = {"q1": Query("q1", "what thins, the blood?", {"qtype": "information"}), "007": Query("007", "bond")}
QRELS = {"q1": {"d1": 3, "d2": 0}, "007": {"10": 1}}
RUN = {"q1": {"d1": 2.5, "d2": -1.0, "10": 2.5}, "007": {"10": 0.125}}
DATA = {"corpus": CORPUS, "queries": QUERIES, "qrels": QRELS, "run": RUN}

EXT = {
    "jsonl": "jsonl",
    "csv": "csv",
    "tsv": "tsv",
    "parquet": "parquet",
    "hf": "hfds",
    "beir": None,
    "trec": "trec",
}
CASES = [(k, f) for k in DATA for f in ("jsonl", "csv", "tsv", "parquet", "hf")]
CASES += [("corpus", "beir"), ("queries", "beir"), ("qrels", "beir"), ("qrels", "trec"), ("run", "trec")]


@pytest.mark.parametrize("kind, fmt", CASES)
def test_round_trip(tmp_path, kind, fmt):
    ext = EXT[fmt] or ("tsv" if kind == "qrels" else "jsonl")
    p = tmp_path / f"{kind}.{ext}"
    n = write_table(p, kind, DATA[kind], format=fmt)
    assert n == (
        len(DATA[kind]) if kind in ("corpus", "queries") else sum(len(v) for v in DATA[kind].values())
    )
    back = read_table(p, kind, format=fmt)
    assert back == DATA[kind]
    # the format is also guessed from the name
    assert read_table(p, kind) == DATA[kind]


@pytest.mark.parametrize("kind", list(DATA))
def test_hf_datasets_round_trip_in_memory(kind):
    ds = to_dataset(kind, DATA[kind])
    expected = {
        "corpus": ["_id", "title", "text", "metadata"],
        "queries": ["_id", "text", "metadata"],
        "qrels": ["query-id", "corpus-id", "score"],
        "run": ["query-id", "corpus-id", "score"],
    }[kind]
    assert ds.column_names == expected
    assert from_dataset(kind, ds) == DATA[kind]


def test_from_dataset_reads_beir_style_columns_and_extras():
    import datasets

    ds = datasets.Dataset.from_dict(
        {"_id": ["a", "b"], "title": ["T", None], "text": ["x", "y"], "lang": ["en", "fr"]}
    )
    corpus = from_dataset("corpus", ds)
    assert corpus["a"] == Document("a", "x", "T", {"lang": "en"}) and corpus["b"].title == ""
    bad = datasets.Dataset.from_dict({"_id": ["a", "a"], "text": ["x", "y"]})
    with pytest.raises(DataError, match=r"row 2\): duplicate document id 'a'"):
        from_dataset("corpus", bad)


def test_column_mapping_read_and_write(tmp_path):
    src = tmp_path / "docs.csv"
    src.write_text("docid,headline,body,lang\nA1,Title A,Body A,en\nA2,,Body B,fr\n", encoding="utf-8")
    corpus = read_table(src, "corpus", "id=docid,title=headline,text=body")
    assert corpus["A1"] == Document("A1", "Body A", "Title A", {"lang": "en"})
    out = tmp_path / "out.parquet"
    write_table(out, "corpus", corpus, columns={"id": "doc", "text": "contents"})
    import pyarrow.parquet as pq

    assert pq.read_table(out).column_names == ["doc", "title", "contents", "metadata"]
    assert read_table(out, "corpus", {"id": "doc", "text": "contents"}) == corpus
    qrels = tmp_path / "qrels.csv"
    qrels.write_text("topic,document,rel\nq1,A1,2\n", encoding="utf-8")
    assert read_table(qrels, "qrels", {"qid": "topic", "docid": "document", "grade": "rel"}) == {
        "q1": {"A1": 2}
    }
    # BEIR column names are accepted as field names too
    assert parse_columns("query-id=topic,corpus-id=document,score=rel", "qrels") == {
        "qid": "topic",
        "docid": "document",
        "grade": "rel",
    }


@pytest.mark.parametrize("name", ["c.csv.gz", "c.tsv.gz", "c.jsonl.gz"])
def test_gzipped_tables(tmp_path, name):
    import gzip

    p = tmp_path / name
    write_table(p, "corpus", CORPUS)
    assert gzip.open(p).read(1)  # really gzipped
    assert read_table(p, "corpus") == CORPUS


def test_iter_table_streams(tmp_path):
    p = tmp_path / "c.jsonl"
    write_table(p, "corpus", CORPUS)
    it = iter_table(p, "corpus")
    assert next(it).id == "d1"  # a generator: nothing else read yet


def test_convert_between_formats(tmp_path):
    src = tmp_path / "run.trec"
    write_table(src, "run", RUN)
    r = convert(src, tmp_path / "run.parquet", "run")
    assert r == {"records": 4, "from": "trec", "to": "parquet"}
    convert(tmp_path / "run.parquet", tmp_path / "run.csv", "run")
    convert(tmp_path / "run.csv", tmp_path / "run2.trec", "run")
    assert (tmp_path / "run2.trec").read_text() == src.read_text()
    convert(tmp_path / "run.csv", tmp_path / "run_hf", "run", to_format="hf")
    assert read_table(tmp_path / "run_hf", "run") == RUN
    with pytest.raises(UsageError, match="same path"):
        convert(src, src, "run")


def test_detect_format_and_usage_errors(tmp_path):
    assert detect_format("a/corpus.jsonl.gz", "corpus") == "beir"
    assert detect_format("qrels/test.tsv", "qrels") == "beir"
    assert detect_format("x.tsv", "corpus") == "tsv"
    assert detect_format("r.run", "run") == "trec"
    assert detect_format(tmp_path, "corpus") == "hf"
    with pytest.raises(UsageError, match=r"cannot tell the format .*--from/--to one of beir, trec"):
        detect_format("x.xlsx", "corpus")
    with pytest.raises(UsageError, match=r"unknown kind 'docs'; choose one of corpus, queries, qrels, run"):
        read_table("x.jsonl", "docs")
    with pytest.raises(UsageError, match=r"unknown corpus field 'body'.*fields: id, title, text, metadata"):
        parse_columns("body=text", "corpus")
    with pytest.raises(UsageError, match="not FIELD=COLUMN"):
        parse_columns("id", "corpus")
    with pytest.raises(UsageError, match="TREC format is for qrels and runs"):
        write_table(tmp_path / "c.trec", "corpus", CORPUS)
    with pytest.raises(UsageError, match="runs have no BEIR format"):
        write_table(tmp_path / "r.jsonl", "run", RUN, format="beir")


# --------------------------------------------------------------------------- bad rows


def _w(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "kind, text, line, msg",
    [
        ("corpus", "_id,title,text\na,T,x\n,T,y\n", 3, r"missing id"),
        ("corpus", "_id,title,text\na,T,x\na,U,y\n", 3, r"duplicate document id 'a'"),
        ("corpus", "_id,title,text\na,T,x\nb,,\n", 3, r"document 'b' has empty text"),
        ("corpus", "_id,title,text\na,T,x\nb,T\n", 3, r"expected 3 columns"),
        ("corpus", "_id,title,text,metadata\na,T,x,{oops\n", 2, r"'metadata' is not valid JSON"),
        ("queries", "_id,text\nq,\n", 2, r"query 'q' has empty or missing text"),
        (
            "qrels",
            "query-id,corpus-id,score\nq,d,1\nq,e,two\n",
            3,
            r"relevance grade 'two' is not an integer",
        ),
        ("run", "query-id,corpus-id,score\nq,d,high\n", 2, r"score 'high' is not a number"),
        # a quoted multi-line field: the error is reported on the physical line where the row ends
        ("corpus", '_id,title,text\na,T,"multi\nline"\na,T,z\n', 4, r"duplicate document id 'a'"),
    ],
)
def test_bad_csv_rows(tmp_path, kind, text, line, msg):
    p = _w(tmp_path / "in.csv", text)
    with pytest.raises(DataError, match=rf"in\.csv:{line}: .*{msg}"):
        read_table(p, kind)


def test_bad_csv_encoding_names_line(tmp_path):
    p = _w(tmp_path / "in.csv", b"_id,text\na,ok\n" + "b,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"in\.csv:3: not valid UTF-8"):
        read_table(p, "queries")


def test_bad_jsonl_rows(tmp_path):
    p = _w(
        tmp_path / "qrels.jsonl",
        '{"query-id": "q", "corpus-id": "d", "score": 1}\n{"query-id": "q", "score": 1}\n',
    )
    with pytest.raises(DataError, match=r"qrels\.jsonl:2: missing docid"):
        read_table(p, "qrels")
    p = _w(tmp_path / "c.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": ["x"]}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: 'b': text must be a string"):
        read_table(p, "corpus")


def test_bad_parquet_rows_name_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "q.parquet"
    pq.write_table(
        pa.table({"query-id": ["q", "q", "q"], "corpus-id": ["a", "b", "c"], "score": [1.0, 2.0, 0.5]}), p
    )
    with pytest.raises(DataError, match=r"q\.parquet \(row 3\): relevance grade 0\.5 is not an integer"):
        read_table(p, "qrels")
    junk = _w(tmp_path / "junk.parquet", b"not parquet at all")
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable Parquet file"):
        read_table(junk, "qrels")


def test_metadata_is_json_in_flat_formats(tmp_path):
    p = tmp_path / "c.csv"
    write_table(p, "corpus", CORPUS)
    import csv

    rows = list(csv.DictReader(p.open(encoding="utf-8")))
    assert json.loads(rows[0]["metadata"]) == CORPUS["d1"].metadata
    assert rows[1]["metadata"] == ""
