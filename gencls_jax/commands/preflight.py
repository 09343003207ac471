"""Every path a run needs, checked before it reads any data: a missing file or folder fails in
one line at once, not after minutes of reading and tokenizing, nor as a hub error."""

from __future__ import annotations

from pathlib import Path

from gencls_jax import conditioning
from gencls_jax.data.pipeline import split_path
from gencls_jax.errors import DataError
from gencls_jax.system import network


def check_paths(config, command: str = "train") -> None:
    """Raise one DataError naming every path of `config` that `command` ('train' | 'eval')
    needs and that is missing: the source's data files, data.val_path, data.extra_train_path,
    the tokenizer and (train) the initial model when they are paths, and a hub model that an
    offline machine does not have in its cache."""
    problems = [
        f"{key}={path}: no such {kind}"
        for key, path, kind in _paths(config, command)
        if not _FOUND[kind](Path(path))
    ]
    if command == "train":
        problems += _hub_model_offline(config.model)
    if problems:
        raise DataError("; ".join(problems))


# the data readers take a path as given; the tokenizer and model loaders expand '~'
_FOUND = {
    "file": Path.is_file,
    "file or folder": Path.exists,
    "folder": lambda p: p.expanduser().is_dir(),
}


def _paths(config, command: str) -> list[tuple[str, str, str]]:
    """(config key, path, 'file' | 'folder' | 'file or folder') of each local path the run
    reads."""
    d, m = config.data, config.model
    out = []
    if d.source in ("jsonl", "csv"):  # tfds reads its local files only when it falls back
        for split in _splits(config, command):
            out.append((f"data.{split}_path", split_path(d, split), "file"))
    if d.source == "aclimdb" and d.aclimdb_path:  # the folder or the tarball
        out.append(("data.aclimdb_path", d.aclimdb_path, "file or folder"))
    out += [(f"data.{k}", d[k], "file") for k in ("val_path", "extra_train_path") if d[k]]
    if not network.is_hub_name(d.tokenizer):
        out.append(("data.tokenizer", d.tokenizer, "folder"))
    if command == "train" and m.init not in ("scratch", "pretrained"):
        out.append(("model.init", m.init, "folder"))
    if command == "train" and m.init == "pretrained" and not network.is_hub_name(m.pretrained):
        out.append(("model.pretrained", m.pretrained, "folder"))
    return out


def _splits(config, command: str) -> list[str]:
    """The splits a run reads from its files: train, test when it is scored, and the
    pretraining splits of a run that does not classify."""
    if not conditioning.get(config.model.conditioning).classifies:
        return ["train", *(s for s in config.data.pretrain_splits if s != "train")]
    return ["train", "test"] if command == "eval" or scores_test(config) else ["train"]


def scores_test(config) -> bool:
    """Whether a training run scores the test split at its end (`eval.splits`): a run that
    reports validation only neither needs the test file nor tokenizes it."""
    return "test" in config.eval.splits


def _hub_model_offline(m) -> list[str]:
    """A hub model that cannot be had: offline, and not in the Hugging Face cache."""
    name = m.pretrained
    if m.init != "pretrained" or Path(name).expanduser().is_dir() or not network.is_hub_name(name):
        return []
    offline = network.offline()
    if not offline:
        return []
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return []
    return [
        f"model.pretrained={name}: offline ({offline}) and not in the Hugging Face cache "
        "(train configs/pretrain_unsup.py and pass --config.model.init=<its workdir>/export)"
    ]
