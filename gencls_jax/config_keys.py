"""Every config key, declared once: its default, what a resumed run may do with it, its meaning.

`defaults()` is the config every experiment starts from (configs/base.py is this function; the
experiment files in configs/ change what their question needs), runs/rules.py's resume and eval
rules read each key's kind, and `--help_config` prints this table. A new key is one `Key(...)`
entry below. Paths to `../shared` are the offline fallbacks of the real sources (tfds, the HF
hub).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import ml_collections
from absl import flags
from ml_collections import config_flags

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# A key's kind: what a resumed training, or eval/generate/predict/explain on a trained run, may
# do with it (workdir.check_resume, workdir.eval_config).
MODEL, GROWS, LIMIT, EVAL, RUNTIME = "model", "grows", "limit", "eval", "runtime"
KINDS = {
    MODEL: "changes the trained model: a run is resumed with the same value",
    GROWS: "may grow when a run is resumed (more epochs continue the run)",
    LIMIT: "a limit that may be raised or lifted (0 = none) when a run is resumed",
    EVAL: "how a trained model is run or tested: eval, generate, predict and explain may "
    "change it, a resumed training may not",
    RUNTIME: "cannot change a trained model: may differ on resume and in every mode",
}


class Key(NamedTuple):
    name: str  # dotted: 'train.lr' is config.train.lr
    default: Any
    kind: str  # one of KINDS
    meaning: str  # what it does, its values; --help_config prints it under the key


KEYS = (
    Key("seed", 0, MODEL, "seeds parameter init, dropout, data sampling, splits and batch order"),
    Key(
        "compile_cache_dir",
        str(Path("~/.cache/gencls_jax/xla").expanduser()),
        RUNTIME,
        "compiled programs are stored here and reused by later runs of the same shapes ('' = "
        "off): a repeated eval of gpt2 skips ~40 s of compiling its 9 scoring shapes",
    ),
    Key(
        "compile_cache_min_secs",
        1.0,
        RUNTIME,
        "programs that compile faster are not stored (JAX's default)",
    ),
    Key(
        "heartbeat_timeout_s",
        100,
        RUNTIME,
        "multi-process runs (--coordinator_address/--num_processes/--process_id, or "
        "train.distributed): a process that stops answering fails the others after this long",
    ),
    Key("progress_bars", True, RUNTIME, "tqdm bars (with ETA) for training epochs and scoring"),
    # --- model ---------------------------------------------------------------------------
    Key(
        "model.size",
        "gpt2",
        MODEL,
        "gpt2 | gpt2-medium | gpt2-large | gpt2-xl | tiny: the architecture when init='scratch'",
    ),
    Key(
        "model.init",
        "pretrained",
        MODEL,
        "pretrained (model.pretrained from the hub/folder) | scratch | <checkpoint folder>",
    ),
    Key("model.pretrained", "gpt2", MODEL, "hub name or local folder, used when init=pretrained"),
    Key(
        "model.conditioning",
        "per_class",
        MODEL,
        "per_class: one LM per class | label_prefix: one LM, label tokens first | unconditional: "
        "one LM of all texts (in-domain pretraining) | discriminative: GPT-2 + a classification "
        "head (the baseline)",
    ),
    Key(
        "model.dtype",
        "bfloat16",
        EVAL,
        "compute dtype: float32 | bfloat16 | float16 (parameters stay float32)",
    ),
    Key(
        "model.remat",
        "none",
        MODEL,
        "none | full | dots: recompute activations in the backward pass to save memory; the "
        "layers then run as a loop, which also compiles in less time (dots: the matmuls' "
        "outputs kept, the rest recomputed)",
    ),
    Key(
        "model.attention",
        "auto",
        EVAL,
        "auto (cudnn on GPU, else xla) | xla | cudnn (flash attention through cuDNN)",
    ),
    Key(
        "model.layer_unroll",
        0,
        EVAL,
        "transformer layers per scan iteration; 0 = all (fastest; under model.remat 1: a fully "
        "unrolled stack saves no memory), 1 = fastest compile",
    ),
    Key(
        "model.packed_offsets_from",
        512,
        EVAL,
        "attention=cudnn: packed rows at least this long (texts per row bounded: the decision "
        "step's texts, data.pack_texts for the LM) take cuDNN's segment-offsets kernel (skips "
        "the blocks across texts), shorter ones the dense segment mask; 0 = always",
    ),
    Key("model.dropout", 0.1, MODEL, "dropout rate of the transformer (training only)"),
    Key(
        "model.dropout_masks",
        "hash",
        MODEL,
        "how dropout draws its masks from its keys: hash (a 32-bit hash of each element's index "
        "and the key: fuses into the op that applies it; same IMDB accuracy, less compile) | "
        "jax (jax.random.bernoulli, 32 random bits per element: flax's nn.Dropout to the bit)",
    ),
    Key(
        "model.pool",
        "mean",
        MODEL,
        "conditioning=discriminative: the head reads the mean of the features | last",
    ),
    Key(
        "model.head_chunk",
        8192,
        RUNTIME,
        "scoring: tokens per chunk of the LM head (float32 logits: 8192 x 50304 x 4 B = 1.6 GB)",
    ),
    Key(
        "model.scoring_head",
        "auto",
        RUNTIME,
        "scoring's LM head: auto (pallas on one Hopper GPU, where it was measured: test scoring "
        "in 0.91x the time; else xla, also on several devices: the kernel has no sharding rule) "
        "| xla (float32 logits in chunks of model.head_chunk, then "
        "their log-sum-exp) | pallas (one GPU kernel that keeps the logits on chip; interpreted "
        "off GPU)",
    ),
    Key(
        "model.head_tiles",
        "128,256,64,8,3",
        RUNTIME,
        "scoring_head=pallas: the kernel's tokens, vocabulary rows and width per tile (powers of "
        "2), Triton warps and pipeline stages (the fastest of 28 tried on an H200: BUILD_NOTES)",
    ),
    # --- data ----------------------------------------------------------------------------
    Key("data.source", "tfds", MODEL, "tfds | jsonl | csv | aclimdb"),
    Key("data.tfds_name", "imdb_reviews", MODEL, "source tfds: the data set's name"),
    Key("data.tfds_data_dir", "", RUNTIME, "source tfds: its data folder ('' = tfds default)"),
    Key(
        "data.fallback_to_local",
        True,
        MODEL,
        "when tfds cannot download, read data.train_path, test_path, unsup_path",
    ),
    Key(
        "data.train_path",
        str(SHARED / "imdb" / "train.jsonl.gz"),
        MODEL,
        "source jsonl/csv (and tfds's fallback): the training file",
    ),
    Key(
        "data.test_path",
        str(SHARED / "imdb" / "test.jsonl.gz"),
        EVAL,
        "source jsonl/csv (and tfds's fallback): the test file; eval may name another",
    ),
    Key(
        "data.unsup_path",
        str(SHARED / "imdb" / "unsup.jsonl.gz"),
        MODEL,
        "the unlabelled file (split 'unsup': pretraining with conditioning=unconditional)",
    ),
    Key("data.text_field", "text", MODEL, "jsonl/csv: the field holding the text"),
    Key("data.label_field", "label", MODEL, "jsonl/csv: the field holding the label"),
    Key(
        "data.label_names",
        (),
        MODEL,
        "() = from the data (the source's declared names, else the sorted labels / 0..max); "
        "naming them fixes the class order, e.g. ('neg', 'pos') in the IMDB configs",
    ),
    Key("data.tokenizer", "gpt2", MODEL, "the tokenizer: hub name or folder"),
    Key(
        "data.tokenizer_fallback",
        str(SHARED / "gpt2-tokenizer"),
        MODEL,
        "the tokenizer folder read when data.tokenizer does not load (offline)",
    ),
    Key(
        "data.cache_dir",
        str(Path("~/.cache/gencls_jax").expanduser()),
        RUNTIME,
        "the tokenized data cache, and the tokenizer built from a tokenizer folder",
    ),
    Key("data.clean_html", False, MODEL, "replace IMDB's <br /> tags with newlines"),
    Key("data.append_eos", True, MODEL, "end every text with <|endoftext|> (trained and scored)"),
    Key(
        "data.val_size",
        0.05,
        MODEL,
        "fraction (< 1) or count of train held out, stratified (of the N per class when "
        "per_class_limit > 0: a run at N per class uses only those N)",
    ),
    Key(
        "data.val_path",
        "",
        MODEL,
        "a validation file (jsonl/csv) instead of the hold-out, e.g. SST-2's dev set",
    ),
    Key(
        "data.per_class_limit",
        0,
        MODEL,
        "> 0: N training examples per class (seeded, stratified)",
    ),
    Key(
        "data.split_seed",
        -1,
        MODEL,
        "seeds which rows a run uses (the validation hold-out, data.per_class_limit's texts, "
        "eval.test_per_class's sample); -1 = `seed`. Fix it to vary only the init and batch "
        "order across seeds: an ensemble's members then hold out the same validation texts",
    ),
    Key("data.extra_train_path", "", MODEL, "jsonl of extra (e.g. synthetic) training texts"),
    Key(
        "data.added_classes",
        (),
        MODEL,
        "set by --mode=add_class: folders of the classes added to a trained run, each holding "
        "train.jsonl and val.jsonl of one class; they come after the run's own classes",
    ),
    Key(
        "data.pretrain_splits",
        ("unsup", "train"),
        MODEL,
        "conditioning=unconditional: the splits read, their labels ignored",
    ),
    Key("data.max_len", 1024, MODEL, "tokens per training row / scoring window"),
    Key(
        "data.long_text",
        "truncate",
        MODEL,
        "error | truncate | window: texts longer than max_len",
    ),
    Key("data.window_stride", 512, MODEL, "long_text=window: tokens advanced per window"),
    Key("data.batching", "pack", MODEL, "training rows: pack | bucket | pad"),
    Key(
        "data.pack_texts",
        16,
        MODEL,
        "data.batching=pack, the LM objective: texts per row at most (0 = as many as fit); the "
        "bound lets packed rows of max_len >= model.packed_offsets_from take cuDNN's "
        "segment-offsets kernel (without it: the dense segment mask)",
    ),
    Key(
        "data.pack_rows",
        0,
        MODEL,
        "train.objective=decision with data.batching=pack: rows per step, each of the smallest "
        "bucket length that holds the longest text; up to train.batch_size texts are packed "
        "into them (0 = auto: ceil(batch_size x mean text length / (0.85 x that length)))",
    ),
    Key(
        "data.bucket_lengths",
        (128, 192, 256, 320, 384, 512, 640, 768, 1024),
        MODEL,
        "bucketed shapes (training and scoring): IMDB test padding 14% in these 9, against 29% "
        "in (128, 256, 512, 1024) (BUILD_NOTES, scoring)",
    ),
    Key("data.prefetch", 2, RUNTIME, "batches prefetched to the device"),
    Key("data.tfds_splits.train", "train", MODEL, "source tfds: the split read as train"),
    Key("data.tfds_splits.test", "test", MODEL, "source tfds: the split read as test"),
    Key("data.tfds_splits.unsup", "unsupervised", MODEL, "source tfds: the split read as unsup"),
    Key(
        "data.aclimdb_path",
        "",
        MODEL,
        "source aclimdb: the aclImdb folder (or its parent) or aclImdb_v1.tar.gz",
    ),
    Key("data.id_field", "id", MODEL, "jsonl/csv: row id field (missing -> 'file:row')"),
    Key("data.tokenize_batch_size", 1000, RUNTIME, "texts per tokenizer call"),
    Key(
        "data.tokenize_workers",
        0,
        RUNTIME,
        "processes tokenizing a cold cache's texts (0: one per core; 1: this process, with the "
        "tokenizer's own threads); the ids are the same whatever the number",
    ),
    Key(
        "data.tokenize_pool_min_chars",
        4_000_000,
        RUNTIME,
        "texts of fewer characters in all are tokenized in this process: starting the worker "
        "processes (about a second) would cost more than they save",
    ),
    # scratch models: a CPU model's LM head is most of its cost; the kept ids are stored in
    # run_info.json (data/compact.py)
    Key(
        "data.compact_vocab",
        0,
        MODEL,
        "> 0: keep the N most frequent token ids of the training split (EOS/BOS always), every "
        "other id one shared 'other' id: vocabulary N + 1",
    ),
    Key(
        "data.label_prefix_template",
        "Review sentiment: {label_name}\n",
        MODEL,
        "conditioning=label_prefix: the text before each text (loss weight 0)",
    ),
    # --- training ------------------------------------------------------------------------
    Key(
        "train.objective",
        "lm",
        MODEL,
        "what a step minimises (training/objectives.py): lm = token-weighted negative "
        "log-likelihood | decision = lm_weight x LM loss of the true class + decision_weight x "
        "cross-entropy of "
        "softmax_c(log p(x|c) + log p(c)) (every class scores every text; batching pad, bucket, "
        "or pack with data.pack_rows)",
    ),
    Key(
        "train.lm_weight",
        1.0,
        MODEL,
        "decision: weight of the LM term (ignored by conditioning=discriminative)",
    ),
    Key(
        "train.decision_weight",
        1.0,
        MODEL,
        "decision: lambda, the weight of the classification term",
    ),
    Key(
        "train.decision_label_smoothing",
        0.0,
        MODEL,
        "decision: label smoothing eps in [0, 1) of the classification term's cross-entropy, "
        "target (1 - eps) x one-hot + eps / K; 0 = off (objective lm: must be 0)",
    ),
    Key(
        "train.adversarial_eps",
        0.0,
        MODEL,
        "adversarial training (Miyato et al. 2017) >= 0; 0 = off: each step also takes the loss "
        "with every text's input embeddings moved by eps x g / ||g|| (g: the loss's gradient "
        "there, L2 over the text's tokens x width, per class reading) and adds "
        "adversarial_weight x it; a second forward and backward pass",
    ),
    Key(
        "train.adversarial_weight",
        1.0,
        MODEL,
        "adversarial training: the weight of the perturbed loss (>= 0; unused at eps 0)",
    ),
    Key(
        "train.epochs",
        6,
        GROWS,
        "per_class: every class model sees its own texts once per epoch, on its own schedule",
    ),
    Key(
        "train.min_steps",
        0,
        MODEL,
        "> 0: more epochs than train.epochs if the run would take fewer steps",
    ),
    Key(
        "train.batch_size",
        8,
        MODEL,
        "rows per optimizer step per class model (global, over all devices)",
    ),
    Key("train.grad_accum", 1, MODEL, "micro-batches per optimizer step"),
    Key(
        "train.dropout_prng",
        "threefry2x32",
        MODEL,
        "the PRNG of the dropout masks (jax.random's implementations): threefry2x32 | rbg | "
        "unsafe_rbg (XLA's RngBitGenerator: cheaper on GPU; its draws may change with the "
        "backend or XLA version; unsafe_rbg's fold_in is an XOR, so keys of swapped (step, "
        "class, micro-batch) numbers coincide). The training state's dropout key is [2] uint32 "
        "for threefry2x32, [4] for the other two: a resumed run keeps it",
    ),
    Key("train.lr", 5e-5, MODEL, "peak learning rate"),
    Key("train.schedule", "cosine", MODEL, "constant | linear | cosine (after warmup)"),
    Key(
        "train.warmup_steps",
        100,
        MODEL,
        "linear warmup updates (0 = none); the first update already gets lr / warmup",
    ),
    Key(
        "train.warmup_max_fraction",
        0.1,
        MODEL,
        "... but at most this fraction of a model's updates (at least 1): warmup = "
        "min(warmup_steps, max(1, floor(fraction * updates))); a small data set is not all warmup",
    ),
    Key(
        "train.end_lr_factor",
        0.0,
        MODEL,
        "decay towards lr * end_lr_factor (the last update stays just above it, so > 0)",
    ),
    Key("train.weight_decay", 0.01, MODEL, "AdamW; not on biases, LayerNorm, embeddings"),
    Key(
        "train.ema_decay",
        0.0,
        MODEL,
        "> 0: keep an exponential moving average of the parameters (decay per update, warmed "
        "up as min(decay, (1 + t) / (10 + t))); validation, the best checkpoint, export and "
        "eval use it, training the live weights; 0 = off",
    ),
    Key(
        "train.layer_lr_decay",
        1.0,
        MODEL,
        "layer-wise learning-rate decay in (0, 1]; 1 = off: transformer block i of L gets lr x "
        "decay^(L-1-i) (the top block lr), wte/wpe decay^L (wte is also the tied LM head), "
        "ln_f and a classification head lr",
    ),
    Key("train.b1", 0.9, MODEL, "AdamW beta1"),
    Key("train.b2", 0.999, MODEL, "AdamW beta2"),
    Key("train.eps", 1e-8, MODEL, "AdamW epsilon"),
    Key("train.grad_clip", 1.0, MODEL, "global norm; 0 = off"),
    Key("train.loss_scale", 2.0**15, MODEL, "initial dynamic loss scale (float16 only)"),
    Key("train.log_every", 50, RUNTIME, "steps between training log lines"),
    Key(
        "train.ckpt_every",
        500,
        RUNTIME,
        "steps between checkpoints; also at each epoch end (both skipped within "
        "train.ckpt_every_s of the last save)",
    ),
    Key(
        "train.ckpt_every_s",
        120.0,
        RUNTIME,
        "seconds a checkpoint waits after the last one; a new best and the run's end always "
        "save; 0 = save at every point train.ckpt_every names",
    ),
    Key("train.keep_checkpoints", 2, RUNTIME, "latest K checkpoints kept, plus the best"),
    Key(
        "train.best_metric",
        "val_loss",
        MODEL,
        "val_loss | val_accuracy | val_decision_loss (Bayes' rule's cross-entropy on the "
        "validation texts: smoother than accuracy on a small set)",
    ),
    Key(
        "train.early_stop_patience",
        0,
        MODEL,
        "epochs without improvement before stopping; 0 = off",
    ),
    Key("train.max_steps", 0, LIMIT, "> 0: stop after this many steps (smoke tests, benchmarks)"),
    Key(
        "train.steps_per_call",
        1,
        RUNTIME,
        "optimizer updates per call of the jitted step (a lax.scan over that many batches of one "
        "shape): the same updates in the same order, fewer host round trips for small models",
    ),
    Key(
        "train.class_shards",
        1,
        RUNTIME,
        "per_class: split the K class models over this many device groups (K % it == 0)",
    ),
    Key(
        "train.fsdp",
        False,
        RUNTIME,
        "params and optimizer state split over the 'data' devices too (FSDP-style): for models "
        "whose weights, grads and Adam moments do not fit one device (gpt2-large/xl)",
    ),
    Key(
        "train.stack_classes",
        True,
        MODEL,
        "per_class: vmap the K models in one step; False: lax.map, one class at a time",
    ),
    Key(
        "train.distributed",
        False,
        RUNTIME,
        "multi-host: jax.distributed.initialize() with cluster auto-detection",
    ),
    Key(
        "train.loss_scale_period",
        2000,
        MODEL,
        "float16: finite steps in a row before the loss scale grows",
    ),
    Key(
        "train.loss_scale_factor",
        2.0,
        MODEL,
        "float16: scale *= factor after a good period, /= factor on overflow",
    ),
    Key("train.loss_scale_min", 1.0, MODEL, "float16: the scale never drops below this"),
    Key("train.async_checkpoint", True, RUNTIME, "orbax writes checkpoints in the background"),
    Key(
        "train.tensorboard",
        True,
        RUNTIME,
        "also write TensorBoard events to <workdir>/tensorboard (our own encoder, "
        "reports/events.py: nothing to install)",
    ),
    Key("train.plot", True, RUNTIME, "curves.png in the workdir at the end"),
    # --- choosing hyperparameters on the validation texts (commands/search.py) -----------
    Key(
        "search.candidates",
        (),
        MODEL,
        "() = no search. Each string is one candidate, its overrides 'KEY=VALUE,KEY=VALUE' "
        "(model.*, train.* and the data.* keys that leave the validation texts as they are; "
        "values as --config.KEY=VALUE takes them): training trains candidate 0 (the run's own "
        "config) and each of these in <workdir>/search/<i>/, keeps the one of the best "
        "train.best_metric and evaluates it as the workdir's run",
    ),
    Key(
        "search.min_gain",
        0.0,
        MODEL,
        "a candidate replaces candidate 0 only if its train.best_metric beats the base's by more "
        "than this, in that metric's units (val_accuracy: a fraction, 0.01 = 1 point; val_loss: "
        "nats): a small validation set's noise should not choose",
    ),
    Key(
        "search.ensemble",
        1,
        MODEL,
        "candidates kept: 1 = the best one becomes the workdir's run; K > 1 = the K best by "
        "train.best_metric (ties: the lower index) stay in search/<i>/ and the workdir is their "
        "ensemble (the mean log-likelihood, as --mode=eval --workdirs), search.min_gain unused",
    ),
    Key(
        "search.keep_candidates",
        False,
        RUNTIME,
        "keep the losing candidates' checkpoints and exports (False: deleted once the choice is "
        "made; their figures stay in search/search.json and metrics.json)",
    ),
    # --- evaluation ----------------------------------------------------------------------
    Key(
        "eval.batch_size",
        32,
        RUNTIME,
        "rows per scoring call at data.max_len; shorter buckets get more (same tokens per call)",
    ),
    Key(
        "eval.bucket_lengths",
        (),
        RUNTIME,
        "scoring shapes; () = data.bucket_lengths. Each is one compiled program; IMDB test "
        "padding: 31% in (256, 512, 1024), 14% in data.bucket_lengths' default nine",
    ),
    Key(
        "eval.pack_texts",
        0,
        RUNTIME,
        "scoring of sums (eval, predict, validation): > 0 packs up to this many rows per "
        "scoring row (one shape, nearly no padding; from model.packed_offsets_from cuDNN's "
        "segment-offsets kernel), 0 = one row per scoring row in eval.bucket_lengths' shapes",
    ),
    Key(
        "eval.long_text",
        "",
        EVAL,
        "'' (= data.long_text) | error | truncate | window: how scoring reads a text longer than "
        "a row (eval, predict, explain, generate, and the validation accuracy that picks the "
        "best checkpoint); training rows keep data.long_text, so a decision-trained run (one "
        "row per text) may be scored with windows",
    ),
    Key(
        "eval.window_stride",
        0,
        EVAL,
        "scoring with windows: tokens advanced per window, at most data.max_len less the label "
        "prefix; 0 = data.window_stride (a trained run's, 512 by default: a run of "
        "data.max_len=256 needs one here, e.g. 128)",
    ),
    Key("eval.splits", ("val", "test"), RUNTIME, "the splits scored"),
    Key(
        "eval.decision",
        "bayes",
        RUNTIME,
        "headline rule: bayes (log-lik + log prior) | per_token (mean log-lik) | calibrated "
        "(offsets fit on val)",
    ),
    Key(
        "eval.sample_per_class",
        500,
        RUNTIME,
        "the original protocol's 1,000-review sample (500 per class)",
    ),
    Key(
        "eval.train_sample_per_class",
        500,
        RUNTIME,
        "training texts per class re-scored for the train/validation gap",
    ),
    Key(
        "eval.test_per_class",
        0,
        RUNTIME,
        "> 0: score only this many test texts per class (seeded); 0 = all",
    ),
    Key(
        "eval.report_rules",
        ("bayes", "per_token", "calibrated"),
        RUNTIME,
        "decision rules reported side by side",
    ),
    Key(
        "eval.ood_keep",
        0.95,
        RUNTIME,
        "share of validation texts kept in distribution: eval sets the OOD threshold (on -log "
        "p(text) per token) there, predict's in_distribution applies it; in (0, 1]",
    ),
    Key(
        "eval.ece_bins",
        15,
        RUNTIME,
        "equal-width bins of the top posterior for the expected calibration error (ECE) and "
        "the reliability diagram",
    ),
    Key(
        "eval.ngram_weights",
        (0.0,),
        RUNTIME,
        "the n-gram expert (scoring/ngram.py): the weights w of score + w * log p_ngram(x|c) "
        "tried on val (the best kept, ties to the smallest); (0.0,) = no expert",
    ),
    Key(
        "eval.ngram_select",
        "accuracy",
        RUNTIME,
        "the n-gram expert: the val figure that picks w: accuracy | cross_entropy (of the "
        "decision at a temperature fitted per w: reads every margin, not only flipped decisions)",
    ),
    Key("eval.ngram_order", 2, RUNTIME, "the n-gram expert: word n-grams up to this n (1..5)"),
    Key("eval.ngram_alpha", 0.3, RUNTIME, "the n-gram expert: additive smoothing of its counts"),
    Key(
        "eval.ngram_buckets",
        2**20,
        RUNTIME,
        "the n-gram expert: hash buckets of its n-grams (fewer: a smaller file, more collisions)",
    ),
    # see evaluate.degenerate_warning
    Key(
        "eval.degenerate_margin_ratio",
        1e-4,
        RUNTIME,
        "warn that the class models barely differ when the median over texts of (best - "
        "runner-up class log-likelihood) / |mean class log-likelihood| is below this (0.1 nat on "
        "a 1,000-nat review; identical class models give 0)",
    ),
    # --- generation (--mode=generate) ----------------------------------------------------
    Key("generate.per_class", 16, RUNTIME, "synthetic texts per class"),
    Key("generate.batch_size", 64, RUNTIME, "samples per decoding call"),
    Key("generate.max_new_tokens", 400, RUNTIME, "tokens sampled per text at most"),
    Key("generate.temperature", 1.0, RUNTIME, "sampling temperature"),
    Key("generate.top_k", 0, RUNTIME, "top-k sampling; 0 = off"),
    Key("generate.top_p", 0.95, RUNTIME, "nucleus sampling; 1.0 = off"),
    Key("generate.seed", 0, RUNTIME, "sampling seed"),
    Key("generate.min_tokens", 20, RUNTIME, "drop shorter samples"),
    Key("generate.dedupe", True, RUNTIME, "drop exact duplicates"),
    Key(
        "generate.min_margin",
        float("-inf"),
        RUNTIME,
        "keep samples with log p(x|c) - max_other log p(x|c') >= this",
    ),
    Key(
        "generate.max_margin",
        float("inf"),
        RUNTIME,
        "... and <= this (keep the samples near the decision boundary)",
    ),
    Key("generate.output", "synthetic.jsonl", RUNTIME, "the output file, in the workdir"),
    # --- explanations (--mode=explain) ---------------------------------------------------
    Key(
        "explain.tail_tokens",
        200,
        RUNTIME,
        "a truncated text's unread tokens shown (struck through) after the scored ones; the rest "
        "is left off the page and the jsonl, which say how many",
    ),
)


def defaults() -> ml_collections.ConfigDict:
    """A fresh config of every key at its default (experiment configs change it in place)."""
    config = ml_collections.ConfigDict()
    for key in KEYS:
        *parents, leaf = key.name.split(".")
        node = config
        for p in parents:
            if p not in node:
                node[p] = ml_collections.ConfigDict()
            node = node[p]
        node[leaf] = key.default
    return config


def overridden(config: ml_collections.ConfigDict, argv: list[str]) -> tuple:
    """(`config` with argv's --config.* overrides applied, the rest of argv): ml_collections
    parses the overrides, with the types and errors it has after --config=FILE. The command line
    and `search.candidates` parse with it; `config` itself is changed."""
    holder = flags.FlagValues()
    flag = config_flags.DEFINE_config_dict("config", config, flag_values=holder, sys_argv=argv)
    rest = holder(argv, known_only=True)
    return flag.value, rest


def kind(name: str) -> str:
    """A dotted key's kind; a key no declaration names (added by an experiment file) counts as
    changing the model, the safe side."""
    return next((k.kind for k in KEYS if k.name == name), MODEL)


def table() -> str:
    """--help_config: every key with its default, kind and meaning, and what the kinds mean."""

    def wrap(text: str, indent: str) -> list[str]:
        return textwrap.wrap(text, 100, initial_indent=indent, subsequent_indent=indent + "  ")

    lines = [
        "Every config key as KEY = DEFAULT  [KIND], its meaning below it. --config.KEY=VALUE sets",
        "one, on --config=FILE or on a trained run's own config. KIND: what may change on a run",
        "that has been trained (a resumed training; eval, generate, predict, explain):",
    ]
    for name, text in KINDS.items():
        lines += wrap(f"{name:8s} {text}", "  ")
    lines.append("")
    for key in KEYS:
        lines += [f"{key.name} = {key.default!r}  [{key.kind}]", *wrap(key.meaning, "    ")]
    return "\n".join(lines)
