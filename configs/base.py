"""The defaults every experiment config starts from: every config key a user can set.

Each key is declared once, with its default, its meaning and what a resumed run may change, in
gencls_jax/config_keys.py (`python run.py --help_config` prints them). Experiment configs import
`get_config()` from this file and change what their question needs; any key can be overridden
on the command line, e.g. `--config.train.epochs=12`.
"""

from gencls_jax import config_keys

get_config = config_keys.defaults
