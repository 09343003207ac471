"""Readers, labels and bad inputs: every error is one line naming the file and row."""

import csv
import gzip
import json
import tarfile

import numpy as np
import pytest

from configs.base import get_config
from gencls_jax.data import sources
from gencls_jax.data.clean import clean_texts
from gencls_jax.data.pipeline import read_split
from gencls_jax.data.sources import DataError


def write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


ROWS = [
    {"id": 7, "label": 0, "text": "bad film"},
    {"id": 3, "label": 1, "text": "good film"},
    {"id": 9, "label": 1, "text": "great<br />film"},
]


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_reads_rows_gzip_or_not(tmp_path, gz):
    p = write_jsonl(tmp_path / "a.jsonl", ROWS, gz=gz)  # gzip is detected by content, not name
    raw = sources.read_jsonl(p, "text", "label", "id")
    assert raw.texts == [r["text"] for r in ROWS]
    assert raw.raw_labels == [0, 1, 1]
    assert raw.ids == ["7", "3", "9"]
    assert raw.where[2] == f"{p}:3"


def test_csv_string_labels_multiclass(tmp_path):
    p = tmp_path / "a.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["body", "topic"])
        w.writerows([["multi\nline text", "sport"], ["b", "art"], ["c", "news"], ["d", "sport"]])
    raw = sources.read_csv(p, "body", "topic", "id")
    assert raw.texts[0] == "multi\nline text"
    names = sources.infer_label_names(raw)
    assert names == ("art", "news", "sport")
    np.testing.assert_array_equal(sources.resolve_labels(raw, names), [2, 0, 1, 2])
    assert raw.ids[1] == "a.csv:4"  # no id column: file name and line (the quoted newline counts)


def test_label_names_from_config_accept_names_and_indices(tmp_path):
    p = write_jsonl(
        tmp_path / "a.jsonl",
        [{"text": "x", "label": "pos"}, {"text": "y", "label": 0}, {"text": "z", "label": "1"}],
    )
    raw = sources.read_jsonl(p, "text", "label", "id")
    np.testing.assert_array_equal(sources.resolve_labels(raw, ("neg", "pos")), [1, 0, 1])


def test_integer_labels_infer_range_and_missing_class_is_error(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": 0}, {"text": "y", "label": 2}])
    raw = sources.read_jsonl(p, "text", "label", "id")
    names = sources.infer_label_names(raw)
    assert names == ("0", "1", "2")
    ds = sources.to_dataset(raw, names)
    with pytest.raises(DataError, match=r"label\(s\) \['1'\] have no examples"):
        sources.check_every_class_present(ds, str(p))


def test_unknown_label_name(tmp_path):
    p = write_jsonl(
        tmp_path / "a.jsonl", [{"text": "x", "label": "neg"}, {"text": "y", "label": "meh"}]
    )
    raw = sources.read_jsonl(p, "text", "label", "id")
    with pytest.raises(DataError, match=rf"^{p}:2: unknown label 'meh'"):
        sources.resolve_labels(raw, ("neg", "pos"))
    with pytest.raises(DataError, match=rf"{p}:1: unknown label 'neg'") as e:
        sources.resolve_labels(raw, ("a", "b"))
    assert "--config.data.label_names=()" in str(e.value)  # how to take the names from the data


def test_label_names_come_from_the_data_unless_an_imdb_config_names_them():
    import importlib

    assert tuple(importlib.import_module("configs.base").get_config().data.label_names) == ()
    for name in ("tiny", "full_6e", "full_10e", "augmented_6e", "subset_500_1e"):
        assert tuple(importlib.import_module(f"configs.{name}").get_config().data.label_names) == (
            "neg",
            "pos",
        ), name


def test_empty_file(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{p}: file is empty$"):
        sources.read_jsonl(p, "text", "label", "id")
    (tmp_path / "e.jsonl.gz").write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(DataError, match="file is empty"):
        sources.read_jsonl(tmp_path / "e.jsonl.gz", "text", "label", "id")
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        sources.read_csv(tmp_path / "h.csv", "text", "label", "id")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path}/nope.jsonl: file not found$"):
        sources.read_jsonl(tmp_path / "nope.jsonl", "text", "label", "id")


def test_missing_field_names_file_and_row(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": 0}, {"txt": "y", "label": 1}])
    with pytest.raises(DataError, match=rf"^{p}:2: missing field 'text'$"):
        sources.read_jsonl(p, "text", "label", "id")
    p2 = tmp_path / "b.csv"
    p2.write_text("text,label\nx,0\ny\n")
    with pytest.raises(DataError, match=rf"^{p2}:3: missing field 'label'$"):
        sources.read_csv(p2, "text", "label", "id")


def test_invalid_utf8_names_row(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(DataError, match=rf"^{p}:2: invalid UTF-8"):
        sources.read_jsonl(p, "text", "label", "id")
    c = tmp_path / "a.csv"
    c.write_bytes(b"text,label\nok,0\nfine,1\ncaf\xe9,1\n")
    with pytest.raises(DataError, match=rf"^{c}:4: invalid UTF-8"):
        sources.read_csv(c, "text", "label", "id")


def test_invalid_json_names_row(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "ok", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DataError, match=rf"^{p}:2: invalid JSON"):
        sources.read_jsonl(p, "text", "label", "id")


def test_text_empty_after_cleaning(tmp_path):
    texts = ["fine", "<br /><br />  "]
    assert clean_texts(texts[:1], ["f:1"], True) == ["fine"]
    assert clean_texts(["a<br />b<BR>c"], ["f:1"], True) == ["a\nb\nc"]
    assert clean_texts(["a<br />b"], ["f:1"], False) == ["a<br />b"]
    with pytest.raises(DataError, match=r"^f:2: text is empty after cleaning$"):
        clean_texts(texts, ["f:1", "f:2"], True)
    with pytest.raises(DataError, match=r"^f:1: text is empty$"):
        clean_texts([""], ["f:1"], False)


def make_aclimdb(root):
    reviews = {
        ("train", "neg"): [(2, 1, "awful"), (10, 3, "dull")],
        ("train", "pos"): [(5, 9, "lovely")],
        ("test", "neg"): [(1, 2, "meh")],
        ("test", "pos"): [(4, 8, "fun"), (0, 10, "superb")],
        ("train", "unsup"): [(0, 0, "who knows")],
    }
    for (split, label), items in reviews.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, rating, text in items:
            (folder / f"{i}_{rating}.txt").write_text(text)
    return reviews


def test_aclimdb_folder_and_tarball_agree(tmp_path):
    make_aclimdb(tmp_path / "src")
    tgz = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    for path in (tmp_path / "src", tmp_path / "src" / "aclImdb", tgz):
        train = sources.read_aclimdb(path, "train")
        assert train.texts == ["awful", "dull", "lovely"]  # sorted by (label, id)
        assert train.raw_labels == ["neg", "neg", "pos"]
        test = sources.read_aclimdb(path, "test")
        assert test.texts == ["meh", "superb", "fun"]
        np.testing.assert_array_equal(sources.resolve_labels(test, ("neg", "pos")), [0, 1, 1])
        unsup = sources.read_aclimdb(path, "unsup")
        assert unsup.texts == ["who knows"] and unsup.raw_labels == [None]
    with pytest.raises(DataError, match="file not found"):
        sources.read_aclimdb(tmp_path / "nothing", "train")


def test_aclimdb_invalid_utf8_names_file(tmp_path):
    make_aclimdb(tmp_path)
    bad = tmp_path / "aclImdb" / "train" / "pos" / "5_9.txt"
    bad.write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=rf"^{bad}: invalid UTF-8"):
        sources.read_aclimdb(tmp_path, "train")


def test_tfds_offline_error_and_local_fallback(tmp_path, monkeypatch, caplog):
    import tensorflow_datasets as tfds

    def offline(*a, **k):
        raise ConnectionError("no route to host\nsecond line")

    monkeypatch.setattr(tfds, "load", offline)
    c = get_config().data
    c.train_path = str(write_jsonl(tmp_path / "train.jsonl.gz", ROWS, gz=True))
    c.fallback_to_local = False
    with pytest.raises(
        DataError,
        match=r"^tfds imdb_reviews/train: could not load \(ConnectionError: no route to host\)$",
    ):
        read_split(c, "train")
    c.fallback_to_local = True
    with caplog.at_level("WARNING"):
        raw, names = read_split(c, "train")
    assert raw.texts == [r["text"] for r in ROWS] and names == ()
    assert "falling back to the local file" in caplog.text


def test_tfds_real_path_reads_features(monkeypatch):
    """The tfds reader maps tfds' numpy output (bytes texts, int labels, -1 = unlabeled) and label
    names."""
    import tensorflow_datasets as tfds

    class Info:
        version = "1.0.0"
        features = {"label": type("F", (), {"names": ["neg", "pos"]})()}

    def fake_load(name, split, data_dir, with_info, batch_size):
        assert (name, split, batch_size) == ("imdb_reviews", "unsupervised", -1)
        return {"text": np.array([b"a", "é".encode()]), "label": np.array([-1, 1])}, Info()

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr(tfds, "as_numpy", lambda d: d)
    raw, names = read_split(get_config().data, "unsup")
    assert raw.texts == ["a", "é"] and raw.raw_labels == [None, 1] and names == ("neg", "pos")
