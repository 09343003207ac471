"""The pure jitted scorer of a loaded run (`GenerativeClassifier.scorer`) against its
`log_likelihoods`, for per_class and label_prefix runs, with and without a compact vocabulary,
with long texts truncated or windowed; the run's BOS where it is recorded (run_info.json, the
exported Hugging Face config; sampling reads the loaded model config's), runs written before
that was so, and empty input.

The runs are written in-process as training writes them (train.initial_model, run_info,
a params checkpoint) with random tiny parameters: equality needs no training."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from conftest import TOKENIZER_DIR

from configs.base import get_config
from gencls_jax import conditioning
from gencls_jax.classifier import GenerativeClassifier
from gencls_jax.commands import train
from gencls_jax.data import compact
from gencls_jax.data.pipeline import label_prefixes, tokenize_dataset
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import load_tokenizer
from gencls_jax.model.weights import hf_config_dict
from gencls_jax.runs import workdir as wd
from gencls_jax.runs.checkpoint import Checkpointer
from gencls_jax.scoring.score import stack_params

pytestmark = pytest.mark.skipif(not TOKENIZER_DIR.is_dir(), reason=f"no {TOKENIZER_DIR}")

NAMES = ("neg", "pos")
MAX_LEN = 64
# The training texts the compact vocabulary is counted on (32 distinct ids); 20 leave words of
# them and of the scored texts below as the shared 'other' id.
TRAIN = [
    "A wonderful film, a wonderful cast.",
    "Two hours I will never get back. Dull and long.",
    "The film was good and the cast was good.",
    "Bad film, bad plot, bad acting.",
]
TEXTS = [
    "A wonderful film.",
    "Two hours I will never get back.<br />Never again.",
    "Mediocre cinematography, a dull plot",
    "Meh",
]


def run_config(conditioning_name: str, compact_vocab: int, long_text: str, tmp_path):
    c = get_config()
    c.model.size, c.model.init, c.model.dtype = "tiny", "scratch", "float32"
    c.model.conditioning = conditioning_name
    d = c.data
    d.tokenizer = str(TOKENIZER_DIR)
    d.source = "jsonl"
    d.cache_dir = str(tmp_path / "cache")
    d.label_names = NAMES
    d.compact_vocab = compact_vocab
    d.max_len, d.bucket_lengths, d.long_text, d.window_stride = MAX_LEN, (MAX_LEN,), long_text, 16
    c.eval.batch_size = 4
    c.progress_bars = False
    return c


_INITIAL: dict = {}


def initial_model(config, tok):
    """`train.initial_model`, once per vocabulary (size, BOS): all it depends on here, and
    an eager Flax init of a 50,257-id model takes seconds."""
    key = (tok.vocab_size, tok.bos_id)
    if key not in _INITIAL:
        _INITIAL[key] = train.initial_model(config, tok)
    return _INITIAL[key]


def write_run(config, folder, tok):
    """A run folder as training leaves it: config.json, run_info.json, a checkpoint of random
    params. Returns the model config training would use."""
    cond = conditioning.get(config.model.conditioning)
    raw = Dataset(TRAIN, np.array([1, 0, 1, 0]), ["a", "b", "c", "d"], np.full(4, "real"), NAMES)
    if config.data.compact_vocab > 0:  # as conditioning.load_data does
        train = tokenize_dataset(config, raw, tok, cache=False)
        always = cond.reserved_ids(config, tok, NAMES)
        tok, _, _ = compact.apply({"train": train}, tok, config.data.compact_vocab, None, always)
    model_config, params = initial_model(config, tok)
    if cond.stacked:  # two different class models
        params = stack_params([params, jax.tree_util.tree_map(lambda x: 2.0 * x, params)])
    info = dict(
        conditioning=cond.name,
        label_names=list(NAMES),
        model=dataclasses.asdict(model_config),
        train_class_counts=[3, 1],
    )
    if config.data.compact_vocab > 0:
        info["compact_vocab_ids"] = list(tok.compact_ids)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config.to_json_best_effort())
    wd.write_run_info(folder, info)
    ckpt = Checkpointer(folder / "checkpoints", keep=1, best_metric="", async_save=False)
    ckpt.save(1, {"params": params}, {})
    ckpt.close()
    return model_config


@pytest.fixture(scope="module")
def gpt2_tok():
    return load_tokenizer(str(TOKENIZER_DIR))


@pytest.fixture(scope="module", params=["per_class", "label_prefix"])
def conditioning_name(request):
    return request.param


def written_run(conditioning_name, compact_vocab, gpt2_tok, tmp_path_factory):
    """(workdir, the model config training made, the run loaded, its scorer jitted) of a run
    written by the code under test."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    config = run_config(conditioning_name, compact_vocab, "truncate", folder.parent)
    model_config = write_run(config, folder, gpt2_tok)
    clf = GenerativeClassifier.load(folder)
    return folder, model_config, clf, jax.jit(clf.scorer)


@pytest.fixture(scope="module", params=[0, 20], ids=["gpt2_vocab", "compact20"])
def run(request, conditioning_name, gpt2_tok, tmp_path_factory):
    return written_run(conditioning_name, request.param, gpt2_tok, tmp_path_factory)


@pytest.fixture(scope="module")
def compact_run(conditioning_name, gpt2_tok, tmp_path_factory):
    """A compact-vocabulary run (where a BOS of 50256 is outside the vocabulary)."""
    return written_run(conditioning_name, 20, gpt2_tok, tmp_path_factory)


def with_long_text(clf, long_text: str):
    """The loaded run with data.long_text changed (an eval-time setting)."""
    other = copy.copy(clf)
    other.config = clf.config.copy_and_resolve_references()
    other.config.data.long_text = long_text
    return other


def text_room(clf) -> int:
    """Text tokens a row holds: data.max_len less the EOS and the longest label prefix."""
    d = clf.config.data
    prefixes = label_prefixes(clf.tokenizer, d.label_prefix_template, clf.label_names)
    longest = max(len(p) for p in prefixes) if clf.conditioning.name == "label_prefix" else 0
    return MAX_LEN - int(d.append_eos) - longest


@pytest.mark.parametrize("long_text", ["truncate", "window"])
def test_jitted_scorer_equals_log_likelihoods(run, long_text):
    """Every mode x vocabulary x long_text: the scorer jitted as a user would, on texts within the
    context (the longest a row holds whole among them), gives log_likelihoods' numbers (a
    compact run's scorer gave NaN: its BOS was GPT-2's 50256, outside the 21-id vocabulary)."""
    _, _, clf, scorer = run  # the scorer reads no data.long_text: one compilation for both
    clf = with_long_text(clf, long_text)
    assert clf.model_config.bos_token_id == clf.tokenizer.bos_id < clf.model_config.vocab_size
    texts = [*TEXTS, " ".join(["film"] * text_room(clf))]  # ' film' is one token
    tokens, mask = clf.encode(texts)
    assert tokens.shape[1] == text_room(clf)
    if clf.config.data.compact_vocab:
        assert (tokens[mask == 1] == clf.tokenizer.vocab_size - 1).any()  # some words are 'other'
    ll = clf.log_likelihoods(texts)
    assert np.isfinite(ll).all() and ll.shape == (len(texts), 2)
    np.testing.assert_allclose(scorer(clf.params, tokens, mask), ll, rtol=1e-5)


def test_scorer_refuses_texts_longer_than_the_rows(run):
    """A text one token past the rows' room fits the model's positions (256) but not what the run
    scores (data.long_text cuts or windows it): a ValueError that names log_likelihoods, not a
    number that differs from it."""
    _, _, clf, scorer = run
    t, m = clf.encode(" ".join(["film"] * (text_room(clf) + 1)))
    assert t.shape[1] == text_room(clf) + 1 < clf.model_config.n_positions
    with pytest.raises(ValueError, match=r"more than its rows' 64 \(data.max_len\).*log_likeli"):
        scorer(clf.params, t, m)


def test_training_model_config_and_export_name_the_tokenizers_bos(run):
    """run_info.json (what eval reloads) and the exported Hugging Face config.json carry the
    tokenizer's BOS/EOS: a compact run's is its own id, not GPT-2's 50256."""
    folder, model_config, clf, _ = run
    bos = clf.tokenizer.bos_id
    assert bos == (0 if clf.config.data.compact_vocab else 50256)
    assert json.loads((folder / "run_info.json").read_text())["model"]["bos_token_id"] == bos
    hf = hf_config_dict(model_config)
    assert hf["bos_token_id"] == hf["eos_token_id"] == clf.tokenizer.eos_id == bos


def test_empty_input(run):
    _, _, clf, _ = run
    assert clf.predict([]) == []
    assert clf.log_likelihoods([]).shape == (0, 2)


def test_run_written_with_the_old_bos_scores_right(compact_run, tmp_path):
    """A compact run trained before issue 28 says bos_token_id 50256 in run_info.json: loaded,
    its model takes the BOS of the run's tokenizer, and scores as its rows do."""
    folder = compact_run[0]
    shutil.copytree(folder, tmp_path / "old")
    info = json.loads((tmp_path / "old" / "run_info.json").read_text())
    info["model"]["bos_token_id"] = 50256  # as every run before issue 28 had
    (tmp_path / "old" / "run_info.json").write_text(json.dumps(info))
    assert info["model"]["vocab_size"] == 21
    clf = GenerativeClassifier.load(tmp_path / "old")
    assert clf.model_config.bos_token_id == clf.tokenizer.bos_id == 0
    tokens, mask = clf.encode(TEXTS)
    ll = clf.log_likelihoods(TEXTS)
    assert np.isfinite(ll).all()
    np.testing.assert_allclose(jax.jit(clf.scorer)(clf.params, tokens, mask), ll, rtol=1e-5)
