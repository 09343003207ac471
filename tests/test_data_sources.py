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
from gencls_jax.errors import DataError


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
    with pytest.raises(DataError, match=rf"^{p}:1: unknown label 'neg'; label names are .*\)$"):
        sources.resolve_labels(raw, ("a", "b"), "")  # no origin given: no parenthesis
    with pytest.raises(DataError, match=rf"{p}:1: unknown label 'neg'; .* \(data.label_names\)$"):
        sources.resolve_labels(raw, ("a", "b"), "data.label_names")


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


# --- tfds: its numpy data source, read without tensorflow; a fallback is one line -------------


def tfds_config(tmp_path, fallback: bool):
    c = get_config().data
    c.train_path = str(write_jsonl(tmp_path / "train.jsonl.gz", ROWS, gz=True))
    c.tfds_data_dir = str(tmp_path / "tfds")  # nothing prepared there
    c.fallback_to_local = fallback
    return c


def test_tfds_reads_the_prepared_dataset_through_our_reader(capfd):
    """`tfds.testing.mock_data` stands for a prepared imdb_reviews: data.source='tfds' reads it
    (no fallback, no tensorflow needed), with the label names of the dataset's info."""
    tfds = pytest.importorskip("tensorflow_datasets")
    c = get_config().data
    c.fallback_to_local = False
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        raw, names = read_split(c, "train")
    assert names == ("neg", "pos") and len(raw.texts) == 7
    assert all(isinstance(t, str) and t for t in raw.texts)
    assert set(raw.raw_labels) <= {0, 1}
    assert raw.where[6] == "tfds imdb_reviews/train:6" and raw.ids[6] == "train:6"
    assert raw.source == {"tfds": "imdb_reviews", "version": "1.0.0", "split": "train"}
    assert capfd.readouterr().out == ""


def test_tfds_examples_map_to_texts_and_labels():
    """tfds' examples (bytes texts, int labels, -1 = unlabeled) -> a RawSplit."""
    tfds = pytest.importorskip("tensorflow_datasets")
    examples = [{"text": b"a", "label": -1}, {"text": "é".encode(), "label": 1}]

    def source(builder, split, **kw):
        assert split == "unsupervised"
        return examples

    with tfds.testing.mock_data(as_data_source_fn=source):
        raw, names = read_split(get_config().data, "unsup")
    assert raw.texts == ["a", "é"] and raw.raw_labels == [None, 1] and names == ("neg", "pos")


def _no_tensorflow(monkeypatch):
    find_spec = sources.importlib.util.find_spec
    monkeypatch.setattr(
        sources.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else find_spec(name, *a),
    )


def test_tfds_not_prepared_without_tensorflow_falls_back_in_one_line(
    tmp_path, monkeypatch, caplog, capfd
):
    """Not prepared and no tensorflow to prepare it: one line says what to install, nothing is
    downloaded, nothing goes to stdout; with data.fallback_to_local the local file is read."""
    pytest.importorskip("tensorflow_datasets")
    _no_tensorflow(monkeypatch)
    c = tfds_config(tmp_path, fallback=False)
    with pytest.raises(DataError) as e:
        read_split(c, "train")
    assert str(e.value) == (
        f"tfds imdb_reviews/train: not prepared in {tmp_path}/tfds/imdb_reviews/plain_text/1.0.0 "
        "(preparing it needs tensorflow: pip install 'gencls_jax[tfds]')"
    )
    c.fallback_to_local = True
    with caplog.at_level("WARNING"):
        raw, names = read_split(c, "train")
    assert raw.texts == [r["text"] for r in ROWS] and names == ()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"{e.value}; reading the local file {c.train_path} instead (data.fallback_to_local)"
    ]
    assert capfd.readouterr().out == ""


def test_tfds_offline_does_not_download(tmp_path, monkeypatch):
    """With tensorflow but no network, tfds is not asked to download (no retries): one line."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from gencls_jax.system import network

    find_spec = sources.importlib.util.find_spec
    monkeypatch.setattr(  # tensorflow "installed"
        sources.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "tensorflow" else find_spec(name, *a),
    )
    monkeypatch.setattr(network, "offline", lambda: "no route to host")

    def download(*a, **k):
        raise AssertionError("download_and_prepare called offline")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download)
    with pytest.raises(DataError, match=r"not prepared in .* \(offline: no route to host\)$"):
        read_split(tfds_config(tmp_path, fallback=False), "train")


# --- errors that name the right file and say the right thing ----------------------------------


def _tiny_tok():
    from gencls_jax.data.tokenize import Tokenizer

    return Tokenizer(lambda texts: [[1] * len(t.split()) for t in texts], "words", 0, 0)


def files_config(tmp_path, train_rows, test_rows, label_names=()):
    c = get_config()
    c.data.source = "jsonl"
    c.data.train_path = str(write_jsonl(tmp_path / "train.jsonl", train_rows))
    c.data.test_path = str(write_jsonl(tmp_path / "test.jsonl", test_rows))
    c.data.label_names = label_names
    c.data.val_size = 1
    c.data.cache_dir = ""
    return c


def rows_of(labels):
    return [{"text": f"text {i}", "label": v} for i, v in enumerate(labels)]


def test_one_class_training_set_is_blamed_on_the_training_file(tmp_path):
    from gencls_jax.data.pipeline import load_datasets

    c = files_config(tmp_path, rows_of(["pos"] * 4), rows_of(["neg", "pos"]))
    with pytest.raises(DataError) as e:
        load_datasets(c, tokenizer=_tiny_tok())
    assert str(e.value) == (
        f"{c.data.train_path}: every text has the label 'pos': "
        "a classifier needs at least 2 classes"
    )
    # unconditional pretraining ignores the labels: one is fine there
    out = load_datasets(c, ("train", "val"), _tiny_tok(), min_classes=1)
    assert len(out["train"]) + len(out["val"]) == 4


def test_an_empty_class_names_the_file_not_its_size_and_mtime(tmp_path):
    from gencls_jax.data.pipeline import load_datasets

    c = files_config(tmp_path, rows_of([1, 1, 1]), rows_of([0, 1]))
    with pytest.raises(DataError) as e:
        load_datasets(c, tokenizer=_tiny_tok())
    assert str(e.value) == (
        f"{c.data.train_path}: label(s) ['0'] have no examples (counts {{'0': 0, '1': 3}})"
    )


def test_unknown_label_hint_says_where_the_names_came_from(tmp_path):
    """The `label_names=()` hint only where the names came from the config; names taken from
    the training data say so."""
    from gencls_jax.data.pipeline import load_datasets

    c = files_config(tmp_path, rows_of(["neg", "pos"] * 2), rows_of(["pos", "meh"]))
    with pytest.raises(DataError) as e:
        load_datasets(c, tokenizer=_tiny_tok())
    assert str(e.value) == (
        f"{c.data.test_path}:2: unknown label 'meh'; label names are ('neg', 'pos') "
        f"(the labels of {c.data.train_path})"
    )
    c.data.label_names = ("neg", "pos")
    with pytest.raises(DataError) as e:
        load_datasets(c, tokenizer=_tiny_tok())
    assert str(e.value).endswith(
        "(data.label_names; --config.data.label_names=() takes them from the training data)"
    )


def test_file_format_comes_from_the_name_whatever_the_source(tmp_path):
    """A .csv train, val or extra file is read as csv under data.source='jsonl' (and a .jsonl
    one as jsonl under 'csv'); a name that says nothing is read as the source says."""
    from gencls_jax.data.pipeline import load_datasets

    def csv_file(path, labels):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([[f"csv text {i}", v] for i, v in enumerate(labels)])
        return str(path)

    c = files_config(tmp_path, rows_of(["neg", "pos"]), rows_of(["neg", "pos"]))
    c.data.train_path = csv_file(tmp_path / "train.csv", ["neg", "pos", "neg", "pos"])
    c.data.val_path = csv_file(tmp_path / "dev.CSV.gz", ["pos", "neg"])
    c.data.extra_train_path = csv_file(tmp_path / "extra.csv", ["pos"])
    raw, _ = read_split(c.data, "train")
    assert raw.texts[3] == "csv text 3" and raw.raw_labels == ["neg", "pos", "neg", "pos"]
    out = load_datasets(c, tokenizer=_tiny_tok())
    assert out["val"].texts == ["csv text 0", "csv text 1"]
    assert out["train"].texts[-1] == "csv text 0" and out["train"].origin[-1] == "synthetic"
    c.data.source = "csv"
    c.data.train_path = str(write_jsonl(tmp_path / "t.jsonl", ROWS))
    assert read_split(c.data, "train")[0].texts == [r["text"] for r in ROWS]
    c.data.source = "jsonl"
    c.data.train_path = str(write_jsonl(tmp_path / "train.data", ROWS))  # the name says nothing
    assert read_split(c.data, "train")[0].texts == [r["text"] for r in ROWS]


def test_format_by_name():
    cases = {
        "a.jsonl": "jsonl",
        "a.JSON.gz": "jsonl",
        "b.ndjson": "jsonl",
        "c.csv.gz": "csv",
        "d.txt": "txt",
        "e.text": "txt",
        "f.tsv": None,
        "g": None,
    }
    assert {n: sources.format_by_name(n) for n in cases} == cases
