"""The `--config` of eval and generate when none is given: a run's own config.json.

run.py passes `--config=<this file>:<workdir>`, so a command needs only the workdir and
`--config.eval.test_per_class=0`-style overrides still apply to the run's own settings.
"""

from gencls_jax import workdir


def get_config(run_dir: str):
    config = workdir.saved_config(run_dir)
    if config is None:
        raise FileNotFoundError(
            f"{run_dir} has no config.json: no run was trained there (run --mode=train first)"
        )
    return config
