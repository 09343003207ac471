"""The defaults every experiment config starts from: every setting a user can change is here.

Experiment configs import `get_config()` from this file and change what their question needs;
any field can be overridden on the command line, e.g. `--config.train.epochs=12`.
Paths to `../shared` are the offline fallbacks of the real sources (tfds, the HF hub).
"""

from pathlib import Path

import ml_collections

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Compiled programs are stored here and reused by later runs of the same shapes ('' = off):
    # a repeated eval of gpt2 skips ~40 s of compiling its 9 scoring shapes.
    c.compile_cache_dir = str(Path("~/.cache/gencls_jax/xla").expanduser())
    c.compile_cache_min_secs = 1.0  # programs that compile faster are not stored (JAX's default)
    # Multi-process runs (run.py --coordinator_address/--num_processes/--process_id, or
    # train.distributed): a process that stops answering fails the others after this long.
    c.heartbeat_timeout_s = 100
    c.progress_bars = True  # tqdm bars (with ETA) for training epochs and scoring passes

    # --- model -------------------------------------------------------------------------
    c.model = m = ml_collections.ConfigDict()
    m.size = "gpt2"  # gpt2 | gpt2-medium | gpt2-large | gpt2-xl | tiny
    #   (architecture when init='scratch')
    m.init = "pretrained"  # 'pretrained' (m.pretrained from the hub/folder) | 'scratch'
    #   | <checkpoint folder>
    m.pretrained = "gpt2"  # hub name or local folder, used when init == 'pretrained'
    m.conditioning = "per_class"  # per_class: one LM per class
    #                               | label_prefix: one LM, label tokens first
    #                               | unconditional: one LM of all texts (in-domain pretraining)
    #                               | discriminative: GPT-2 + a classification head (the baseline)
    m.dtype = "bfloat16"  # compute dtype: float32 | bfloat16 | float16 (parameters stay float32)
    m.remat = "none"  # none | full | dots:
    #   recompute activations in the backward pass to save memory
    m.attention = "auto"  # auto (cudnn on GPU, else xla) | xla
    #   | cudnn (flash attention through cuDNN)
    m.layer_unroll = 0  # transformer layers per scan iteration;
    #   0 = all (fastest), 1 = fastest compile
    m.dropout = 0.1
    m.pool = "mean"  # conditioning=discriminative: the head reads the mean of the features | last
    m.head_chunk = 8192  # scoring: tokens per chunk of the LM head
    #   (its float32 logits: 8192 x 50304 x 4 B = 1.6 GB)

    # --- data --------------------------------------------------------------------------
    c.data = d = ml_collections.ConfigDict()
    d.source = "tfds"  # tfds | jsonl | csv | aclimdb
    d.tfds_name = "imdb_reviews"
    d.tfds_data_dir = ""  # '' = tfds default
    d.fallback_to_local = True  # when tfds cannot download, read the local files below
    d.train_path = str(SHARED / "imdb" / "train.jsonl.gz")
    d.test_path = str(SHARED / "imdb" / "test.jsonl.gz")
    d.unsup_path = str(SHARED / "imdb" / "unsup.jsonl.gz")
    d.text_field = "text"
    d.label_field = "label"
    d.label_names = ()  # () = from the data (the source's declared names, else the sorted
    #                     labels / 0..max); naming them fixes the class order, e.g. ("neg", "pos")
    #                     in the IMDB configs
    d.tokenizer = "gpt2"  # hub name or folder
    d.tokenizer_fallback = str(SHARED / "gpt2-tokenizer")
    d.cache_dir = str(Path("~/.cache/gencls_jax").expanduser())
    d.clean_html = False  # replace IMDB's <br /> tags with newlines
    d.append_eos = True  # end every text with <|endoftext|> (trained and scored)
    d.val_size = 0.05  # fraction (< 1) or count of train held out, stratified (of the N per class
    #                    when per_class_limit > 0: a run at N per class uses only those N)
    d.val_path = ""  # a validation file (jsonl/csv) instead of the hold-out, e.g. SST-2's dev set
    d.per_class_limit = 0  # > 0: N training examples per class (seeded, stratified)
    d.extra_train_path = ""  # jsonl of extra (e.g. synthetic) training texts
    d.pretrain_splits = ("unsup", "train")  # conditioning='unconditional':
    #   texts whose labels are ignored
    d.max_len = 1024  # tokens per training row / scoring window
    d.long_text = "truncate"  # error | truncate | window (texts longer than max_len)
    d.window_stride = 512  # window mode: tokens advanced per window
    d.batching = "pack"  # training rows: pack | bucket | pad
    d.bucket_lengths = (128, 192, 256, 320, 384, 512, 640, 768, 1024)  # bucketed shapes
    #   (training and scoring): IMDB test padding 14% in 9 shapes, against 29% in
    #   (128, 256, 512, 1024) (BUILD_NOTES, scoring)
    d.prefetch = 2  # batches prefetched to the device
    d.tfds_splits = ml_collections.ConfigDict(
        dict(train="train", test="test", unsup="unsupervised")
    )
    d.aclimdb_path = ""  # source 'aclimdb': the aclImdb folder (or its parent) or aclImdb_v1.tar.gz
    d.id_field = "id"  # jsonl/csv: row id field (missing -> 'file:row')
    d.tokenize_batch_size = 1000  # texts per tokenizer call
    d.compact_vocab = 0  # > 0: keep the N most frequent token ids of the training split (EOS/BOS
    #   always), every other id one shared 'other' id; vocabulary N + 1 (scratch models; a CPU
    #   model's LM head is most of its cost). Stored in run_info.json (data/compact.py)
    d.label_prefix_template = "Review sentiment: {label_name}\n"  # label_prefix conditioning;
    #   weight 0

    # --- training ----------------------------------------------------------------------
    c.train = t = ml_collections.ConfigDict()
    # What a step minimises (objectives.py): lm = token-weighted negative log-likelihood;
    # decision = lm_weight x LM loss of the true class + decision_weight x cross-entropy of
    # softmax_c(log p(x|c) + log p(c)) (every class scores every text; batching pad or bucket).
    t.objective = "lm"
    t.lm_weight = 1.0  # decision: weight of the LM term (ignored by conditioning=discriminative)
    t.decision_weight = 1.0  # decision: lambda, the weight of the classification term
    t.epochs = 6  # per_class: every class model sees its own texts once per epoch,
    #   on its own schedule
    t.min_steps = 0  # > 0: more epochs than train.epochs if the run would take fewer steps
    t.batch_size = 8  # rows per optimizer step per class model (global, over all devices)
    t.grad_accum = 1  # micro-batches per optimizer step
    t.lr = 5e-5
    t.schedule = "cosine"  # constant | linear | cosine (after warmup)
    t.warmup_steps = 100  # linear warmup updates (0 = none);
    #   the first update already gets lr / warmup
    t.warmup_max_fraction = 0.1  # ... but at most this fraction of a model's updates (at least 1):
    #   warmup = min(warmup_steps, max(1, floor(fraction * updates)));
    #   a small class or data set is not all warmup
    t.end_lr_factor = 0.0  # decay towards lr * end_lr_factor
    #   (the last update stays just above it, so > 0)
    t.weight_decay = 0.01  # AdamW; not on biases, LayerNorm, embeddings
    t.b1 = 0.9
    t.b2 = 0.999
    t.eps = 1e-8
    t.grad_clip = 1.0  # global norm; 0 = off
    t.loss_scale = 2.0**15  # initial dynamic loss scale (float16 only)
    t.log_every = 50  # steps
    t.ckpt_every = 500  # steps; also at each epoch end
    t.keep_checkpoints = 2  # latest K kept, plus the best
    t.best_metric = "val_loss"  # val_loss | val_accuracy
    t.early_stop_patience = 0  # epochs without improvement before stopping; 0 = off
    t.max_steps = 0  # > 0: stop after this many steps (smoke tests, benchmarks)
    t.class_shards = (
        1  # per_class: split the K class models over this many device groups (K % it == 0)
    )
    t.fsdp = False  # params and optimizer state split over the 'data' devices too (FSDP-style):
    #   for models whose weights, grads and Adam moments do not fit one device (gpt2-large/xl)
    t.stack_classes = True  # per_class: vmap the K models in one step;
    #   False: lax.map, one class at a time
    t.distributed = False  # multi-host: jax.distributed.initialize() with cluster auto-detection
    t.loss_scale_period = 2000  # float16: finite steps in a row before the loss scale grows
    t.loss_scale_factor = 2.0  # float16: scale *= factor after a good period, /= factor on overflow
    t.loss_scale_min = 1.0  # float16: the scale never drops below this
    t.async_checkpoint = True  # orbax writes checkpoints in the background
    t.tensorboard = True  # also write TensorBoard events
    #   (if tensorboardX / torch.utils.tensorboard imports)
    t.plot = True  # curves.png in the workdir at the end

    # --- evaluation --------------------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.batch_size = 32  # rows per scoring call at data.max_len;
    #   shorter buckets get more (same tokens per call)
    e.splits = ("val", "test")
    e.decision = "bayes"  # headline rule: bayes (log-lik + log prior) | per_token (mean log-lik)
    #   | calibrated (offsets fit on val)
    e.sample_per_class = 500  # the original protocol's 1,000-review sample (500 per class)
    e.train_sample_per_class = 500  # training texts per class re-scored
    #   for the train/validation gap
    e.test_per_class = 0  # > 0: score only this many test texts per class (seeded); 0 = all
    e.report_rules = ("bayes", "per_token", "calibrated")  # decision rules reported side by side
    e.degenerate_margin_ratio = 1e-4  # warn that the class models barely differ when the median
    #   over texts of (best - runner-up class log-likelihood) / |mean class log-likelihood| is below
    #   this (0.1 nat on a 1,000-nat review; identical class models give 0);
    #   see evaluate.degenerate_warning

    # --- generation (run.py --mode=generate) ---------------------------------------------
    c.generate = g = ml_collections.ConfigDict()
    g.per_class = 16  # synthetic texts per class
    g.batch_size = 64
    g.max_new_tokens = 400
    g.temperature = 1.0
    g.top_k = 0  # 0 = off
    g.top_p = 0.95  # 1.0 = off
    g.seed = 0
    g.min_tokens = 20  # drop shorter samples
    g.dedupe = True  # drop exact duplicates
    g.min_margin = float("-inf")  # keep samples with log p(x|c) - max_other log p(x|c') >= this
    g.max_margin = float("inf")  # ... and <= this (keep the samples near the decision boundary)
    g.output = "synthetic.jsonl"  # in the workdir

    # --- explanations (run.py --mode=explain) ---------------------------------------------
    c.explain = x = ml_collections.ConfigDict()
    x.tail_tokens = 200  # a truncated text's unread tokens shown (struck through) after the
    #   scored ones; the rest is left off the page and the jsonl, which say how many
    return c
