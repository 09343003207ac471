"""Augmented: do synthetic reviews from our own class models help? (original: 87.5% vs 90.1%)

Step 1 (generate): sample N reviews per class from a finished full_6e run's class models
    python run.py --mode=generate --config=configs/augmented_6e.py --workdir=runs/full_6e
writes runs/full_6e/synthetic.jsonl. Step 2 (train): merge them into train and retrain
    python run.py --config=configs/augmented_6e.py --workdir=runs/augmented_6e
and `--mode=report --workdirs=runs/full_6e,runs/augmented_6e` compares the two.
"""

from configs import full_6e


def get_config():
    c = full_6e.get_config()
    c.data.extra_train_path = "runs/full_6e/synthetic.jsonl"
    c.generate.per_class = 2000
    return c
