"""Why is bench_epoch.py's Hugging Face peer ~5x slower per token than on fixed 16x1024 batches?

bench_epoch.py's peer (GPT2LMHeadModel, fused AdamW, bf16 autocast, grad clip 1.0, 8 texts a step
padded to the longest, attention_mask, labels -100 on padding) ran 225 ms/step for ~5.3k padded
tokens; bench_train_step.py's (fixed 16x1024, no mask) 122 ms for 16k. The same step (random init,
no dropout, random ids, host batches copied inside the step) is timed in variants, one per
hypothesis:
  shape churn  a new [B, T] each step: per-shape cuBLAS(Lt)/cuDNN heuristics, caching-allocator
               churn (cudaMalloc/cudaFree, alloc retries)
               -> vary vs vary64 (all shapes warmed) vs fixed_mask
  SDPA + mask  a padding mask swaps SDPA's is_causal flash kernel for an explicit 4-D mask
               (mem-efficient or math kernel), and HF's `mask.all()` skip test syncs the host
               -> fixed vs fixed_ones vs fixed_mask
  eager attn   eager attention materialises the [B, H, T, T] mask and scores
               -> *_eager vs the rest
  host copies  pageable host->device batch copies
               -> vary vs vary_dev (batches already on the GPU)
Expandable segments: PYTORCH_CUDA_ALLOC_CONF can't change once CUDA is up, so run it again as
`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python3 bench/peer_shapes.py
--variants vary,vary64`.

GPU (gpt2 124M, ~1.5-2.5 min on an H100):
    python3 bench/peer_shapes.py --steps 30 --warmup 5
CPU smoke test (tiny model, < 1 min):
    python3 bench/peer_shapes.py --size tiny --steps 3 --warmup 1 --seq 128

fixed: B x --seq. vary: T uniform in [--max-seq/8, --max-seq] each step (a new shape almost every
step); vary64: the same draws padded up to a multiple of 64. ms/step: the timed steps in --chunks
windows, torch.cuda.synchronize at both ends of each; fixed shapes: median window, varying: total
wall / steps. host: Python's time to enqueue the steps (host ~ ms/step: host-bound or a sync inside
the step). gpu: kernel time of one profiled step, scaled to the timed steps' mean tokens. syncs:
synchronizing CUDA calls in one step (set_sync_debug_mode; their source lines follow the table).
mallocs: cudaMalloc'd segments in the timed window. ptok/s and ms/1kpt count padded tokens (B x T).
Order matters: every vary* variant draws the same lengths, and torch caches per-shape plans for
the whole process, so only the first of them to run (in the default order `vary`; `vary_nomask`
for the no-mask path) meets new shapes; the later ones time shapes already seen.
Finding (H100, 2026-11-25, BUILD_NOTES): the cost is the first sight of each shape (~0.18 s).
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import time
import warnings

import numpy as np
import torch
import transformers

# name: (shapes, mask, attn_implementation (None: HF's default), batches already on the device)
VARIANTS = {
    "fixed": ("fixed", "none", None, False),
    "fixed_ones": ("fixed", "ones", None, False),
    "fixed_mask": ("fixed", "pad", None, False),
    "fixed_mask_eager": ("fixed", "pad", "eager", False),
    "vary": ("vary", "pad", None, False),
    "vary64": ("vary64", "pad", None, False),
    "vary_nomask": ("vary", "none", None, False),
    "vary_dev": ("vary", "pad", None, True),
    "vary_sdpa": ("vary", "pad", "sdpa", False),
    "vary_eager": ("vary", "pad", "eager", False),
}
ATTN_KERNELS = ("flash", "fmha", "efficient", "attention", "softmax")


def ceil64(t: int, cap: int) -> int:
    return min(-(-t // 64) * 64, cap)


def plan_shapes(kind: str, n: int, args) -> list[tuple[int, int]]:
    """(longest text, padded length) for n steps; every varying variant gets the same draws."""
    if kind == "fixed":
        return [(args.seq, args.seq)] * n
    t = np.random.default_rng([args.seed, 1]).integers(args.max_seq // 8, args.max_seq + 1, n)
    return [(int(x), int(x) if kind == "vary" else ceil64(int(x), args.max_seq)) for x in t]


def make_batch(rng, b: int, t_text: int, t_pad: int, mask: str, vocab: int, pad_id: int) -> dict:
    """DataCollatorWithPadding: b texts of lengths in [t_text/4, t_text] (one of t_text) padded to
    t_pad, attention_mask 1 on text, labels -100 on padding. mask: none (no mask, no padding) |
    ones | pad."""
    lens = np.full(b, t_pad)
    if mask == "pad":
        lens = rng.integers(max(1, t_text // 4), t_text + 1, b)
        lens[rng.integers(b)] = t_text
    am = (np.arange(t_pad)[None] < lens[:, None]).astype(np.int64)
    ids = np.where(am > 0, rng.integers(0, vocab, (b, t_pad)), pad_id)
    batch = dict(
        input_ids=torch.from_numpy(ids), labels=torch.from_numpy(np.where(am > 0, ids, -100))
    )
    if mask != "none":
        batch["attention_mask"] = torch.from_numpy(am)
    return batch


def train_step(model, opt, device: str, batch: dict) -> None:
    """bench_epoch.peer_step: copy in, bf16 autocast (CUDA), backward, clip 1.0, AdamW."""
    cuda = device == "cuda"
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=cuda)
    opt.step()
    opt.zero_grad(set_to_none=True)


def alloc_counts(cuda: bool) -> list[int]:
    stats = torch.cuda.memory_stats() if cuda else {}
    return [stats.get("segment.all.allocated", 0), stats.get("num_alloc_retries", 0)]


def run_variant(name: str, args, model, cfg, device: str) -> dict:
    kind, mask, _, on_dev = VARIANTS[name]
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=cuda)
    # + a sync-debug and a profiled step
    plan = plan_shapes(kind, args.warmup + args.steps + 2, args)
    if kind == "vary64":  # every padded shape once first: the timed window sees no new shape
        plan = sorted({(p, p) for _, p in plan_shapes(kind, 4096, args)}) + plan
    rng = np.random.default_rng([args.seed, 2])
    batches = [
        make_batch(rng, args.batch, t, p, mask, cfg.vocab_size, cfg.eos_token_id) for t, p in plan
    ]
    if on_dev:
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    n_warm = len(plan) - args.steps - 2
    warm, timed, extra = batches[:n_warm], batches[n_warm:-2], batches[-2:]
    for b in warm:
        train_step(model, opt, device, b)
    sync()
    walls, hosts, sizes, a0 = [], [], [], alloc_counts(cuda)
    for chunk in np.array_split(np.arange(len(timed)), min(args.chunks, len(timed))):
        sync()
        t0 = time.perf_counter()
        for i in chunk:
            train_step(model, opt, device, timed[i])
        hosts.append(time.perf_counter() - t0)
        sync()
        walls.append(time.perf_counter() - t0)
        sizes.append(len(chunk))
    mallocs, retries = (b - a for a, b in zip(a0, alloc_counts(cuda))) if cuda else ("-", "-")
    tokens = sum(b["input_ids"].numel() for b in timed) / len(timed)
    ms = 1e3 * (
        statistics.median(w / n for w, n in zip(walls, sizes))
        if kind == "fixed"
        else sum(walls) / len(timed)
    )
    syncs, sites, gpu, kernels = "-", collections.Counter(), "-", collections.Counter()
    try:  # diagnostics, one step each; a failure keeps the timing
        if cuda:  # which calls inside one step synchronise the host with the GPU
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    train_step(model, opt, device, extra[0])
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            hits = [w for w in caught if "synchroniz" in str(w.message).lower()]
            syncs = len(hits)
            sites.update(f"{os.path.basename(w.filename)}:{w.lineno}" for w in hits)
        if args.profile:
            acts = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if cuda else []
            )
            with torch.profiler.profile(activities=acts) as prof:
                train_step(model, opt, device, extra[1])
                sync()
            for e in prof.events():
                if e.device_type == torch.autograd.DeviceType.CUDA:
                    kernels[e.name[:90]] += e.time_range.elapsed_us() / 1e3
            if kernels:
                gpu = sum(kernels.values()) * tokens / extra[1]["input_ids"].numel()
    except Exception as e:
        print(f"{name}: diagnostics failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
    shapes = [tuple(b["input_ids"].shape) for b in timed]
    new = len(set(shapes) - {tuple(b["input_ids"].shape) for b in warm})
    lo, hi, n_shapes = min(s[1] for s in shapes), max(s[1] for s in shapes), len(set(shapes))
    seq = str(lo) if n_shapes == 1 else f"{lo}-{hi} ({n_shapes} shapes, {new} new)"
    return dict(
        variant=name,
        batch=args.batch,
        seq=seq,
        attn=model.config._attn_implementation,
        mask=mask,
        ms=ms,
        host=sum(hosts) / len(timed) * 1e3,
        gpu=gpu,
        tok_s=tokens / ms * 1e3,
        ms_1k=ms / tokens * 1e3,
        syncs=syncs,
        mallocs=mallocs,
        retries=retries,
        sites=sites,
        kernels=kernels,
        windows=[w / n * 1e3 for w, n in zip(walls, sizes)],
    )


COLS = (
    ("variant", "variant", "<16"),
    ("batch", "batch", ">5"),
    ("seq", "seq", "<27"),
    ("attn", "attn", "<6"),
    ("mask", "mask", "<5"),
    ("ms", "ms/step", ">8.1f"),
    ("host", "host", ">7.1f"),
    ("gpu", "gpu", ">7.1f"),
    ("tok_s", "ptok/s", ">9.0f"),
    ("ms_1k", "ms/1kpt", ">8.2f"),
    ("syncs", "syncs", ">5"),
    ("mallocs", "mallocs", ">7"),
)


def line(r: dict | None) -> str:
    """A table row (r=None: the header); strings and '-' at the column's width."""
    cells = []
    for key, head, spec in COLS:
        x = head if r is None else r[key]
        cells.append(
            format(x, spec) if isinstance(x, float) else format(str(x), spec.split(".")[0])
        )
    return " ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma list of: {', '.join(VARIANTS)}"
    )
    ap.add_argument("--size", choices=["gpt2", "tiny"], default="gpt2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512, help="T of the fixed-shape variants")
    ap.add_argument(
        "--max-seq", type=int, default=1024, help="varying T is uniform in [max/8, max]"
    )
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument(
        "--chunks", type=int, default=5, help="timing windows (fixed shapes: median window)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the profiled step"
    )
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    if bad := [v for v in names if v not in VARIANTS]:
        raise SystemExit(f"unknown variants {bad}; known: {list(VARIANTS)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # small vocab: cheap logits on the CPU
    tiny = (
        dict(
            n_layer=2,
            n_embd=64,
            n_head=4,
            n_positions=256,
            vocab_size=1024,
            bos_token_id=1023,
            eos_token_id=1023,
        )
        if args.size == "tiny"
        else {}
    )
    cfg = transformers.GPT2Config(
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, **tiny
    )
    args.seq, args.max_seq = min(args.seq, cfg.n_positions), min(args.max_seq, cfg.n_positions)
    models: dict = {}

    def get_model(attn):
        key = attn or "default"
        if key not in models:
            torch.manual_seed(args.seed)
            kw = dict(attn_implementation=attn) if attn else {}
            # own config copy: _from_config writes attn_implementation into the config it is
            # given, and attention reads model.config._attn_implementation at run time
            with torch.device(device):
                models[key] = (
                    transformers.GPT2LMHeadModel._from_config(copy.deepcopy(cfg), **kw)
                    .to(device)
                    .train()
                )
        return models[key]

    default = get_model(None).config._attn_implementation
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, {args.size}, "
        "HF default attention: "
        f"{default}, PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')!r}",
        flush=True,
    )
    rows = []
    for name in names:
        try:
            rows.append(run_variant(name, args, get_model(VARIANTS[name][2]), cfg, device))
            print(line(rows[-1]), flush=True)
        except Exception as e:  # keep the other variants (e.g. eager attention out of memory)
            print(f"{name} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()  # each variant's allocator starts from the same state
    print("\n" + line(None), *map(line, rows), sep="\n")
    for r in rows:
        attn_k = [
            (k, v)
            for k, v in r["kernels"].most_common()
            if any(s in k.lower() for s in ATTN_KERNELS)
        ]
        print(
            f"\n{r['variant']}: ms/step per window {' '.join(f'{w:.1f}' for w in r['windows'])}; "
            f"alloc retries {r['retries']}\n  sync sites: "
            + (", ".join(f"{k} x{v}" for k, v in r["sites"].most_common(4)) or "-")
            + "\n  top kernels (ms): "
            + ("; ".join(f"{k} {v:.2f}" for k, v in r["kernels"].most_common(3)) or "-")
            + "\n  attention kernels (ms): "
            + ("; ".join(f"{k} {v:.2f}" for k, v in attn_k[:4]) or "-")
        )


if __name__ == "__main__":
    main()
