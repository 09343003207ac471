"""Shared fixtures: a tiny random Hugging Face GPT-2 saved to disk, and the ../shared paths.
In CI every test must run: there a skip (no ../shared/data, no torch) is a failure."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENCLS_SHARED", REPO.parent / "shared"))
TOKENIZER_DIR = SHARED / "data" / "gpt2-tokenizer"
IMDB_DIR = SHARED / "data" / "imdb"

TINY_HF = dict(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=4)


@pytest.fixture(scope="session")
def hf_tiny_dir(tmp_path_factory):
    """A random transformers.GPT2LMHeadModel (2 layers, width 64), saved as safetensors."""
    torch = pytest.importorskip("torch")
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**TINY_HF, bos_token_id=999, eos_token_id=999)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a swapped tensor shows
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("hf_tiny")
    model.save_pretrained(folder)
    return folder


def damage_checkpoint(step_dir: Path) -> None:
    """Every data file of a checkpoint step cut in half: which OCDBT file holds the params (vs.
    the optimizer state) depends on the writer threads, so the largest alone may leave them
    intact for a params-only restore."""
    for p in step_dir.rglob("*"):
        if p.is_file() and p.stat().st_size > 1024:
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


# CI runs every test: `.ci/run` sets CI=true (as GitHub Actions and GitLab CI do), and there a
# test that would skip fails instead, with its reason. A local run without ../shared skips them.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def _skip_is_failure(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI={os.environ['CI']}), where every test must run: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip
    _skip_is_failure(outcome.get_result())
