"""gencls_jax entry point: train, evaluate, generate, report.

    python run.py --config=configs/tiny.py --workdir=runs/tiny                # train, then evaluate
    python run.py --config=configs/full_10e.py --workdir=runs/full_10e --config.train.epochs=12
    python run.py --mode=eval --workdir=runs/full_6e                          # the run's own config
    python run.py --mode=generate --config=configs/augmented_6e.py --workdir=runs/full_6e
    python run.py --mode=report --workdirs=runs/subset_500_1e,runs/full_6e,runs/augmented_6e

The same --workdir resumes an interrupted run (Ctrl-C saves a checkpoint first, then the
program exits with status 130). A workdir keeps its config: training it again with settings
that would change the model is refused, and eval/generate use the run's own config.
"""

import json
import signal
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file (configs/*.py)", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "where the run's checkpoints, metrics and reports live"
)
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "generate", "report"], "what to do")
_WORKDIRS = flags.DEFINE_list(
    "workdirs", [], "report mode: the runs to compare (the first is the baseline)"
)
_REPORT_FILE = flags.DEFINE_string(
    "report_file", "", "report mode: also write the comparison (markdown) here"
)
_WHICH = flags.DEFINE_enum(
    "checkpoint", "best", ["best", "latest"], "eval/generate: which checkpoint"
)


class _QuietLibraries:
    """Keep orbax's per-save INFO chatter out of the run log (its warnings still show)."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from gencls_jax import experiment, metrics, report

    metrics.route_logging_through_progress_bars()
    from gencls_jax import workdir as workdir_lib
    from gencls_jax.data.sources import DataError

    if _MODE.value == "report":
        if not _WORKDIRS.value:
            sys.exit("error: --mode=report needs --workdirs=run_a,run_b,...")
        missing = [w for w in _WORKDIRS.value if not Path(w).is_dir()]
        if missing:
            sys.exit(f"error: --workdirs: no such folder: {', '.join(missing)}")
        text = report.comparison_report(_WORKDIRS.value)
        print(text)
        if _REPORT_FILE.value:
            Path(_REPORT_FILE.value).write_text(text)
        return
    try:
        config = _CONFIG.value
        config is None or config.get("seed")  # the file loads lazily: touch it here
    except OSError as e:  # the config file is missing or does not load
        given = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "?")
        sys.exit(
            f"error: the config file {given} does not load "
            f"({type(e).__name__}: {str(e).splitlines()[0]})"
        )
    if config is None or not _WORKDIR.value:
        sys.exit(f"--mode={_MODE.value} needs --config=configs/<name>.py and --workdir=<folder>")
    from gencls_jax import runtime

    runtime.setup(config)
    try:
        if _MODE.value == "train":
            out = experiment.train_and_evaluate(config, _WORKDIR.value)
        else:  # the run's own config, and what the command's --config (or overrides) may change
            config, used = workdir_lib.eval_config(_WORKDIR.value, config)
            if _MODE.value == "eval":
                out = experiment.evaluate(config, _WORKDIR.value, _WHICH.value, used)
            else:
                from gencls_jax import synthetic

                out = synthetic.generate_synthetic(config, _WORKDIR.value, _WHICH.value)
    except (workdir_lib.RunError, DataError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and returns first)
        sys.exit(128 + signal.SIGINT)
    brief = {k: v for k, v in out.items() if k not in ("results",)}
    logging.info("done: %s", json.dumps(brief, default=str))
    if out.get("stop_reason") == "interrupted":  # `run.py ... && next` must not go on
        sys.exit(128 + int(out.get("signal") or signal.SIGINT))
    if "accuracy" in out:
        print(
            f"{_WORKDIR.value}: accuracy ({config.eval.decision}) = "
            f"{100 * out['accuracy']:.2f}%  -> {_WORKDIR.value}/report.md"
        )


_SAVED_CONFIG = "--config=" + str(
    Path(__file__).resolve().parent / "gencls_jax" / "saved_config.py"
)


def _flag(argv, name: str) -> str | None:
    """The value of --name=V or --name V in argv (read before absl parses it)."""
    for i, a in enumerate(argv):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def parse_flags(argv):
    """absl's parser, with an unknown or mistyped --config.* key as a one-line error. Eval and
    generate without --config read the run's own config from the workdir."""
    if (
        _flag(argv, "mode") in ("eval", "generate")
        and _flag(argv, "config") is None
        and _flag(argv, "workdir")
    ):
        workdir = _flag(argv, "workdir")
        if not (Path(workdir) / "config.json").exists():
            sys.exit(
                f"error: {workdir} has no config.json: no run was trained there "
                "(run --mode=train first)"
            )
        argv = [argv[0], f"{_SAVED_CONFIG}:{workdir}", *argv[1:]]
        sys.argv[:] = argv
    try:
        return flags.FLAGS(argv)
    except (flags.Error, OSError) as e:  # a bad value, or a config file that does not load
        sys.exit(f"error: {' '.join(str(e).split())}")
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # an unknown --config.* key
        msg = " ".join(str(e).replace("\\'", "").replace("\\n", " ").strip("'\"").split())
        sys.exit(f"error: bad --config override: {msg}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
