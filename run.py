"""gencls_jax entry point: train, evaluate, generate, report, predict, explain.

    python run.py --config=configs/tiny.py --workdir=runs/tiny                # train, then evaluate
    python run.py --config=configs/full_10e.py --workdir=runs/full_10e --config.train.epochs=12
    python run.py --mode=eval --workdir=runs/full_6e                          # the run's own config
    python run.py --mode=generate --config=configs/augmented_6e.py --workdir=runs/full_6e
    python run.py --mode=report --workdirs=runs/subset_500_1e,runs/full_6e,runs/augmented_6e
    python run.py --mode=predict --workdir=runs/full_6e --input=new.jsonl --output=labels.jsonl
    python run.py --mode=explain --workdir=runs/full_6e --text="A wonderful film."

The program is `gencls_jax.cli` (also installed as the `gencls` command); see its docstring.
"""

from gencls_jax import cli

if __name__ == "__main__":
    cli.main()
