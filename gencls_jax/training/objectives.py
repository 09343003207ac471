"""What a train step minimises: one contract for every objective.

An objective is a loss over the (possibly class-stacked) parameters. The step
(`training/step.py`) knows nothing of its kind; it asks:
- `totals(batch)`: whole-batch denominators, so that micro-batches add up to one big batch;
- `sums(params, batch, model_config, dropout, embed_delta=None)`: additive statistics of a
  (micro-)batch, each with a leading model axis [M] (M = K stacked class models, or 1): `nll`
  and `weight` (the LM term: token-weighted negative log-likelihood and its weight), `tokens`
  (real tokens read), and for the decision `ce`, `texts`, `correct`; `embed_delta` (shaped as
  the batch's inputs plus the model width) is added to the input token embeddings: adversarial
  training (`training/step.py`) perturbs them;
- `losses(sums, totals, xp)`: the loss of each model, [M]; with `totals` None, the denominators
  come from the sums themselves (the logged loss of a window of steps); `xp=numpy` computes it
  on the host (the log's loss: a jnp op would queue behind the step in flight and wait for it);
- `real(batch)`: [M], whether each model takes this step (a class model whose own epoch is
  over sees all-padding batches and is left as it is);
- `values()` / `bind(values)`: the objective's numbers that are not shapes (the class prior,
  the weights of its terms) as arrays, and a copy holding traced ones: the step takes them as
  arguments, so its compiled program does not change with them;
- `per_model`: the loss is a sum of per-model terms, each depending on its own model only, so
  each model has its own float16 loss scale and its own finite check; else one joint loss.

The objectives (`train.objective`):
- `lm` (`LMObjective`): the language model's token-weighted negative log-likelihood, each
  class model on its own texts (stacked), or one model. Packed rows need their segment ids;
  right-padded rows (one text per row) use the causal mask alone (cuDNN's causal kernel).
- `decision` (`DecisionObjective`): a generative classifier trained to classify. Every text of
  a mixed-class batch is scored by every class (`scoring.score.class_token_log_probs` over the
  K slices of the batch: slice k is the text as class k's model reads it): the loss is
  `train.lm_weight` x the LM loss of the true class + `train.decision_weight` (lambda) x the
  cross-entropy of softmax_c(log p(x|c) + log p(c)) against the label (its target smoothed,
  (1 - eps) x one-hot + eps / K, with `train.decision_label_smoothing` eps > 0). lambda = 0 is
  the LM. Its rows hold one text each, or (`data.batching='pack'`) several, told apart by
  segment ids and `text_ids` (each token's text slot): log p(x|c) is then a sum by slot.
  The discriminative baseline trains on it with a classification head's logits as its scores
  and no LM term.
Dropout keys (`dropout` = (step key, micro-batch index)): the LM folds in the class, then the
micro-batch; the decision splits the micro-batch's key over the K slices.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax.errors import RunError
from gencls_jax.model.gpt2 import GPT2Config
from gencls_jax.scoring import decide, score

Array = jax.Array
Batch = Mapping[str, Any]
Sums = dict[str, Array]
Dropout = tuple[Array, Any] | None  # (the step's key, the micro-batch index) when dropout is on

OBJECTIVES = ("lm", "decision")
PACK_HEAD = (
    "data.batching='pack' packs several texts per row: the discriminative head pools one text "
    "per row; set data.batching to 'pad' or 'bucket'"
)


def _safe(denominator, xp=jnp):
    """A denominator of 0 (an all-padding batch) gives a loss of 0, not NaN."""
    return xp.where(denominator > 0, denominator, 1.0)


@dataclasses.dataclass(frozen=True)
class LMObjective:
    """Token-weighted negative log-likelihood of each model on its own rows: [K, B, T] batches
    of K stacked class models, or [B, T] batches of one model. Also every generative run's
    validation loss."""

    stacked: bool
    packed: bool  # `data.batching='pack'`: several texts per row, masked by segment ids
    sequential: bool = False  # stacked: one class model's activations at a time
    pack_texts: int = 0  # packed: texts per row at most (`data.pack_texts`), 0 = unknown
    per_model = True

    def totals(self, batch: Batch) -> Array:
        return self._per_model(jnp.sum(batch["weights"].astype(jnp.float32), axis=(-2, -1)))

    def sums(
        self, params, batch: Batch, model_config: GPT2Config, dropout: Dropout, embed_delta=None
    ) -> Sums:
        rngs = None
        if dropout is not None:
            key, micro = dropout
            if self.stacked:  # class c: fold in c, then the micro-batch
                k = batch["inputs"].shape[0]
                rngs = jax.vmap(lambda c: jax.random.fold_in(jax.random.fold_in(key, c), micro))(
                    jnp.arange(k)
                )
            else:
                rngs = jax.random.fold_in(key, micro)
        if self.packed and self.pack_texts:  # the bound cuDNN's packed kernel needs
            model_config = model_config.replace(max_segments=self.pack_texts)
        lp = score.class_token_log_probs(
            params,
            batch,
            model_config,
            rngs,
            stacked=self.stacked,
            packed=self.packed,
            sequential=self.sequential and self.stacked,
            embed_delta=embed_delta,
        )  # [M, B, T]
        w = batch["weights"].astype(jnp.float32).reshape(lp.shape)
        weight = jnp.sum(w, axis=(-2, -1))
        return dict(
            nll=-jnp.sum(score.weighted(lp, w), axis=(-2, -1)), weight=weight, tokens=weight
        )

    def losses(self, sums: Sums, totals=None, xp=jnp) -> Array:
        return sums["nll"] / _safe(sums["weight"] if totals is None else totals, xp)

    def real(self, batch: Batch) -> Array:
        # (not weight > 0: a NaN weight is an overflow to skip, not padding)
        return self._per_model(jnp.any(batch["weights"] != 0, axis=(-2, -1)))

    def log_terms(self, sums: Mapping[str, float]) -> dict[str, float]:
        return {}

    def values(self) -> dict:
        """The numbers the train step takes as arguments (`bind`): none."""
        return {}

    def bind(self, values: Mapping[str, Any]) -> LMObjective:
        return self

    @staticmethod
    def _per_model(x: Array) -> Array:
        return jnp.reshape(x, (-1,))


@dataclasses.dataclass(frozen=True)
class DecisionObjective:
    """lm_coef x the LM loss of the true class + ce_coef x the cross-entropy of Bayes' rule,
    over mixed-class sliced batches ([K, B, T] arrays, `labels` [B], -1 for filler rows). The
    class scores are log p(x|c) + log p(c) of K stacked class models (`stacked`) or of the one
    model reading slice c; with `head_pool`, a classification head's logits (one slice)."""

    lm_coef: float
    ce_coef: float
    log_prior: tuple[float, ...]
    stacked: bool
    head_pool: str = ""  # the discriminative baseline: its head's pooling ('mean' | 'last')
    sequential: bool = False
    label_smoothing: float = 0.0  # eps of the cross-entropy's target (1 - eps) one-hot + eps / K
    per_model = False

    def totals(self, batch: Batch) -> tuple[Array, Array]:
        true = self._true(batch)
        lm = jnp.sum(true * batch["weights"].astype(jnp.float32))
        return _safe(lm), jnp.maximum(jnp.sum(batch["labels"] >= 0).astype(jnp.float32), 1.0)

    def sums(
        self, params, batch: Batch, model_config: GPT2Config, dropout: Dropout, embed_delta=None
    ) -> Sums:
        rng = None if dropout is None else jax.random.fold_in(*dropout)
        slices = {n: v for n, v in batch.items() if n not in ("labels", "text_ids")}
        packed = "text_ids" in batch  # several texts per row (`SlicedStream`, 'pack')
        tokens = jnp.sum(batch["weights"].astype(jnp.float32))
        if self.head_pool:  # a classification head on the text's features: no LM term
            if packed:
                raise RunError(PACK_HEAD)
            one = {n: v[0] for n, v in slices.items()}
            delta = None if embed_delta is None else embed_delta[0]
            logits = score.head_logits(params, one, model_config, rng, self.head_pool, delta)
            zero = jnp.zeros((1,), jnp.float32)
            ce = _ce_sums(logits, batch, self.label_smoothing)
            return dict(nll=zero, weight=zero, tokens=tokens[None], **ce)
        k = batch["inputs"].shape[0]
        rngs = None if rng is None else jax.random.split(rng, k)
        if packed:  # a row holds at most the step's texts: cuDNN's packed kernel's bound
            model_config = model_config.replace(max_segments=batch["labels"].shape[0])
        lp = score.class_token_log_probs(
            params,
            slices,
            model_config,
            rngs,
            stacked=self.stacked,
            packed=packed,
            sequential=self.sequential and self.stacked,
            embed_delta=embed_delta,
        )  # [K, rows, T]
        w = batch["weights"].astype(jnp.float32)
        wlp = score.weighted(lp, w)
        if packed:  # each text's tokens, summed by its slot: [B, K]
            slots = jax.nn.one_hot(batch["text_ids"], batch["labels"].shape[0], dtype=jnp.float32)
            per_text = jnp.einsum(
                "krt,krtb->bk", wlp, slots, precision=jax.lax.Precision.HIGHEST
            )  # (HIGHEST: no TF32 rounding of the log-probabilities on GPU)
        else:
            per_text = jnp.sum(wlp, axis=-1).T
        scores = per_text + jnp.asarray(self.log_prior, jnp.float32)  # [B, K]
        true = self._true(batch)
        return dict(
            nll=-jnp.sum(true * wlp)[None],
            weight=jnp.sum(true * w)[None],
            tokens=tokens[None],
            **_ce_sums(scores, batch, self.label_smoothing),
        )

    def losses(self, sums: Sums, totals=None, xp=jnp) -> Array:
        lm, texts = (sums["weight"], sums["texts"]) if totals is None else totals
        return self.lm_coef * sums["nll"] / _safe(lm, xp) + self.ce_coef * sums["ce"] / xp.maximum(
            texts, 1.0
        )

    def real(self, batch: Batch) -> Array:
        return jnp.any(batch["labels"] >= 0)[None]

    def values(self) -> dict[str, np.ndarray]:
        """The numbers of this objective that depend on the run, not on its shapes: the train
        step takes them as arguments and `bind`s them (traced), so its compiled program serves
        other texts (another prior) and another lambda."""
        return dict(
            lm_coef=np.float32(self.lm_coef),
            ce_coef=np.float32(self.ce_coef),
            log_prior=np.asarray(self.log_prior, np.float32),
        )

    def bind(self, values: Mapping[str, Any]) -> DecisionObjective:
        """A copy holding `values` (traced arrays inside the step) in place of its numbers."""
        return dataclasses.replace(self, **values)

    def log_terms(self, sums: Mapping[str, float]) -> dict[str, float]:
        """The two terms of the objective, and the decisions on the training batches."""
        texts = max(sums["texts"], 1e-30)
        return dict(
            lm_loss=sums["nll"] / max(sums["weight"], 1e-30),
            decision_loss=sums["ce"] / texts,
            train_accuracy=sums["correct"] / texts,
        )

    @staticmethod
    def _true(batch: Batch) -> Array:
        """[K, B, 1]: 1 on the slice of each text's own class (filler rows: none). Packed rows
        (`text_ids`): [K, R, T], 1 at the tokens of slice k whose text is of class k."""
        k = batch["weights"].shape[0]
        if "text_ids" not in batch:
            return jax.nn.one_hot(batch["labels"], k, dtype=jnp.float32).T[..., None]
        ids = batch["text_ids"]
        label = jnp.where(ids >= 0, jnp.take(batch["labels"], jnp.maximum(ids, 0)), -1)
        return (label == jnp.arange(k)[:, None, None]).astype(jnp.float32)


def _ce_sums(scores: Array, batch: Batch, smoothing: float = 0.0) -> Sums:
    """Cross-entropy of softmax(scores) against the labels (the target (1 - smoothing) x one-hot
    + smoothing / K), the texts, the right decisions."""
    labels = batch["labels"]
    real = labels >= 0
    logp = jax.nn.log_softmax(scores, axis=-1)
    picked = jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    if smoothing:  # eps / K x sum_c log p(c | x) = eps x their mean
        picked = (1.0 - smoothing) * picked + smoothing * jnp.mean(logp, axis=-1)
    right = jnp.argmax(scores, axis=-1) == labels
    return dict(
        ce=-jnp.sum(jnp.where(real, picked, 0.0))[None],
        texts=jnp.sum(real).astype(jnp.float32)[None],
        correct=jnp.sum(real & right).astype(jnp.float32)[None],
    )


Objective = LMObjective | DecisionObjective


def lm_objective(config: Any, stacked: bool) -> LMObjective:
    """The LM objective for `data.batching`'s rows (also the validation loss of every generative
    run, whatever its training objective)."""
    packed = config.data.batching == "pack"
    return LMObjective(
        stacked=stacked,
        packed=packed,
        sequential=not config.train.stack_classes,
        pack_texts=int(config.data.pack_texts) if packed else 0,
    )


def for_run(config: Any, conditioning, class_counts) -> Objective:
    """`train.objective` for a run of `conditioning` (its prior from the training `class_counts`):
    the LM, or the decision (a classification head's for a discriminative conditioning)."""
    t = config.train
    if t.objective not in OBJECTIVES:
        raise ValueError(f"train.objective must be one of {OBJECTIVES}, got {t.objective!r}")
    if t.objective == "lm":
        return lm_objective(config, conditioning.stacked)
    if not conditioning.classifies:
        raise ValueError("train.objective='decision' needs a conditioning that scores classes")
    check_decision_batching(config, conditioning)
    return DecisionObjective(
        lm_coef=float(t.lm_weight),
        ce_coef=float(t.decision_weight),
        log_prior=tuple(float(x) for x in decide.log_prior(class_counts)),
        stacked=conditioning.stacked,
        head_pool="" if conditioning.generative else config.model.pool,
        sequential=not t.stack_classes,
        label_smoothing=float(t.decision_label_smoothing),
    )


def check_decision_batching(config: Any, conditioning) -> None:
    """Packed decision batches (`data.batching='pack'`, `data.batching.SlicedStream`) are for a
    generative conditioning without gradient accumulation: a micro-batch takes rows, while a
    packed step's text slots (`labels`, `text_ids`) are the whole step's. Else one line
    (RunError). Nothing to check for another objective or batching."""
    if config.train.objective != "decision" or config.data.batching != "pack":
        return
    if not conditioning.generative:
        raise RunError(PACK_HEAD)
    if int(config.train.grad_accum) > 1:
        raise RunError(
            f"data.batching='pack' with train.objective='decision' takes no gradient "
            f"accumulation (a packed step's texts span its rows): set train.grad_accum=1 (got "
            f"{int(config.train.grad_accum)}), or data.batching to 'pad' or 'bucket'"
        )
    if int(config.data.pack_rows) < 0:
        raise RunError(f"data.pack_rows must be >= 0 (0 = auto), got {config.data.pack_rows}")


def check_settings(tc: Any) -> None:
    """The objective and regularisation keys of `config.train` (`tc`), checked before any data
    is read: an unknown objective, a bad value, or label smoothing without a decision term to
    smooth, is one line (RunError)."""
    problems = []
    if tc.objective not in OBJECTIVES:
        problems.append(f"train.objective must be one of {OBJECTIVES}, got {tc.objective!r}")
    decay, smoothing = float(tc.layer_lr_decay), float(tc.decision_label_smoothing)
    if not 0.0 < decay <= 1.0:
        problems.append(f"train.layer_lr_decay must be in (0, 1] (1 = off), got {decay}")
    if not 0.0 <= smoothing < 1.0:
        problems.append(f"train.decision_label_smoothing must be in [0, 1), got {smoothing}")
    elif smoothing > 0 and tc.objective != "decision":
        problems.append(
            f"train.decision_label_smoothing={smoothing} smooths the decision objective's "
            f"cross-entropy: train.objective={tc.objective!r} has none (set it to 0, or "
            "train.objective='decision')"
        )
    for key in ("adversarial_eps", "adversarial_weight"):
        if not 0.0 <= float(tc[key]) < float("inf"):
            problems.append(f"train.{key} must be finite and >= 0, got {float(tc[key])}")
    if problems:
        raise RunError("; ".join(problems))
