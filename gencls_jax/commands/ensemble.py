"""`--mode=eval --workdirs=a,b,c --workdir=OUT`: an ensemble of trained runs of one task,
evaluated as one run into a new folder OUT.

Members may differ in seed, conditioning, objective and model size, not in task: the same
label names, data files (sha256) and data settings (`check_same_task`). Each member scores
the texts with its own config, vocabulary and best (or latest) checkpoint through eval's own
scoring (`evaluate.score_splits`), so its log-likelihoods are those its own --mode=eval
writes. The ensemble's log p(text | c) is their float64 mean, a product of experts
(`classifier.mean_log_likelihoods` says why); everything after scoring is eval's own
(`evaluate.evaluate_scored`): the decision rules, the calibrated offsets, the temperatures,
the OOD threshold and the n-gram expert (the first member's settings, counted on its training
texts), all fitted on the ensemble's validation scores.

Texts are matched by (id, text). A member holds out its validation texts by its seed
(`data/splits.py`), so members of other seeds hold out other texts, and each has trained on
some of the others'. A text that every member held out is one none trained on: the ensemble
fits on the intersection of the members' validation texts (all of them when the members share
a seed or `data.val_path`) and tests on the intersection of their test texts (all of them
unless `eval.test_per_class` samples by seed); metrics.json's `ensemble.texts` says how many.
No validation text in common is refused. OUT gets eval's files and run_info.json (the members
by path) and config.json (the first member's): `--mode=predict --workdir=OUT` and
`GenerativeClassifier.load(OUT)` use the ensemble (`classifier.EnsembleClassifier`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import logging

from gencls_jax import conditioning
from gencls_jax.classifier import mean_log_likelihoods
from gencls_jax.commands import evaluate
from gencls_jax.errors import DataError, RunError
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import decide
from gencls_jax.system import fileio

# What makes two runs one task's: the data they read and how (besides the files' sha256).
TASK_KEYS = (
    "data.source",
    "data.tfds_name",
    "data.train_path",
    "data.val_path",
    "data.test_path",
    "data.extra_train_path",
    "data.text_field",
    "data.label_field",
    "data.clean_html",
    "data.per_class_limit",
    "data.val_size",
    "data.added_classes",
)
SPLITS = ("val", "test")  # what an ensemble scores (no train sample: members train apart)


def member_configs(workdirs) -> list:
    """Each member's own config (config.json); a missing folder or one without a run is a
    one-line error."""
    missing = [w for w in workdirs if not Path(w).is_dir()]
    if missing:
        raise RunError(f"--workdirs: no such folder: {', '.join(missing)}")
    configs = []
    for w in workdirs:
        config = rules.saved_config(w)
        if config is None:
            raise RunError(f"--workdirs: {w} has no config.json: no run was trained there")
        configs.append(config)
    return configs


def _data_files(info: dict) -> dict:
    """{split: sorted sha256 of its files} of a run_info.json (a tfds build: its sources)."""
    return {
        s: sorted(str(x.get("sha256", x)) for x in srcs)
        for s, srcs in info.get("data", {}).items()
        if s in ("train", "val", "test")
    }


def check_same_task(workdirs, configs, infos) -> None:
    """One-line RunError naming the first difference between a member and the first one in
    label names, data files, data settings (`TASK_KEYS`), or a generative run mixed with a
    classification head (whose scores are posteriors, not likelihoods)."""
    a, c0, i0 = workdirs[0], rules.flatten(configs[0]), infos[0]
    for w, c, info in zip(workdirs[1:], configs[1:], infos[1:]):
        flat = rules.flatten(c)
        diffs = [
            ("label names", i0["label_names"], info["label_names"]),
            ("class counts of the training texts", *(x["train_class_counts"] for x in (i0, info))),
            (
                "generative",
                *(conditioning.get(x["conditioning"]).generative for x in (i0, info)),
            ),
            *((k, c0.get(k), flat.get(k)) for k in TASK_KEYS),
            *(
                (f"{s} data (sha256)", _data_files(i0).get(s), _data_files(info).get(s))
                for s in ("train", "test")
            ),
        ]
        for what, x, y in diffs:
            if x != y:
                raise RunError(
                    f"--workdirs: {w} is not a run of {a}'s task: {what} {x!r} vs {y!r}; an "
                    "ensemble's members differ only in how they model it (seed, conditioning, "
                    "objective, size)"
                )


def check_new(out: Path) -> None:
    """The ensemble's folder must hold no run: its files would mix with another's."""
    held = [n for n in ("config.json", "run_info.json", "metrics.json") if (out / n).exists()]
    if held:
        raise RunError(f"--workdir={out} already holds {held[0]}: give the ensemble a new folder")


def common_rows(parts) -> list[np.ndarray]:
    """Per member, the rows of its split holding the texts (id, text) every member has, in the
    first member's order."""
    keys = [list(zip(d.ids, d.texts)) for d in parts]
    shared = set(keys[0]).intersection(*keys[1:])
    order = [k for k in keys[0] if k in shared]
    out = []
    for ks in keys:
        where = {k: i for i, k in enumerate(ks)}
        out.append(np.array([where[k] for k in order], np.int64))
    return out


def member_summary(workdir, config, scored: dict, prior) -> dict:
    """metrics.json's line of one member: its own eval's accuracy (its metrics.json, its decision
    rule, its own texts) and its Bayes-rule accuracy on the ensemble's texts."""
    path = Path(workdir) / "metrics.json"
    own = json.loads(path.read_text()) if path.exists() else {}
    rule = own.get("decision", config.eval.decision)
    return dict(
        workdir=str(Path(workdir).resolve()),
        conditioning=config.model.conditioning,
        objective=config.train.objective,
        size=config.model.size,
        seed=int(config.seed),
        own_accuracy={
            s: own.get("results", {}).get(s, {}).get(rule, {}).get("accuracy") for s in SPLITS
        },
        own_rule=rule,
        accuracy_bayes={
            s: float(np.mean(decide.scores(ll, n, "bayes", prior).argmax(1) == d.labels))
            for s, (d, ll, n) in scored.items()
        },
    )


def evaluate_ensemble(
    workdirs, out: str | Path, which: str = "best", config=None, search: dict | None = None
) -> dict:
    """Score val and test with every member of `workdirs`, average, then evaluate the mean as
    one run's eval does, into the new folder `out` (see the module's docstring). A search's
    ensemble (`commands/search.py`, search.ensemble > 1) passes its `config` (its eval settings,
    `out`'s config.json) and its `search` record (into metrics.json): `out` is its workdir,
    which holds its config.json, and its evaluation once made."""
    out = Path(out)
    if search is None:
        check_new(out)
    configs = member_configs(workdirs)
    config = configs[0] if config is None else config
    infos = [wd.read_run_info(Path(w)) for w in workdirs]
    check_same_task(workdirs, configs, infos)
    data = []
    for w, c, info in zip(workdirs, configs, infos):
        rules.check_data(w, c)
        data.append(conditioning.load_data(c, splits=("train", *SPLITS), info=info))
    splits = [s for s in SPLITS if s in config.eval.splits and all(s in d for _, d in data)]
    rows = {s: common_rows([d[s] for _, d in data]) for s in splits}
    if "val" in rows and len(rows["val"][0]) == 0:
        raise DataError(
            "--workdirs: the members hold out no validation text in common (other seeds: "
            f"{sorted({int(c.seed) for c in configs})}), and the ensemble is fitted only on texts "
            "none trained on: train them with one data.val_path or one seed"
        )
    per_member, members, timings = [], [], {}
    for w, c, info, (tok, ds) in zip(workdirs, configs, infos, data):
        run = load.load_run(c, w, which)
        cond = conditioning.get(info["conditioning"])
        part = {s: ds[s].subset(rows[s][len(per_member)]) for s in splits}
        # its own settings on the ensemble's splits (a search's candidate scored val alone)
        own = c.copy_and_resolve_references()
        own.eval.splits = tuple(splits)
        scored, t = evaluate.score_splits(
            own, cond, run.params, run.model_config, tok, part, len(info["label_names"])
        )
        timings = {s: timings.get(s, 0.0) + t[s] for s in t}
        prior = decide.prior_for(cond, info["train_class_counts"])
        members.append(member_summary(w, c, scored, prior))
        per_member.append(scored)
        del run
    first = per_member[0]
    scored = {
        s: (d, mean_log_likelihoods([m[s][1] for m in per_member]), n)
        for s, (d, _, n) in first.items()
    }
    texts = {s: dict(used=len(r[0]), members=[len(d[s]) for _, d in data]) for s, r in rows.items()}
    for s, n in texts.items():
        if n["used"] < max(n["members"]):
            logging.warning("ensemble %s: %d texts every member has, of %s", s, n["used"], n)
    info = {**infos[0], "ensemble": dict(members=[m["workdir"] for m in members], checkpoint=which)}
    if wd.is_lead():
        wd.write_run_info(out, info)
        fileio.write_text(out / "config.json", config.to_json_best_effort(indent=2))
    wd.append_history(out, "eval", checkpoint=which, members=info["ensemble"]["members"])
    summary = dict(ensemble=dict(members=members, texts=texts, rule="mean log-likelihood"))
    if search is not None:
        summary["search"] = search
    return evaluate.evaluate_scored(config, out, info, data[0][1], scored, timings, summary)
