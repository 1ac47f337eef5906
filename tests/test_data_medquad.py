"""MedQuAD importer on real MedQuAD XML: a small tar built from real members, then the full archive."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from relforge.cli import main
from relforge.data import read_beir, read_qrels, read_queries
from relforge.data.medquad import (
    ANSWER_GRADE,
    REMOVED_SUBSETS,
    clean_answer,
    import_medquad,
    parse_medquad_xml,
    split_of,
)
from relforge.errors import DataError, MissingInputError, UsageError

# real members covering every case: both XML schemas, the CDC <DiseaseFile>, CancerGov sub-files that share
# a Document id, an empty GARD answer, the three subsets with removed answers, and the licence (non-XML)
PICK = [
    "medq/1_CancerGov_QA/0000013_2.xml",
    "medq/1_CancerGov_QA/0000013_2_1.xml",
    "medq/1_CancerGov_QA/0000013_2_2.xml",
    "medq/2_GARD_QA/0000004.xml",
    "medq/2_GARD_QA/0002079.xml",
    "medq/3_GHR_QA/0000001.xml",
    "medq/4_MPlus_Health_Topics_QA/0000001.xml",
    "medq/5_NIDDK_QA/0000001.xml",
    "medq/6_NINDS_QA/0000007.xml",
    "medq/6_NINDS_QA/0000001.xml",
    "medq/7_SeniorHealth_QA/0000001.xml",
    "medq/8_NHLBI_QA_XML/0000001.xml",
    "medq/9_CDC_QA/0000397.xml",
    "medq/10_MPlus_ADAM_QA/0000001.xml",
    "medq/11_MPlusDrugs_QA/0000001.xml",
    "medq/12_MPlusHerbsSupplements_QA/0000001.xml",
    "medq/LICENSE.txt",
]


@pytest.fixture(scope="module")
def members(shared_dir) -> dict[str, bytes]:
    tar = shared_dir / "data" / "medquad" / "medquad-xml.tar.xz"
    if not tar.exists():
        pytest.skip(f"{tar} not found")
    out: dict[str, bytes] = {}
    with tarfile.open(tar, "r|xz") as tf:
        for m in tf:
            if m.name in PICK:
                out[m.name] = tf.extractfile(m).read()
            if len(out) == len(PICK):
                break
    assert sorted(out) == sorted(PICK)
    return out


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(lzma.compress(buf.getvalue()))
    return path


@pytest.fixture(scope="module")
def small_tar(tmp_path_factory, members) -> Path:
    return _tar(tmp_path_factory.mktemp("mq") / "small.tar.xz", members)


def _count_pairs(data: bytes) -> int:
    return data.count(b"<QAPair ") + data.count(b"<pair ")


def test_small_tar_import(tmp_path, small_tar, members):
    s = import_medquad(small_tar, tmp_path / "out")
    removed = {k: sum(_count_pairs(v) for n, v in members.items() if f"/{k}/" in n) for k in REMOVED_SUBSETS}
    assert s["skipped_by_subset"] == removed and all(v > 0 for v in removed.values())
    assert s["skipped"] == {"removed_subset": sum(removed.values()), "empty_answer": 1, "empty_question": 0}
    assert s["skipped_examples"]["empty_answer"] == ["medq/2_GARD_QA/0002079.xml#pid=1"]
    total = sum(_count_pairs(v) for v in members.values())
    assert s["pairs_total"] == total
    assert s["answered_pairs"] == total - s["skipped_total"]
    assert s["files"]["ignored_non_xml"] == ["medq/LICENSE.txt"]
    assert set(s["per_source"]) == {
        "CancerGov",
        "GARD",
        "GHR",
        "MPlusHealthTopics",
        "NIDDK",
        "NINDS",
        "NIHSeniorHealth",
        "NHLBI",
        "CDC",
    }

    corpus, queries, _ = read_beir(tmp_path / "out", "test")
    qrels = {sp: read_qrels(tmp_path / "out" / "qrels" / f"{sp}.tsv") for sp in ("train", "dev", "test")}
    assert len(corpus) == len(queries) == s["answered_pairs"] == sum(len(q) for q in qrels.values())
    # ids are stable and readable; each question -> its own answer with the documented grade
    d = corpus["GARD_0000004_A1"]
    assert d.title == "ABCD syndrome" and d.metadata["qtype"] == "symptoms"
    assert d.metadata["umls_cuis"] == ["C1838099"] and d.metadata["semantic_group"] == "Disorders"
    assert d.metadata["url"].startswith("https://rarediseases.info.nih.gov/")
    assert (
        d.metadata["question"]
        == queries["GARD_0000004_Q1"].text
        == "What are the symptoms of ABCD syndrome ?"
    )
    for sp, qr in qrels.items():
        for qid, docs in qr.items():
            assert docs == {queries[qid].metadata["doc_id"]: ANSWER_GRADE}
            assert queries[qid].metadata["split"] == sp
    # the lower-case NINDS schema and the CDC <DiseaseFile> are read too
    assert corpus["NINDS_0000007_A1"].title == "Holmes-Adie"
    assert any(k.startswith("CDC_0000397_A") for k in corpus)
    # CancerGov sub-files share a Document id: one split unit, ids stay unique by file stem
    cg = {q.metadata["split"] for q in queries.values() if q.metadata["document"] == "CancerGov_0000013_2"}
    assert len(cg) == 1 and "CancerGov_0000013_2_1_A1" in corpus and "CancerGov_0000013_2_A1" in corpus
    # answers lose the XML indentation
    assert all("\n " not in c.text and "  " not in c.text for c in corpus.values())


def test_tar_and_folder_give_identical_output(tmp_path, small_tar, members):
    folder = tmp_path / "xml"
    for name, data in reversed(list(members.items())):  # order must not matter
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    a = import_medquad(small_tar, tmp_path / "a", seed=3)
    b = import_medquad(folder / "medq", tmp_path / "b", seed=3)
    assert a["answered_pairs"] == b["answered_pairs"]
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_split_is_deterministic_and_seeded():
    keys = [f"GARD_{i:07d}" for i in range(2000)]
    a = [split_of(k, 0) for k in keys]
    assert a == [split_of(k, 0) for k in keys]
    assert a != [split_of(k, 1) for k in keys]
    share = {s: a.count(s) / len(a) for s in ("train", "dev", "test")}
    assert 0.76 < share["train"] < 0.84 and 0.07 < share["dev"] < 0.13 and 0.07 < share["test"] < 0.13
    assert {split_of(k, 0, (0.5, 0.0, 0.5)) for k in keys} == {"train", "test"}


@pytest.mark.parametrize("compress", ["xz", "gz"])
def test_truncated_tar_names_the_member(tmp_path, small_tar, compress):
    import gzip

    data = (
        small_tar.read_bytes() if compress == "xz" else gzip.compress(lzma.decompress(small_tar.read_bytes()))
    )
    bad = tmp_path / f"truncated.tar.{compress}"
    bad.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(
        DataError,
        match=rf"truncated\.tar\.{compress}: truncated or corrupt archive while reading "
        r"member medq/\S+ \(last complete member: medq/\S+\.xml\)",
    ):
        import_medquad(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "corpus.jsonl").exists()  # nothing half-written
    # a cut in the last bytes (all members complete) is still caught by the compressed stream's end marker
    bad.write_bytes(data[:-30])
    with pytest.raises(DataError, match=r"truncated or corrupt archive .*member medq/"):
        import_medquad(bad, tmp_path / "out")
    bad.write_bytes(data[:100])
    with pytest.raises(DataError, match=r"not a tar archive, or truncated or corrupt at its start"):
        import_medquad(bad, tmp_path / "out")


def test_malformed_xml_names_member_and_line(tmp_path, members):
    broken = dict(members)
    name = "medq/3_GHR_QA/0000001.xml"
    broken[name] = members[name].replace(b"</Question>", b"</Questio>", 1)
    tar = _tar(tmp_path / "broken.tar.xz", broken)
    line = members[name][: members[name].index(b"</Question>")].count(b"\n") + 1
    with pytest.raises(DataError, match=rf"broken\.tar\.xz:{name}:{line}: malformed XML \(mismatched tag"):
        import_medquad(tar, tmp_path / "out")


def test_bad_paths_and_settings(tmp_path, small_tar):
    with pytest.raises(MissingInputError, match="no such file or folder"):
        import_medquad(tmp_path / "nope.tar.xz", tmp_path / "out")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="not a tar archive, or truncated"):
        import_medquad(tmp_path / "x.txt", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MedQuAD XML files found"):
        import_medquad(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UsageError, match=r"fractions=\(0\.8, 0\.3, 0\.1\).*--fractions"):
        import_medquad(small_tar, tmp_path / "out", fractions=(0.8, 0.3, 0.1))


def test_parse_and_clean_helpers():
    xml = b"""<?xml version="1.0"?><Document id="7" source="GARD" url="u"><Focus> Foo  </Focus><QAPairs>
    <QAPair pid="2"><Question qid="7-2" qtype="causes">What causes
      Foo ?</Question><Answer>  Line one
            - item   two\n\n   </Answer></QAPair></QAPairs></Document>"""
    (p,) = parse_medquad_xml(xml, "2_GARD_QA/0000007.xml")
    assert (p.doc_id, p.query_id, p.document) == ("GARD_0000007_A2", "GARD_0000007_Q2", "GARD_7")
    assert p.question == "What causes Foo ?" and p.answer == "Line one\n- item two" and p.focus == "Foo"
    assert clean_answer("\ta\u00a0 b \n\n c") == "a b\nc"
    dup = xml.replace(
        b"</QAPairs>", b'<QAPair pid="2"><Question>q</Question><Answer>a</Answer></QAPair></QAPairs>'
    )
    with pytest.raises(DataError, match=r"x\.xml: duplicate QAPair pid '2'"):
        parse_medquad_xml(dup, "2_GARD_QA/0000007.xml", where="x.xml")


def test_cli_medquad_and_stats(tmp_path, small_tar, capsys):
    out = tmp_path / "mq"
    assert main(["data", "medquad", str(small_tar), "--out", str(out), "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "10_MPlus_ADAM_QA" in text and "answered pairs" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["seed"] == 1
    assert main(["data", "stats", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["corpus"]["count"] == s["answered_pairs"]
    assert st["splits"] == {k: v["queries"] for k, v in s["splits"].items() if v["queries"]} | {
        k: 0 for k, v in s["splits"].items() if not v["queries"]
    }
    assert st["import_summary"]["skipped"] == s["skipped"]
    assert main(["data", "medquad", str(tmp_path / "nope"), "--out", str(out)]) == 4
    assert main(["data", "medquad", str(small_tar), "--out", str(out), "--fractions", "1,2"]) == 2
    assert "--fractions" in capsys.readouterr().err


def test_real_medquad_archive(tmp_path, shared_dir):
    """The full archive (~5-25 s): answered-pair count, skipped subsets, no document straddles splits."""
    tar = shared_dir / "data" / "medquad" / "medquad-xml.tar.xz"
    s = import_medquad(tar, tmp_path / "mq")
    assert 16000 <= s["answered_pairs"] <= 16600
    assert set(s["skipped_by_subset"]) == set(REMOVED_SUBSETS)
    assert all(v > 0 for v in s["skipped_by_subset"].values())
    assert s["skipped"]["removed_subset"] == sum(s["skipped_by_subset"].values())
    assert s["answered_pairs"] + s["skipped_total"] == s["pairs_total"]
    queries = read_queries(tmp_path / "mq" / "queries.jsonl")
    splits_of_doc: dict[str, set[str]] = defaultdict(set)
    splits_of_text: dict[str, set[str]] = defaultdict(set)
    for sp in ("train", "dev", "test"):
        for qid in read_qrels(tmp_path / "mq" / "qrels" / f"{sp}.tsv"):
            splits_of_doc[queries[qid].metadata["document"]].add(sp)
            splits_of_text[queries[qid].text.lower()].add(sp)
    assert len(splits_of_doc) > 5000
    assert all(len(v) == 1 for v in splits_of_doc.values())
    assert all(len(v) == 1 for v in splits_of_text.values())
    n = {sp: s["splits"][sp]["queries"] for sp in ("train", "dev", "test")}
    assert sum(n.values()) == s["answered_pairs"] and 0.7 < n["train"] / s["answered_pairs"] < 0.9
    assert s["duplicate_answer_texts"]["documents"] > 0  # MedQuAD repeats boilerplate answers: counted
