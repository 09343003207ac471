"""The decision objective and the discriminative head against float64 NumPy references, its
joint step against the per-model LM step, sliced batches, and the small-data protocol."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.base import get_config
from gencls_jax.data.batching import BatchSpec, SlicedStream
from gencls_jax.data.rows import make_rows
from gencls_jax.errors import DataError, RunError
from gencls_jax.model import gpt2 as M
from gencls_jax.model.weights import load_pretrained
from gencls_jax.scoring import score
from gencls_jax.scoring.score import stack_params
from gencls_jax.system import sharding
from gencls_jax.training import loop as T
from gencls_jax.training import objectives
from gencls_jax.training import step as TS

torch = pytest.importorskip("torch")
import transformers  # noqa: E402
from conftest import REPO  # noqa: E402

BOS = 999  # the tiny fixture model's <|endoftext|>
PREFIXES = ([5, 6, 7], [8])  # two classes' label prefixes of unequal length


@pytest.fixture(scope="module")
def tiny(hf_tiny_dir):
    config, params = load_pretrained(hf_tiny_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_tiny_dir).eval().double()
    return config.replace(dropout=0.0), params, hf


def texts(seed, lengths):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 999, size=n).tolist() for n in lengths]


def sliced(toks, labels, prefixes, batch=4, max_len=32, scheme="pad"):
    """One epoch's batches of the slices (class k = the texts with prefixes[k]) and labels."""
    slices = tuple(
        make_rows(toks, max_len, BOS, "truncate", None, None, [p] * len(toks), None, 3)
        for p in prefixes
    )
    return SlicedStream(slices, np.asarray(labels), BatchSpec(scheme, batch, max_len, (16, 32)), 0)


def ref_log_probs(hf, inputs, targets):
    with torch.no_grad():
        logits = hf(torch.tensor([list(inputs)], dtype=torch.long)).logits[0].numpy()
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp[np.arange(len(targets)), np.asarray(targets)]


def test_decision_sums_match_float64_reference(tiny):
    """log p(x|c) of every class (its prefix conditions, the text is scored), the LM sum of the
    true class and the cross-entropy of softmax_c(log p(x|c) + log p(c)), in float64."""
    config, params, hf = tiny
    toks, labels = texts(1, [9, 20, 3, 14]), [0, 1, 1, 0]
    batch = next(iter(sliced(toks, labels, PREFIXES).batches(0)))
    prior = np.log([0.3, 0.7])
    objective = objectives.DecisionObjective(1.0, 1.0, tuple(prior), stacked=False)
    got = {k: float(np.sum(v)) for k, v in objective.sums(params, batch, config, None).items()}
    order = batch["labels"]  # the batch's rows in the epoch's shuffled order
    ll = np.zeros((4, 2))
    for b in range(4):
        row = batch["targets"][0, b]
        i = next(j for j, t in enumerate(toks) if row[3 : 3 + len(t)].tolist() == t)
        for c, p in enumerate(PREFIXES):
            seq = p + toks[i]
            lp = ref_log_probs(hf, [BOS] + seq[:-1], seq)
            ll[b, c] = lp[len(p) :].sum()
    scores = ll + prior
    top = scores.max(1, keepdims=True)
    logp = scores - top - np.log(np.exp(scores - top).sum(1, keepdims=True))
    np.testing.assert_allclose(got["ce"], -sum(logp[b, order[b]] for b in range(4)), rtol=1e-4)
    np.testing.assert_allclose(got["nll"], -sum(ll[b, order[b]] for b in range(4)), rtol=1e-4)
    assert got["weight"] == sum(len(toks[i]) for i in range(4))
    assert got["texts"] == 4 and got["correct"] == sum(
        scores[b].argmax() == order[b] for b in range(4)
    )


def test_decision_step_with_lambda_0_is_the_lm_step_on_the_true_class(tiny):
    """label_prefix, lambda = 0: the joint step trains exactly what the LM objective trains on
    the true class's prefixed rows (same update, to float tolerance)."""
    config, params, _ = tiny
    toks, labels = texts(2, [9, 20, 3, 14]), [0, 1, 1, 0]
    batch = next(iter(sliced(toks, labels, PREFIXES).batches(0)))
    true = {k: v[batch["labels"], np.arange(4)] for k, v in batch.items() if k != "labels"}
    c = get_config()
    c.train.decision_weight, c.train.warmup_steps, c.train.grad_clip = 0.0, 0, 0.0
    tc = ml_collections.FrozenConfigDict(c.train)
    joint = objectives.DecisionObjective(1.0, 0.0, (0.0, 0.0), stacked=False)
    mesh = sharding.make_mesh()

    def one_step(objective, b):
        tx, step = TS.compiled_train_step(config, tc, False, 10, mesh, objective)
        state = TS.init_state(jax.tree_util.tree_map(jnp.array, params), tx, tc, 0, None)
        new, m = step(state, b)
        return new.params, m

    p_joint, m_joint = one_step(joint, batch)
    p_lm, m_lm = one_step(objectives.LMObjective(stacked=False, packed=False), true)
    np.testing.assert_allclose(np.sum(m_joint["nll"]), np.sum(m_lm["nll"]), rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p_joint, p_lm
    )


def test_decision_step_accumulates_like_one_batch_and_stacks_classes(tiny):
    """per_class (K stacked models, every model reads every text), grad_accum 2 == 1."""
    config, params, _ = tiny
    stacked = stack_params([params, jax.tree_util.tree_map(lambda x: x * 1.01, params)])
    toks, labels = texts(3, [9, 20, 3, 14]), [0, 1, 1, 0]
    rows = make_rows(toks, 32, BOS, "truncate")
    batch = next(
        iter(
            SlicedStream((rows, rows), np.asarray(labels), BatchSpec("pad", 4, 32, ()), 0).batches(
                0
            )
        )
    )
    joint = objectives.DecisionObjective(1.0, 1.0, (0.0, 0.0), stacked=True)
    out = []
    for accum in (1, 2):
        c = get_config()
        c.train.grad_accum, c.train.warmup_steps = accum, 0
        tc = ml_collections.FrozenConfigDict(c.train)
        tx, step = TS.compiled_train_step(config, tc, True, 10, sharding.make_mesh(), joint)
        state = TS.init_state(jax.tree_util.tree_map(jnp.array, stacked), tx, tc, 0, 2)
        out.append(step(state, batch)[0].params)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *out
    )
    # both class models moved (the cross-entropy reaches the wrong class's model too)
    wte = out[0]["wte"]["embedding"]
    assert not np.allclose(wte[0], stacked["wte"]["embedding"][0]) and not np.allclose(
        wte[1], stacked["wte"]["embedding"][1]
    )


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_head_logits_match_numpy(tiny, pool):
    config, params, _ = tiny
    rng = np.random.default_rng(4)
    head = {
        "kernel": rng.normal(size=(config.n_embd, 3)).astype(np.float32),
        "bias": np.array([0.1, -0.2, 0.3], np.float32),
    }
    toks = texts(5, [7, 12])
    rows = make_rows(toks, 16, BOS, "truncate")
    from gencls_jax.data.batching import make_batch

    b = make_batch(rows, (16, [[0], [1]]), 2)
    got = np.asarray(score.head_logits({"body": params, "head": head}, b, config, None, pool))
    hidden = np.asarray(M.apply(params, b["inputs"], config, return_hidden=True), np.float64)
    for i, t in enumerate(toks):
        n = len(t)
        feats = hidden[i, :n].mean(0) if pool == "mean" else hidden[i, n - 1]
        np.testing.assert_allclose(
            got[i], feats @ head["kernel"] + head["bias"], rtol=1e-4, atol=1e-4
        )


def test_sliced_stream_rows_align_and_every_text_once():
    toks, labels = texts(6, [3, 30, 12, 5, 18, 9, 25]), [0, 1, 1, 0, 1, 0, 0]
    stream = sliced(toks, labels, PREFIXES, batch=3, max_len=40, scheme="bucket")
    seen = []
    for b in stream.batches(0):
        assert b["inputs"].shape[0] == 2 and b["labels"].shape == (3,)
        for r in range(3):
            if b["labels"][r] < 0:
                assert not b["weights"][:, r].any()
                continue
            # the same text in every slice, each after its own class's prefix
            t0 = b["targets"][0, r][b["weights"][0, r] > 0].tolist()
            t1 = b["targets"][1, r][b["weights"][1, r] > 0].tolist()
            assert (
                t0 == t1
                and b["targets"][0, r][:3].tolist() == PREFIXES[0]
                and b["targets"][1, r][0] == PREFIXES[1][0]
            )
            i = toks.index(t0)
            assert labels[i] == b["labels"][r]
            seen.append(i)
    assert sorted(seen) == list(range(len(toks)))
    windows = make_rows([list(range(50))], 16, BOS, "window", 8)
    with pytest.raises(DataError, match="one row per text"):
        SlicedStream((windows,), np.array([0]), BatchSpec("pad", 2, 16, ()), 0)


def test_min_steps_raises_the_epochs():
    c = get_config()
    c.train.epochs, c.train.min_steps = 3, 1000
    assert T.run_epochs(c.train, lambda e: 119) == 9  # 500 per class, 8 per step: 9 epochs
    assert T.run_epochs(c.train, lambda e: 2969) == 3
    assert T.run_epochs(c.train, lambda e: (100, 400)) == 3  # the epoch's steps: its largest class


def test_small_protocol_and_val_file(tmp_path):
    """At N per class the validation texts come out of the N; a val file replaces the hold-out."""
    from conftest import TOKENIZER_DIR

    from gencls_jax.data.pipeline import load_datasets
    from gencls_jax.data.tokenize import load_tokenizer

    rows = [{"id": i, "label": ["a", "b"][i % 2], "text": f"text number {i}"} for i in range(60)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "val.jsonl").write_text(
        json.dumps({"id": 99, "label": "b", "text": "dev text"}) + "\n"
    )
    c = get_config()
    d = c.data
    d.source, d.tokenizer, d.cache_dir, d.label_names = "jsonl", str(TOKENIZER_DIR), "", ()
    d.train_path = str(tmp_path / "train.jsonl")
    d.per_class_limit, d.val_size = 10, 4
    tok = load_tokenizer(d.tokenizer)
    ds = load_datasets(c, ("train", "val"), tok)
    assert len(ds["train"]) == 16 and len(ds["val"]) == 4
    d.per_class_limit = 0
    everything = load_datasets(c, ("train", "val"), tok)
    d.per_class_limit = 10
    d.val_size = 0
    chosen = load_datasets(c, ("train",), tok)["train"]
    assert set(ds["train"].ids) | set(ds["val"].ids) == set(
        chosen.ids
    )  # val is part of the N per class
    assert len(everything["train"]) == 56
    d.val_path = str(tmp_path / "val.jsonl")
    ds = load_datasets(c, ("train", "val"), tok)
    assert ds["val"].ids == ["99"] and len(ds["train"]) == 20


# --- regularisation levers (issue 24) ---------------------------------------------------------

THREE = ([5, 6, 7], [8], [9, 10])  # three classes' label prefixes


def test_decision_label_smoothing_matches_float64_reference(tiny):
    """train.decision_label_smoothing=eps: the cross-entropy's target is (1 - eps) x one-hot +
    eps / K (K = 3, so eps / K is not eps / 2), in float64 from the reference model's
    log-likelihoods (eps = 0 is the objective's own default: the unsmoothed cross-entropy,
    which test_decision_sums_match_float64_reference checks)."""
    config, params, hf = tiny
    toks, labels = texts(7, [9, 20, 3, 14]), [0, 2, 1, 2]
    batch = next(iter(sliced(toks, labels, THREE).batches(0)))
    prior = np.log([0.2, 0.3, 0.5])

    eps = 0.1
    objective = objectives.DecisionObjective(1.0, 1.0, tuple(prior), False, label_smoothing=eps)
    got = float(objective.sums(params, batch, config, None)["ce"][0])

    ll = np.zeros((4, 3))
    for b in range(4):
        row = batch["targets"][0, b]
        i = next(j for j, t in enumerate(toks) if row[3 : 3 + len(t)].tolist() == t)
        for c, p in enumerate(THREE):
            seq = p + toks[i]
            ll[b, c] = ref_log_probs(hf, [BOS] + seq[:-1], seq)[len(p) :].sum()
    scores = ll + prior
    top = scores.max(1, keepdims=True)
    logp = scores - top - np.log(np.exp(scores - top).sum(1, keepdims=True))
    target = (1 - eps) * np.eye(3)[batch["labels"]] + eps / 3
    want = -np.sum(target * logp)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    plain = -np.sum(np.eye(3)[batch["labels"]] * logp)
    assert abs(want - plain) > 1e-3 * plain  # smoothing moves it far beyond the tolerance


def test_regularisation_settings_are_checked_in_one_line():
    c = get_config()
    objectives.check_settings(c.train)  # the defaults: every lever off
    c.train.layer_lr_decay, c.train.decision_label_smoothing = 0.0, 1.0
    c.train.adversarial_eps, c.train.adversarial_weight = -0.1, float("nan")
    with pytest.raises(RunError) as e:
        objectives.check_settings(c.train)
    assert str(e.value) == (
        "train.layer_lr_decay must be in (0, 1] (1 = off), got 0.0; "
        "train.decision_label_smoothing must be in [0, 1), got 1.0; "
        "train.adversarial_eps must be finite and >= 0, got -0.1; "
        "train.adversarial_weight must be finite and >= 0, got nan"
    )
    c = get_config()
    c.train.objective = "lm2"  # was a ValueError's traceback from objectives.for_run
    with pytest.raises(
        RunError, match=r"^train.objective must be one of \('lm', 'decision'\), got 'lm2'$"
    ):
        objectives.check_settings(c.train)


def test_label_smoothing_of_an_lm_run_is_one_line(tmp_path):
    """The LM objective has no cross-entropy to smooth: run.py says so in one line, exit 1,
    before reading any data."""
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "--config=" + str(REPO / "configs" / "tiny.py"),
            f"--workdir={tmp_path / 'wd'}",
            "--config.train.decision_label_smoothing=0.1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == (
        "error: train.decision_label_smoothing=0.1 smooths the decision objective's "
        "cross-entropy: train.objective='lm' has none (set it to 0, or train.objective='decision')"
    )
    assert "tokens of" not in p.stderr  # no data was read


def torch_decision_loss(hf, batch, prior, lm_coef, ce_coef, delta):
    """float64 PyTorch: the decision objective's loss of a sliced batch ([K, B, T], labels [B])
    with `delta` [K, B, T, D] added to every row's input token embeddings."""
    k, b, t = batch["inputs"].shape
    ids = torch.tensor(np.asarray(batch["inputs"]), dtype=torch.long)
    emb = hf.transformer.wte(ids) + delta
    logits = hf(inputs_embeds=emb.reshape(k * b, t, -1)).logits.reshape(k, b, t, -1)
    targets = torch.tensor(np.maximum(batch["targets"], 0), dtype=torch.long)
    lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    w = torch.tensor(np.asarray(batch["weights"]), dtype=torch.float64)
    wlp = torch.where(w != 0, lp * w, torch.zeros_like(lp))
    scores = wlp.sum(-1).T + torch.tensor(prior)
    labels = torch.tensor(np.asarray(batch["labels"]), dtype=torch.long)
    true = torch.nn.functional.one_hot(labels, k).T[..., None].double()
    lm = -(true * wlp).sum() / (true * w).sum()
    ce = -torch.log_softmax(scores, -1)[torch.arange(b), labels].mean()
    return lm_coef * lm + ce_coef * ce


def test_adversarial_gradient_matches_float64_autograd(tiny):
    """train.adversarial_eps: the step's gradient is that of loss + w x the loss at the
    embeddings moved by r = eps g / ||g|| (g: d loss / d embeddings, L2 per text and class
    reading), r and both gradients by float64 PyTorch autograd through `inputs_embeds`: a wrong
    perturbation (direction, norm, blocks) or weight changes that gradient at this eps. eps = 0
    traces the very program of the default (so its results are bit for bit the same), whatever
    the weight, and the sums (the logged loss) are the unperturbed loss's."""
    from gencls_jax.model.weights import params_from_hf_tensors

    config, params, hf = tiny
    toks, labels = texts(8, [9, 20, 3, 14]), [0, 1, 1, 0]
    batch = next(iter(sliced(toks, labels, PREFIXES).batches(0)))
    prior = (-1.2, -0.36)
    objective = objectives.DecisionObjective(1.0, 0.5, prior, stacked=False)
    eps, weight = 0.5, 2.0

    zero = torch.zeros(*batch["inputs"].shape, config.n_embd, dtype=torch.float64)
    zero.requires_grad_(True)
    clean = torch_decision_loss(hf, batch, prior, 1.0, 0.5, zero)
    (g,) = torch.autograd.grad(clean, zero, retain_graph=True)
    norm = g.pow(2).sum((-2, -1), keepdim=True).sqrt()
    r = torch.where(norm > 0, eps * g / norm.clamp_min(1e-300), torch.zeros_like(g)).detach()
    perturbed = torch_decision_loss(hf, batch, prior, 1.0, 0.5, r)
    names = [n for n, _ in hf.named_parameters()]
    grads = torch.autograd.grad(clean + weight * perturbed, [p for _, p in hf.named_parameters()])
    want = params_from_hf_tensors({n: x.numpy() for n, x in zip(names, grads)}, config)

    grads_of = jax.jit(TS.loss_grads, static_argnums=(0, 3, 6, 7))
    got, sums = grads_of(objective, params, batch, config, None, jnp.float32(1), 1, (eps, weight))
    for path, x in jax.tree_util.tree_leaves_with_path(want):
        y = got
        for k in path:
            y = y[k.key]
        np.testing.assert_allclose(y, x, rtol=2e-4, atol=2e-5 * np.abs(x).max(), err_msg=str(path))

    assert perturbed.item() > clean.item() + 0.01  # the perturbation matters at this eps
    # the sums (what is logged) are the unperturbed loss's
    np.testing.assert_allclose(objective.losses(sums)[0], clean.item(), rtol=1e-5)

    # eps = 0, whatever the weight: the very program of loss_grads' default (no second pass)
    def program(*adversarial):
        args = (objective, params, batch, config, None, jnp.float32(1), 1, *adversarial)
        return str(jax.make_jaxpr(functools.partial(TS.loss_grads, *args))())

    assert program((0.0, weight)) == program()


def test_adversarial_loss_rises_by_eps_times_the_gradient_norm(tiny):
    """First order, on the LM objective of two stacked class models over packed rows (two texts
    a row): loss(r) - loss(0) = eps x the sum over texts of ||g|| (each text normalised alone),
    for a small eps, and more than along a random direction of the same norms."""
    from gencls_jax.data.batching import make_batch

    config, params, _ = tiny
    stacked = stack_params([params, jax.tree_util.tree_map(lambda x: x * 1.01, params)])
    rows = [make_rows(texts(c, [9, 14, 3, 20]), 32, BOS, "truncate") for c in (10, 11)]
    batch = [make_batch(r, (32, [[0, 1], [2, 3]]), 2) for r in rows]
    batch = {k: jnp.asarray(np.stack([b[k] for b in batch])) for k in batch[0]}  # [2, 2, 32]
    objective = objectives.LMObjective(stacked=True, packed=True)
    total = jax.jit(
        lambda d: jnp.sum(objective.losses(objective.sums(stacked, batch, config, None, d)))
    )
    zero = jnp.zeros((*batch["inputs"].shape, config.n_embd), jnp.float32)
    g = np.asarray(jax.grad(total)(zero), np.float64)
    segments, eps = batch["segment_ids"], 1e-2
    rise = float(total(TS.adversarial_perturbation(g, segments, eps)) - total(zero))
    seg = np.asarray(segments)[..., None]
    norms = [np.sqrt(np.sum(np.where(seg == s, g, 0.0) ** 2, (-2, -1))) for s in (1, 2)]
    first_order = eps * float(np.sum(norms))
    assert rise > 0 and abs(rise / first_order - 1) < 0.02, (rise, first_order)
    noise = jax.random.normal(jax.random.key(0), g.shape) * (seg > 0)
    random_rise = float(total(TS.adversarial_perturbation(noise, segments, eps)) - total(zero))
    assert random_rise < 0.5 * rise, (random_rise, rise)


def test_adversarial_perturbation_is_per_text_of_packed_rows():
    """Packed rows: each text (segment) of a row gets its own L2 norm eps; padding and a zero
    gradient get 0. NumPy reference, per class slice."""
    rng = np.random.default_rng(0)
    seg = np.array([[[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 0, 0]], [[1, 2, 3, 3, 0, 0], [1] * 6]])
    g = rng.normal(size=(*seg.shape, 4)).astype(np.float32) * (seg > 0)[..., None]
    g[1, 1] = 0.0  # a filler row
    got = np.asarray(TS.adversarial_perturbation(jnp.asarray(g), jnp.asarray(seg), 0.3))
    want = np.zeros(g.shape)
    for k in range(2):
        for b in range(2):
            for s in set(seg[k, b].tolist()) - {0}:
                at = seg[k, b] == s
                n = np.sqrt(np.sum(np.asarray(g[k, b, at], np.float64) ** 2))
                want[k, b, at] = 0.3 * g[k, b, at] / n if n > 0 else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
