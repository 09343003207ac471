"""Without network: one probe per process decides it, no hub call follows (no retries), the
local tokenizer is used with one warning, and a hub model that is not cached fails at once."""

import socket
import time

import pytest
from conftest import TOKENIZER_DIR

from configs.base import get_config
from gencls_jax.commands import preflight
from gencls_jax.data.tokenize import load_tokenizer
from gencls_jax.errors import DataError
from gencls_jax.model.weights import CheckpointError, load_pretrained
from gencls_jax.system import network


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every connection attempt (a DNS look-up or a connect) is recorded and fails; the offline
    variables are unset, the Hugging Face cache is empty, and the process has not probed yet.
    Yields the list of attempts."""
    from huggingface_hub import constants

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for var in network.OFFLINE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # offline() turns it on
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    network._probe.cache_clear()
    yield attempts
    network._probe.cache_clear()


@pytest.fixture
def tokenizer_dir():
    if not TOKENIZER_DIR.is_dir():
        pytest.skip(f"no GPT-2 tokenizer at {TOKENIZER_DIR}")
    return str(TOKENIZER_DIR)


def test_offline_hub_names_use_local_files_after_one_probe(no_network, tokenizer_dir, caplog):
    t0 = time.monotonic()
    with caplog.at_level("WARNING"):
        tok = load_tokenizer("gpt2", tokenizer_dir)
    with pytest.raises(CheckpointError) as e:
        load_pretrained("gpt2")
    elapsed = time.monotonic() - t0
    assert len(no_network) == 1  # the probe; no hub call, no retry
    assert elapsed < 10  # before: ~23 s of retries per look-up
    assert tok.encode_batch(["Hello world"]) == [[15496, 995]]
    why = "huggingface.co:443 unreachable: Network is unreachable"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"tokenizer 'gpt2': offline ({why}) and not in the Hugging Face cache; "
        f"using the local tokenizer at {tokenizer_dir} (data.tokenizer_fallback)"
    ]
    assert str(e.value).startswith(
        f"could not fetch 'gpt2': offline ({why}) and not in the Hugging Face cache; "
    )
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # for every later hub look-up of the process


def test_offline_variable_means_no_probe(no_network, tokenizer_dir, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level("WARNING"):
        load_tokenizer("gpt2", tokenizer_dir)
    assert no_network == [] and "offline (HF_HUB_OFFLINE is set)" in caplog.text


def test_offline_without_a_fallback_is_one_line(no_network):
    with pytest.raises(DataError, match=r"^tokenizer 'gpt2': offline \(.*\) and not in the Hug"):
        load_tokenizer("gpt2", "")


def test_probe_goes_through_the_https_proxy(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert network._probe_target() == ("proxy.example", 3128)
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    assert network._probe_target() == ("huggingface.co", 443)


def test_paths_are_never_hub_names():
    assert [network.is_hub_name(n) for n in ("gpt2", "openai-community/gpt2")] == [True, True]
    paths = ("runs/pretrain/export", "./export", "/abs/export", "~/export", "../x")
    assert not any(network.is_hub_name(n) for n in paths)


def test_offline_hub_model_not_cached_fails_before_the_data(no_network):
    c = get_config()
    c.model.init, c.model.pretrained = "pretrained", "gpt2"
    c.data.source = "tfds"  # its local files are only fallbacks: not checked
    with pytest.raises(DataError) as e:
        preflight.check_paths(c)
    assert str(e.value) == (
        "model.pretrained=gpt2: offline (huggingface.co:443 unreachable: Network is unreachable) "
        "and not in the Hugging Face cache (train configs/pretrain_unsup.py and pass "
        "--config.model.init=<its workdir>/export)"
    )
