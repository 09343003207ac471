"""Train-step throughput and memory: our JAX GPT-2 beside Hugging Face PyTorch on the same GPU.

Random-init GPT-2 of the sizes asked (`--sizes`, gencls_jax.model.gpt2 SIZES), bfloat16 compute,
AdamW, fixed batch x length, no dropout unless `--dropout`. Per (size, remat, T, batch) and
implementation: tokens/s (median of `--repeats` timed repeats, with their min-max), MFU, memory
and compile seconds; `--max-batch` also finds the largest batch that fits; `--out` writes every
figure as JSON.

    python bench/bench_train_step.py --lengths 512,1024 --batch 16 --steps 20
    python bench/bench_train_step.py --sizes gpt2-medium --lengths 1024 --remat none,full \
        --variants cudnn --peers compile --max-batch --device-time-budget 530 --out m.json
    python bench/bench_train_step.py --lengths 1024 --variants cudnn --peers compile \
        --dropout 0.1 --prng threefry2x32,rbg,unsafe_rbg

Ours: the real train step (training/step.py: AdamW, clipping, schedule, donation), variants
attention[+packed]: cudnn = right-padded rows (causal kernel), cudnn+packed = packed rows
(from T = `model.packed_offsets_from` cuDNN's segment-offsets kernel, bounded by
`data.pack_texts`; until 2026-11-30's sixth session the dense segment mask), xla = XLA
attention; `--remat` = `model.remat` (none | full | dots).
`--dropout RATE` = `model.dropout` (embedding and residual dropout; 0 = off, today's figures) and
`--prng IMPL[,IMPL...]` = `train.dropout_prng` (threefry2x32 | rbg | unsafe_rbg: the PRNG of the
dropout masks, drawn by `jax.random.bernoulli`; or hash, the default since 2026-11-30's eighth
lease: threefry2x32 keys, `model.dropout_masks=hash`; another than hash needs `--dropout`):
each variant runs once per PRNG, a row each, named
'ours VARIANT/PRNG' (e.g. 'ours cudnn/rbg'), the table's dropout column saying the rate. The
peer drops out at the same rate (HF resid_pdrop = embd_pdrop = RATE, attn_pdrop = 0: ours has
no attention dropout). The peers: HF GPT2LMHeadModel of the same size (n_layer, n_embd,
n_head), eager or torch.compile, fused AdamW, bf16 autocast; with remat full or dots the peer
runs HF's activation checkpointing (`gradient_checkpointing_enable()`,
`activation_checkpointing_enable()` since transformers 5; non-reentrant, every block recomputed:
it has no 'dots' policy), remat 'ckpt' in the tables, measured once for both.

Every measurement runs in its own process (the bf16 matmul rate in one more): JAX's allocator
keeps what it grew and its peak counter is a process-wide high-water mark, torch's caching
allocator likewise, so in one process an earlier variant, or the other framework, would set a
later one's peak and shrink the batch that fits; a child also recovers cleanly from running out
of memory and can be killed at the time budget. It costs a few seconds of start-up each.

Figures:
- tokens/s: batch x T / seconds per step over `--steps` steps (at a larger batch of the search,
  the same tokens per repeat, at least 3 steps), after 3 untimed warm-up calls.
- MFU: model FLOPs, 6 * params per token (weights incl. the tied head) plus attention
  12 * layers * T * d (forward+backward of QK^T and AV; causal work counted in full, as PaLM's
  appendix does; remat's recomputation not counted), over the bf16 matmul rate measured in this
  run (`--matmul-n`) and over the datasheet's (`--datasheet-tflops`: 989, H100/H200 SXM dense).
- memory (GiB): ours = `peak_bytes_in_use` of JAX's allocator on the GPU (the child's high-water
  mark: parameters, AdamW state, the batches, activations, workspace), with in brackets the
  compiled step's `memory_analysis()`: arguments + outputs + temporaries - aliased bytes (the
  donated state counted once), what XLA planned for the step alone (no other live arrays, no
  fragmentation; the only figure on a CPU). torch = `torch.cuda.max_memory_allocated()`. JAX
  children get XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 (JAX's default 0.75 would cap the batch that
  fits below torch's, which may take the whole GPU), unless the environment sets it.
- compile s: seconds of the 3 warm-up calls beyond 3 steady steps: compilation (for
  torch.compile also its recompiles while AdamW's state appears) and first-call set-up. JAX
  compiles from scratch in every child (unless JAX_COMPILATION_CACHE_DIR is set);
  torch.compile keeps its on-disk caches (inductor, triton): its later rows compile faster.
- largest batch (`--max-batch`), per impl, size, remat and T: from `--batch`, doubling until out
  of memory (JAX's RESOURCE_EXHAUSTED, torch's OutOfMemoryError) or `--max-batch-cap`, halving
  instead if `--batch` does not fit, then one bisection step between the last fit and the first
  OOM. A doubling is not run when the first row's peak, scaled linearly in the batch, stays
  under 90% of the memory limit (it surely fits: weights and optimizer state do not grow with
  the batch); the answer is always measured. Every batch run is a full measurement (a row of
  the table). `--search-budget` caps one search, `--device-time-budget` the whole call: what
  would not finish in time (judged by the shortest run of its impl and size so far) is skipped
  and listed, a run still going at the budget is killed, and the tables are printed whatever
  happened (Ctrl-C too: exit 130). Every finished row is in `--out` at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULT = "BENCH_RESULT "  # the worker's last stdout line: this, then its JSON
WARMUP_CALLS = 3  # untimed calls before the repeats (compilation, AdamW state, allocator)
MIN_JOB_S = 20  # a first measurement of its kind is not started with less time left than this
SURE_FRACTION = 0.9  # of the memory limit: below it a batch is taken to fit without a run
GIB = 2**30
REMATS = ("none", "full", "dots")
ATTENTIONS = ("xla", "cudnn")
PEERS = ("eager", "compile")
DEFAULT_PRNG = "threefry2x32"  # the keys' PRNG under --prng hash (JAX's default PRNG)
DEFAULT_MASKS = "hash"  # --prng's default: the shipped masks (model.dropout_masks), those keys


# --- in the worker: one measurement ---------------------------------------------------------


def matmul_tflops(n: int = 8192, reps: int = 20) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def model_flops_per_token(n_params: int, n_layer: int, d: int, t: int) -> float:
    return 6 * n_params + 12 * n_layer * t * d


def timed_calls(call, sync, steps: int, repeats: int) -> dict:
    """`call(i)` WARMUP_CALLS times (each timed alone), then `repeats` timed runs of `steps`
    calls; `sync()` waits for the device. Seconds per step of each repeat, their median."""
    warmup = []
    for i in range(WARMUP_CALLS):
        t0 = time.perf_counter()
        call(i)
        sync()
        warmup.append(time.perf_counter() - t0)
    per_step = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            call(i)
        sync()
        per_step.append((time.perf_counter() - t0) / steps)
    median = statistics.median(per_step)
    return dict(
        step_s=median,
        repeat_step_s=per_step,
        warmup_s=warmup,
        compile_s=max(0.0, sum(warmup) - WARMUP_CALLS * median),  # noise can make it < 0
    )


def random_batch(rng: np.random.Generator, batch: int, length: int, packed: bool) -> dict:
    """Random tokens; packed rows hold texts of ~300 tokens (IMDB's mean), positions restarting
    per text, one segment id each."""
    tokens = rng.integers(0, 50257, (batch, length + 1)).astype(np.int32)
    seg = np.minimum(np.arange(length) // 300 + 1, 99) if packed else np.ones(length, np.int32)
    pos = np.arange(length) - (np.arange(length) // 300) * 300 if packed else np.arange(length)
    return dict(
        inputs=tokens[:, :-1],
        targets=tokens[:, 1:],
        weights=np.ones((batch, length), np.float32),
        positions=np.broadcast_to(pos, (batch, length)).astype(np.int32),
        segment_ids=np.broadcast_to(seg, (batch, length)).astype(np.int32),
    )


def jax_memory(step, state, batch) -> dict:
    """The compiled step's planned bytes (memory_analysis: arguments + outputs + temporaries -
    aliased) and, where the backend keeps them (GPU), the allocator's peak and limit. Called
    after the step ran: the lowering hits jit's cache, nothing compiles again (analysis_s)."""
    import jax

    t0 = time.perf_counter()
    ma = step.lower(state, batch).compile().memory_analysis()
    out = dict(analysis_s=time.perf_counter() - t0)
    if ma is not None:
        out["xla_bytes"] = (
            ma.argument_size_in_bytes
            + ma.output_size_in_bytes
            + ma.temp_size_in_bytes
            - ma.alias_size_in_bytes
        )
        out["xla_temp_bytes"] = ma.temp_size_in_bytes
    stats = jax.devices()[0].memory_stats() or {}
    out["peak_bytes"] = stats.get("peak_bytes_in_use")
    out["limit_bytes"] = stats.get("bytes_limit")
    return out


def real_step(
    size: str,
    batch: int,
    length: int,
    attention: str,
    packed: bool,
    remat: str = "none",
    dropout: float = 0.0,
    prng: str = "threefry2x32",
    overrides: dict | None = None,
):
    """Our real train step (training/step.py: AdamW, clipping, schedule, donation) for one
    model, its state on the device and 4 random batches: (step, state, batches, arch).
    `dropout` (model.dropout) drawn by the PRNG `prng` (train.dropout_prng); `overrides`:
    more `model.*` keys (e.g. {"layer_unroll": 1})."""
    import jax
    import ml_collections

    from configs import base
    from gencls_jax.model import gpt2 as M
    from gencls_jax.system import sharding
    from gencls_jax.training import step as T
    from gencls_jax.training.objectives import lm_objective

    c = base.get_config()
    c.train.batch_size, c.model.attention, c.model.dtype, c.model.dropout = (
        batch,
        attention,
        "bfloat16",
        dropout,
    )
    c.model.remat = remat
    for k, v in (overrides or {}).items():
        setattr(c.model, k, v)
    c.train.dropout_prng = DEFAULT_PRNG if prng == "hash" else prng
    c.model.dropout_masks = "hash" if prng == "hash" else "jax"
    c.model.conditioning = "unconditional"
    c.data.batching = "pack" if packed else "bucket"
    config = M.resolve_config(M.config_for(size), c.model)
    params = M.init_params(config)
    arch = dict(n_params=M.count_params(params), n_layer=config.n_layer, n_embd=config.n_embd)
    mesh = sharding.make_mesh()
    tx, step = T.compiled_train_step(
        config,
        ml_collections.FrozenConfigDict(c.train),
        False,
        100_000,
        mesh,
        lm_objective(c, False),
    )
    state = jax.device_put(T.init_state(params, tx, c.train, 0, None), sharding.replicated(mesh))
    del params
    rng = np.random.default_rng(0)
    data = [sharding.shard_batch(random_batch(rng, batch, length, packed), mesh) for _ in range(4)]
    return step, state, data, arch


def bench_jax(
    size: str,
    batch: int,
    length: int,
    steps: int,
    attention: str,
    packed: bool,
    remat: str = "none",
    repeats: int = 1,
    dropout: float = 0.0,
    prng: str = "threefry2x32",
) -> dict:
    """`real_step` timed: step_s / tokens_s the median repeat (bench_scaling.py reads these
    two)."""
    import jax

    step, state, data, arch = real_step(
        size, batch, length, attention, packed, remat, dropout, prng
    )
    box = {"state": state}
    del state

    def call(i):
        box["state"], box["metrics"] = step(box["state"], data[i % 4])

    r = timed_calls(call, lambda: jax.block_until_ready(box["metrics"]), steps, repeats)
    memory = jax_memory(step, box["state"], data[0])
    return dict(r, tokens_s=batch * length / r["step_s"], memory=memory, **arch)


def bench_torch(
    batch: int,
    length: int,
    steps: int,
    compile: bool,
    arch: dict | None = None,
    checkpointing: bool = False,
    repeats: int = 1,
    device: str = "cuda",
    dropout: float = 0.0,
) -> dict:
    """HF GPT2LMHeadModel of `arch` (n_layer, n_embd, n_head[, n_positions]; gpt2 by default),
    bf16 autocast, fused AdamW (on CUDA), eager or torch.compile of the whole step. `device`
    'auto': CUDA if torch sees it, else the CPU (a plumbing check only). `dropout`: embedding
    and residual dropout (embd_pdrop, resid_pdrop) as ours; attention dropout stays 0 (ours has
    none)."""
    import torch
    import transformers

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        **(arch or {}), resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=0.0, use_cache=False
    )
    with torch.device(device):  # initialised where it runs: no copy of a large model's weights
        model = transformers.GPT2LMHeadModel(cfg).train()
    if checkpointing:  # non-reentrant: the one torch.compile traces through
        kw = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, fused=device == "cuda")

    def step(tokens):
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if compile:
        step = torch.compile(step)
    data = [torch.randint(0, 50257, (batch, length), device=device) for _ in range(4)]
    cuda = device == "cuda"
    r = timed_calls(
        lambda i: step(data[i % 4]),
        torch.cuda.synchronize if cuda else lambda: None,
        steps,
        repeats,
    )
    memory = dict(peak_bytes=torch.cuda.max_memory_allocated() if cuda else None)
    if cuda:
        memory["limit_bytes"] = torch.cuda.mem_get_info()[1]
    return dict(
        r,
        tokens_s=batch * length / r["step_s"],
        memory=memory,
        n_params=sum(p.numel() for p in model.parameters()),
        n_layer=cfg.n_layer,
        n_embd=cfg.n_embd,
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        torch=torch.__version__,
        transformers=transformers.__version__,
        device_name=torch.cuda.get_device_name() if cuda else "cpu",
    )


def is_oom(text: str) -> bool:
    """JAX's RESOURCE_EXHAUSTED, torch's 'CUDA out of memory', CUDA's and cuDNN's allocation
    failures."""
    low = text.lower()
    return any(
        s in low
        for s in ("resource_exhausted", "out of memory", "out_of_memory", "failed to allocate")
    )


def run_job(spec: dict) -> dict:
    """One measurement, in this (worker) process."""
    if spec["job"] == "matmul":
        import jax

        return dict(
            tflops=matmul_tflops(spec["n"]),
            device=jax.devices()[0].device_kind,
            platform=jax.default_backend(),
            jax=jax.__version__,
        )
    if spec["job"] == "ours":
        attention, _, packed = spec["variant"].partition("+")
        return bench_jax(
            spec["size"],
            spec["batch"],
            spec["T"],
            spec["steps"],
            attention,
            packed == "packed",
            spec["remat"],
            spec["repeats"],
            spec.get("dropout", 0.0),
            spec.get("prng", DEFAULT_MASKS),
        )
    return bench_torch(
        spec["batch"],
        spec["T"],
        spec["steps"],
        spec["peer"] == "compile",
        spec["arch"],
        spec["ckpt"],
        spec["repeats"],
        spec["device"],
        spec.get("dropout", 0.0),
    )


def worker(spec_json: str) -> None:
    """Child entry: run one job, print its result (or its failure, OOM told apart) as JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs/, gencls_jax
    spec = json.loads(spec_json)
    try:
        out = dict(status="ok", **run_job(spec))
    except Exception as e:  # the parent's table shows it; a failed variant never stops the call
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        out = dict(status="oom" if is_oom(f"{type(e).__name__} {e}") else "error", error=msg[:300])
    print(RESULT + json.dumps(out), flush=True)


# --- in the parent: plan, children, tables --------------------------------------------------


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # grow as needed: true peaks
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    return env


def run_child(spec: dict, timeout: float | None) -> dict:
    """`spec` in a fresh process (its own session: a timeout or Ctrl-C kills it together with
    torch.compile's worker processes). status: ok | oom | error | timeout."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as e:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        r = dict(status="timeout", error=f"killed at the time budget ({timeout:.0f} s)")
        return dict(r, wall_s=time.perf_counter() - t0)
    lines = [x for x in out.splitlines() if x.startswith(RESULT)]
    if lines:
        r = json.loads(lines[-1][len(RESULT) :])
    else:  # died without a word (killed, aborted): its stderr says why
        tail = " | ".join(x.strip() for x in err.strip().splitlines()[-3:])[-300:]
        r = dict(status="oom" if is_oom(err) else "error", error=f"exit {proc.returncode}: {tail}")
    return dict(r, wall_s=time.perf_counter() - t0)


def impl_name(spec: dict) -> str:
    """'ours VARIANT', with dropout on 'ours VARIANT/PRNG' (one word: before_after.sh reads
    'ours NAME T tokens/s' lines), or 'HF torch PEER'."""
    if spec["job"] != "ours":
        return f"HF torch {spec['peer']}"
    prng = f"/{spec.get('prng', DEFAULT_MASKS)}" if spec.get("dropout") else ""
    return f"ours {spec['variant']}{prng}"


def remat_name(spec: dict) -> str:
    if spec["job"] == "ours":
        return spec["remat"]
    return "ckpt" if spec["ckpt"] else "none"


def spread(r: dict) -> tuple[float, float, float]:
    """tokens/s of the median repeat, of the slowest and of the fastest."""
    tokens = r["batch"] * r["T"]
    return tokens / r["step_s"], tokens / max(r["repeat_step_s"]), tokens / min(r["repeat_step_s"])


def mfu(r: dict, tflops: float | None) -> float | None:
    if not tflops:
        return None
    flops = model_flops_per_token(r["n_params"], r["n_layer"], r["n_embd"], r["T"])
    return spread(r)[0] * flops / (tflops * 1e12)


def memory_text(r: dict) -> str:
    m = r.get("memory") or {}
    peak, xla = m.get("peak_bytes"), m.get("xla_bytes")
    if peak is None:
        return f"XLA {xla / GIB:.2f}" if xla is not None else "-"
    return f"{peak / GIB:.1f}" + (f" (XLA {xla / GIB:.1f})" if xla is not None else "")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


class Bench:
    """The call's measurements, in order: children run, results kept, the live line printed,
    the JSON rewritten after each (a killed call keeps what finished)."""

    def __init__(self, args):
        self.args, self.t0 = args, time.perf_counter()
        self.rows: list[dict] = []
        self.searches: list[dict] = []
        self.skipped: list[str] = []
        self.done: dict[str, dict] = {}  # spec -> row: the torch peer serves full and dots once
        self.peak: float | None = None
        self.info: dict = {}

    def left(self) -> float | None:
        budget = self.args.device_time_budget
        return budget - (time.perf_counter() - self.t0) if budget else None

    def expected_s(self, spec: dict) -> float:
        """The shortest wall time of a finished measurement of the same impl and size
        (compilation dominates: one that cannot finish in the time left is not started), or
        MIN_JOB_S for the first."""
        walls = [
            r["wall_s"]
            for r in self.rows
            if (impl_name(r), r["size"]) == (impl_name(spec), spec["size"])
            and r["status"] in ("ok", "oom")
        ]
        return min(walls, default=MIN_JOB_S)

    def label(self, spec: dict) -> str:
        return (
            f"{impl_name(spec)} {spec['size']} remat={remat_name(spec)} T={spec['T']} "
            f"batch={spec['batch']}"
        )

    def measure(self, spec: dict) -> dict:
        key = json.dumps(spec, sort_keys=True)
        if key in self.done:
            return self.done[key]
        left, need = self.left(), self.expected_s(spec)
        if left is not None and left < need:
            self.skipped.append(self.label(spec))
            print(
                f"skipped ({left:.0f} s of the budget left, a run takes {need:.0f}): "
                + self.label(spec)
            )
            return dict(spec, status="skipped")
        row = dict(spec, **run_child(spec, left))
        self.rows.append(row)
        self.done[key] = row
        self.live(row)
        self.save()
        return row

    def live(self, r: dict) -> None:
        """One line per measurement; 'ours VARIANT T tokens/s' first, as bench/before_after.sh
        parses it."""
        rate = f", dropout {r['dropout']:g}" if r.get("dropout") else ""
        where = (
            f"({r['size']}, remat {remat_name(r)}, batch {r['batch']}{rate}, {r['wall_s']:.0f} s)"
        )
        if r["status"] != "ok":
            print(f"{impl_name(r):24s} {r['T']:5d} {r['status'].upper()}: {r['error']}  {where}")
            return
        if r.get("device_name") == "cpu":
            where += " [torch on the CPU: a plumbing check only]"
        med, lo, hi = spread(r)
        print(
            f"{impl_name(r):24s} {r['T']:5d} {med:10.0f} tok/s [{lo:.0f}-{hi:.0f}]  "
            f"MFU {pct(mfu(r, self.peak))} of measured, "
            f"{pct(mfu(r, self.args.datasheet_tflops))} of {self.args.datasheet_tflops:g}  "
            f"mem {memory_text(r)} GiB  compile {r['compile_s']:.1f} s  {where}"
        )

    def save(self) -> None:
        if not self.args.out:
            return
        doc = dict(
            args=vars(self.args),
            matmul_tflops=self.peak,
            datasheet_tflops=self.args.datasheet_tflops,
            **self.info,
            rows=self.rows,
            searches=self.searches,
            skipped=self.skipped,
        )
        tmp = Path(f"{self.args.out}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.args.out)  # whole: a call killed while writing keeps the last

    def matmul(self) -> None:
        r = run_child(dict(job="matmul", n=self.args.matmul_n), self.left())
        if r["status"] != "ok":
            print(f"matmul rate: {r['status']}: {r.get('error')} (MFU of measured: '-')")
            return
        self.peak = r["tflops"]
        self.info = dict(device=r["device"], platform=r["platform"], jax=r["jax"])
        print(f"device: {r['device']}  jax {r['jax']}")
        print(f"measured bf16 matmul rate ({self.args.matmul_n}^3, jax): {self.peak:.4g} TFLOP/s")

    def search(self, spec: dict, first: dict) -> None:
        """The largest batch that fits, from `first` (the row at --batch): halving while it
        does not fit, else doubling until out of memory or --max-batch-cap (a doubling that
        `first`'s memory already guarantees, `sure_fit`, is not run), one bisection step, then
        the answer measured if it was not."""
        args, t0 = self.args, time.perf_counter()
        seen = {spec["batch"]: first["status"]}  # batch -> ok | oom | sure | what stopped it
        sure, note = sure_fit(first), ""

        def fit() -> int | None:
            return max((b for b, s in seen.items() if s in ("ok", "sure")), default=None)

        def oom() -> int | None:
            return min((b for b, s in seen.items() if s == "oom"), default=None)

        def attempt(b: int) -> bool:
            """Measure batch b; False when the search must stop (a failure, the budget)."""
            nonlocal note
            if args.search_budget and time.perf_counter() - t0 > args.search_budget:
                seen[b] = "cut by --search-budget"
            else:
                steps = max(3, math.ceil(args.steps * args.batch / b))
                seen[b] = self.measure(dict(spec, batch=b, steps=steps))["status"]
            if seen[b] in ("ok", "oom"):
                return True
            note = f"stopped at batch {b}: {seen[b]}"
            return False

        go = True
        while go and fit() is None and oom() > 1:
            go = attempt(oom() // 2)
        while go and fit() is not None and oom() is None and 2 * fit() <= args.max_batch_cap:
            b = 2 * fit()
            if sure(b):
                seen[b] = "sure"
            else:
                go = attempt(b)
        if go and args.bisect and fit() is not None and oom() is not None and oom() - fit() > 1:
            go = attempt((fit() + oom()) // 2)
        while go and fit() is not None and seen[fit()] == "sure":
            go = attempt(fit())
        fit, oom = fit(), oom()
        if go and fit is not None and oom is None:
            note = f"--max-batch-cap {args.max_batch_cap} reached"
        tried = [(b, "fits by memory" if s == "sure" else s) for b, s in seen.items()]
        found = dict(
            impl=impl_name(spec),
            size=spec["size"],
            remat=remat_name(spec),
            T=spec["T"],
            largest=fit,
            first_oom=oom,
            tried=tried,
            seconds=time.perf_counter() - t0,
            note=note,
        )
        self.searches.append(found)
        self.save()
        print(
            f"largest batch {impl_name(spec)} {spec['size']} remat={remat_name(spec)} "
            f"T={spec['T']}: {fit} (first OOM {oom}; tried "
            + ", ".join(f"{b}: {s}" for b, s in tried)
            + (f"; {note}" if note else "")
            + ")"
        )


# --- the call ---------------------------------------------------------------------------------


def plan(args) -> list[dict]:
    """Every (size, remat, T) x implementation at --batch, in run order: ours first, then the
    peers, so a peer's slow compile cannot use up the call's budget before our row (on the
    H200, 2026-11-30, HF gpt2-large with checkpointing under torch.compile ran past a 150 s
    budget and our row was skipped)."""
    from gencls_jax.model import gpt2 as M

    specs = []
    for size in args.sizes:
        arch = dict(M.SIZES[size])
        common = dict(
            size=size,
            batch=args.batch,
            steps=args.steps,
            repeats=args.repeats,
            dropout=args.dropout,
        )
        for remat in args.remat:
            for length in args.lengths:
                for variant in args.variants:
                    for prng in args.prng:
                        ours = dict(job="ours", variant=variant, remat=remat, prng=prng)
                        specs.append(dict(common, **ours, T=length))
                for peer in args.peers:
                    ckpt = remat != "none"
                    hf = dict(
                        job="torch", peer=peer, arch=arch, ckpt=ckpt, device=args.torch_device
                    )
                    specs.append(dict(common, **hf, T=length))
    return specs


def sure_fit(row: dict):
    """batch -> whether `row`'s peak memory, scaled linearly in the batch, stays under
    SURE_FRACTION of the limit (the fixed part, weights and optimizer state, does not grow with
    the batch, so this over-estimates). Never sure without a measured peak and limit."""
    m = row.get("memory") or {}
    peak, limit = m.get("peak_bytes"), m.get("limit_bytes")
    if row["status"] != "ok" or not peak or not limit:
        return lambda b: False
    return lambda b: b * peak / row["batch"] <= SURE_FRACTION * limit


def split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def check_args(args) -> str | None:
    """The first thing wrong with the arguments, in one line, or None."""
    from gencls_jax.model import gpt2 as M
    from gencls_jax.training.step import DROPOUT_PRNGS

    if args.lengths is None:
        return "--lengths takes integers, comma-separated"
    if not args.sizes or not args.lengths:
        return "--sizes and --lengths need at least one value each"
    if not args.variants and not args.peers:
        return "nothing to measure: --variants and --peers are both empty"
    for size in args.sizes:
        if size not in M.SIZES:
            return f"unknown size {size!r}; known: {', '.join(M.SIZES)}"
        n_positions = M.config_for(size).n_positions
        for length in args.lengths:
            if not 1 <= length <= n_positions:
                return f"T={length} is outside 1..{n_positions} ({size}'s n_positions)"
    bad = [r for r in args.remat if r not in REMATS]
    if bad or not args.remat:
        return f"--remat takes {', '.join(REMATS)} (comma-separated), got {bad or '(none)'}"
    for v in args.variants:
        attention, plus, extra = v.partition("+")
        if attention not in ATTENTIONS or (plus and extra != "packed"):
            return f"variant {v!r}: expected attention[+packed], attention in {ATTENTIONS}"
    prngs = (*DROPOUT_PRNGS, "hash")
    if not args.prng or any(p not in prngs for p in args.prng):
        return f"--prng takes {', '.join(prngs)} (comma-separated), got {','.join(args.prng)!r}"
    if len(set(args.prng)) < len(args.prng):
        return f"--prng names a PRNG twice: {','.join(args.prng)}"
    if not 0.0 <= args.dropout < 1.0:
        return f"--dropout must be in [0, 1), got {args.dropout}"
    if args.dropout == 0 and args.prng != [DEFAULT_MASKS]:
        return "--prng picks the PRNG of the dropout masks: it needs --dropout > 0"
    if any(p not in PEERS for p in args.peers):
        return f"--peers takes {', '.join(PEERS)} or '' for none, got {','.join(args.peers)}"
    for name in ("batch", "steps", "repeats", "matmul_n"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
    if args.max_batch and args.max_batch_cap < args.batch:
        return f"--max-batch-cap {args.max_batch_cap} is below --batch {args.batch}"
    return None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", "--size", default="gpt2", help="comma-separated model sizes")
    ap.add_argument("--lengths", default="512,1024")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per repeat at --batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats: median, min-max")
    ap.add_argument(
        "--variants",
        default="cudnn,cudnn+packed,xla",
        help="ours: attention[+packed] (packed = segment-id mask)",
    )
    ap.add_argument("--remat", default="none", help="ours: model.remat values (none,full,dots)")
    ap.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="model.dropout of ours, resid/embd_pdrop of the peers (attn_pdrop 0); 0 = none",
    )
    ap.add_argument(
        "--prng",
        default=DEFAULT_MASKS,
        help="ours: train.dropout_prng values with jax.random.bernoulli masks, a row each "
        "(threefry2x32,rbg,unsafe_rbg), or hash (threefry2x32 keys with model.dropout_masks=hash, "
        "the shipped default); needs --dropout > 0 unless left at hash",
    )
    ap.add_argument(
        "--matmul-n", type=int, default=8192, help="size of the matmul that measures the peak rate"
    )
    ap.add_argument("--datasheet-tflops", type=float, default=989.0, help="bf16 dense, H100/H200")
    ap.add_argument("--peers", default="eager,compile", help="PyTorch peers to run ('' for none)")
    ap.add_argument("--torch-device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--max-batch", action="store_true", help="find the largest batch that fits")
    ap.add_argument("--max-batch-cap", type=int, default=512, help="the search tries no more")
    ap.add_argument(
        "--no-bisect", dest="bisect", action="store_false", help="doubling only, no bisection"
    )
    ap.add_argument(
        "--search-budget", type=float, default=0, help="seconds per batch search (0: no cap)"
    )
    ap.add_argument(
        "--device-time-budget",
        type=float,
        default=0,
        help="seconds for the whole call; later measurements are skipped (0: no cap)",
    )
    ap.add_argument("--out", default="", help="write every figure here as JSON")
    args = ap.parse_args(argv)
    args.sizes, args.variants, args.peers, args.remat, args.prng = (
        split(x) for x in (args.sizes, args.variants, args.peers, args.remat, args.prng)
    )
    try:
        args.lengths = [int(x) for x in split(args.lengths)]
    except ValueError:
        args.lengths = None
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gencls_jax, configs/
    sys.stdout.reconfigure(line_buffering=True)  # each line out at once, even into a file
    args = parse_args()
    bench = Bench(args)
    try:
        bench.matmul()
        first = [(spec, bench.measure(spec)) for spec in plan(args)]
        searched = set()  # the torch peer's spec is the same for remat full and dots
        for spec, row in first if args.max_batch else ():
            key = json.dumps(spec, sort_keys=True)
            if row["status"] in ("ok", "oom") and key not in searched:
                searched.add(key)
                bench.search(spec, row)
    except KeyboardInterrupt:
        print("interrupted: the tables so far", file=sys.stderr)
        print_tables(bench)
        sys.exit(130)
    print_tables(bench)


def results_table(bench: Bench) -> list[str]:
    """Every measurement, grouped by size, remat, T and batch (markdown)."""
    args, peak = bench.args, bench.peak
    order = {s: i for i, s in enumerate(args.sizes)}
    rows = sorted(
        bench.rows,
        key=lambda r: (
            order[r["size"]],
            remat_name(r) != "none",
            r["T"],
            r["batch"],
            r["job"] == "ours",
        ),
    )
    measured = f"{peak:.4g}" if peak else "-"
    drop = args.dropout > 0  # a dropout column (each row's rate) only then: today's tables
    out = [
        f"| impl |{' dropout |' if drop else ''} size | remat | T | batch | tokens/s median "
        f"[min-max] | MFU of measured {measured} TFLOP/s | MFU of {args.datasheet_tflops:g} | "
        "memory GiB | compile s |",
        "| --- " * (10 + drop) + "|",
    ]
    for r in rows:
        rate = f" {r.get('dropout', 0.0):g} |" if drop else ""
        head = f"| {impl_name(r)} |{rate} {r['size']} | {remat_name(r)} | {r['T']} | {r['batch']} |"
        if r["status"] != "ok":
            out.append(f"{head} {r['status']}: {r['error']} | | | | |")
            continue
        med, lo, hi = spread(r)
        out.append(
            f"{head} {med:,.0f} [{lo:,.0f}-{hi:,.0f}] | {pct(mfu(r, peak))} | "
            f"{pct(mfu(r, args.datasheet_tflops))} | {memory_text(r)} | {r['compile_s']:.1f} |"
        )
    return out


def peer_row(bench: Bench, r: dict, peer: str) -> dict | None:
    """The torch `peer`'s ok row at r's size, T, batch and remat (checkpointing on for remat)."""
    for p in bench.rows:
        same = (p["size"], p["T"], p["batch"]) == (r["size"], r["T"], r["batch"])
        if p["job"] == "torch" and p["peer"] == peer and same and p["status"] == "ok":
            if p["ckpt"] == (r["remat"] != "none"):
                return p
    return None


def ratio_table(bench: Bench) -> list[str]:
    """ours / each peer, tokens/s medians, at the same size, remat, T and batch."""
    out = []
    for r in bench.rows:
        if r["job"] != "ours" or r["status"] != "ok":
            continue
        cells = []
        for peer in ("compile", "eager"):
            p = peer_row(bench, r, peer)
            cells.append(f"{spread(r)[0] / spread(p)[0]:.2f}x" if p else "-")
        if cells != ["-", "-"]:
            out.append(
                f"| {impl_name(r)} | {r['size']} | {r['remat']} | {r['T']} | {r['batch']} | "
                + " | ".join(cells)
                + " |"
            )
    head = "| ours | size | remat | T | batch | ours / torch.compile | ours / torch eager |"
    return [head, "| --- | --- | --- | --- | --- | --- | --- |", *out] if out else []


def row_at(bench: Bench, s: dict, batch: int | None) -> dict | None:
    for r in bench.rows:
        key = (impl_name(r), r["size"], remat_name(r), r["T"], r["batch"], r["status"])
        if key == (s["impl"], s["size"], s["remat"], s["T"], batch, "ok"):
            return r
    return None


def search_table(bench: Bench) -> list[str]:
    """Each search: the largest batch that fit, the first that did not, what was tried, the
    figures at the largest; then ours at its largest / torch.compile at its largest."""
    if not bench.searches:
        return []
    out = [
        "| impl | size | remat | T | largest batch that fits | first OOM | tried | tokens/s "
        "there | memory GiB there | search s | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    best, ratios = {}, []
    for s in bench.searches:
        r = row_at(bench, s, s["largest"])
        tps = spread(r)[0] if r else None
        best[(s["impl"], s["size"], s["remat"], s["T"])] = tps
        tried = ", ".join(f"{b}: {st}" for b, st in s["tried"])
        out.append(
            f"| {s['impl']} | {s['size']} | {s['remat']} | {s['T']} | {s['largest'] or '-'} | "
            f"{s['first_oom'] or '-'} | {tried} | {f'{tps:,.0f}' if tps else '-'} | "
            f"{memory_text(r) if r else '-'} | {s['seconds']:.0f} | {s['note']} |"
        )
    for (impl, size, remat, t), tps in best.items():
        peer = best.get(("HF torch compile", size, "none" if remat == "none" else "ckpt", t))
        if impl.startswith("ours") and tps and peer:
            ratios.append(
                f"{impl} at its largest batch / torch.compile at its largest, {size} remat "
                f"{remat} T={t}: {tps / peer:.2f}x"
            )
    return out + ([""] + ratios if ratios else [])


def print_tables(bench: Bench) -> None:
    print()
    print("\n".join(results_table(bench)))
    for lines in (ratio_table(bench), search_table(bench)):
        if lines:
            print()
            print("\n".join(lines))
    print(
        "\nremat 'ckpt': the HF peer with activation (gradient) checkpointing, non-reentrant, "
        "every block, beside ours full and dots. memory: ours = the allocator's peak (XLA's "
        "plan for the step in brackets), torch = max_memory_allocated."
    )
    if bench.args.dropout > 0:
        print(
            f"dropout {bench.args.dropout:g}: ours model.dropout (embedding and residual), its "
            "masks drawn by the PRNG after the '/' (train.dropout_prng); the peers resid_pdrop "
            "= embd_pdrop at the same rate, attn_pdrop 0 (ours has no attention dropout)."
        )
    if bench.skipped:
        print(f"skipped ({len(bench.skipped)}, device-time budget): " + "; ".join(bench.skipped))
    bench.save()


if __name__ == "__main__":
    main()
