"""One epoch of the real IMDB train set: our per-class train step against the Hugging Face way.

    # gpt2, H100:
    python bench/bench_epoch.py --data /work/shared/data --steps 200
    # CPU smoke test:
    python bench/bench_epoch.py --data /work/shared/data --size tiny --max-len 256 --steps 3

Ours: the real per-class step (K=2 class models stacked, vmapped;
`training.step.compiled_train_step` with `objectives.lm_objective(config, True)`), 8 rows per
class, batches from the per-class conditioning's training stream for data.batching = pack, then
bucket. Peer: `transformers.GPT2LMHeadModel` (random init, no dropout), one model per class, 8
texts of that class per step (shuffled, fixed seed), each batch padded to its longest text
(DataCollatorWithPadding: attention_mask, labels -100 on padding), fused AdamW, bf16 autocast,
gradient clipping at train.grad_clip (the Trainer's max_grad_norm); eager, and with --peer-compile
`torch.compile(dynamic=True)`. Both see the same token ids: each text + EOS (data.append_eos),
truncated to --max-len.

Useful tokens = real (non-padding) token positions: the sum of `weights` for ours, of
`attention_mask` for the peer (for a text of n tokens both run n positions; ours predicts all
n from a BOS-prefixed row, HF's shifted labels predict n-1 of them). Epoch wall = useful tokens
of the whole train split (both classes, validation held out as in `run.py`) / useful tokens/s
of the timed steps. Host batch assembly happens before the clock for both (bench_input.py
measures it); host->device copies are inside. Compile time = the first step of each distinct
batch shape (ours) or the first step (compiled peer), excluded from the timed steps.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
from typing import Any

import numpy as np
from imdb_setup import add_imdb_args, imdb_config, padded_length, start


def build_config(args: argparse.Namespace, batching: str = "pack") -> Any:
    """The shared IMDB per-class config with `batching` and the train batch size."""
    c = imdb_config(args)
    c.data.batching = batching
    c.train.batch_size = args.batch_size
    return c


def load_train(config: Any) -> tuple[Any, Any]:
    """(tokenizer, the tokenized train split), validation held out as in a real run."""
    from gencls_jax.data import pipeline
    from gencls_jax.data.tokenize import load_tokenizer

    d = config.data
    tok = load_tokenizer(d.tokenizer, d.tokenizer_fallback)
    t0 = time.perf_counter()
    train = pipeline.load_datasets(config, ("train",), tok)["train"]
    print(
        f"train split: {len(train)} texts, per class {train.class_counts().tolist()}, "
        f"mean {train.tokens.lengths.mean():.0f} tokens "
        f"(loaded in {time.perf_counter() - t0:.1f} s)"
    )
    return tok, train


def class_sequences(train: Any, k: int, eos_id: int | None, max_len: int) -> list[np.ndarray]:
    """Token ids of class k's texts as our rows hold them: text + EOS, truncated to max_len."""
    eos = np.asarray([eos_id] if eos_id is not None else [], np.int32)
    return [
        np.concatenate([train.tokens[i], eos])[:max_len] for i in np.flatnonzero(train.labels == k)
    ]


def bench_ours(config: Any, train: Any, tok: Any, steps: int, warmup: int) -> dict:
    """Our real per-class step on the first warmup+steps batches of epoch 0's stream."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from gencls_jax import conditioning
    from gencls_jax.commands import train as E
    from gencls_jax.data import batching
    from gencls_jax.scoring.score import stack_params
    from gencls_jax.system import sharding
    from gencls_jax.training import step as T
    from gencls_jax.training.objectives import lm_objective

    model_config, params = E.initial_model(config, tok)
    k = train.num_classes
    params = stack_params([params] * k)  # as experiment.train_and_evaluate: K copies of one init
    stream = conditioning.get("per_class").train_stream(config, train, tok)
    epoch_steps = stream.num_batches(0)
    epoch_tokens = sum(float(w.sum()) for cls in stream.classes for w in cls.rows.weights)
    mesh = sharding.make_mesh()
    tc = ml_collections.FrozenConfigDict(config.train)
    tx, step = T.compiled_train_step(
        model_config,
        tc,
        True,
        int(config.train.epochs) * epoch_steps,
        mesh,
        lm_objective(config, True),
    )
    # A copy: the step donates the state, and `params` would otherwise be donated with it.
    state = T.init_state(
        jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params),
        tx,
        config.train,
        int(config.seed),
        k,
    )
    state = jax.device_put(state, sharding.state_shardings(mesh, state, True))
    host = list(itertools.islice(stream.batches(0), warmup + steps))
    if len(host) <= warmup:
        raise SystemExit(f"the epoch has only {len(host)} steps: lower --warmup")
    timed = host[warmup:]

    # Compile every batch shape that occurs (bucket: up to one per bucket length) before the clock.
    compile_s, seen = 0.0, set()
    for b in host:
        if b["inputs"].shape in seen:
            continue
        seen.add(b["inputs"].shape)
        t0 = time.perf_counter()
        state, m = step(state, sharding.shard_batch(b, mesh))
        jax.block_until_ready(m)
        compile_s += time.perf_counter() - t0
    for b in host[:warmup]:
        state, m = step(state, sharding.shard_batch(b, mesh))
    jax.block_until_ready((state, m))
    t0 = time.perf_counter()
    for b in timed:
        state, m = step(state, sharding.shard_batch(b, mesh))
    jax.block_until_ready((state, m))
    wall = time.perf_counter() - t0
    useful = float(sum(b["weights"].sum() for b in timed))
    del state
    step_s = wall / len(timed)
    return dict(
        impl="ours",
        batching=config.data.batching,
        padding=batching.padding_fraction(timed),
        tokens_s=useful / wall,
        epoch_s=epoch_tokens / (useful / wall),
        compile_s=compile_s,
        step_s=step_s,
        steps_timed=len(timed),
        shapes=sorted(seen),
        epoch_steps=epoch_steps,
        epoch_s_by_steps=epoch_steps * step_s,
        epoch_tokens=epoch_tokens,
    )


def collate(seqs: list[np.ndarray], idx: np.ndarray, pad_id: int, multiple: int = 1) -> dict:
    """DataCollatorWithPadding for causal LM: pad to the longest (rounded up to `multiple`, its
    pad_to_multiple_of), attention_mask, labels -100 on padding."""
    import torch

    t = padded_length(max(len(seqs[i]) for i in idx), multiple)
    ids = np.full((len(idx), t), pad_id, np.int64)
    mask = np.zeros((len(idx), t), np.int64)
    for j, i in enumerate(idx):
        ids[j, : len(seqs[i])] = seqs[i]
        mask[j, : len(seqs[i])] = 1
    labels = np.where(mask > 0, ids, -100)
    return dict(
        input_ids=torch.from_numpy(ids),
        attention_mask=torch.from_numpy(mask),
        labels=torch.from_numpy(labels),
    )


def peer_step(model: Any, fwd: Any, opt: Any, device: str, clip: float, batch: dict) -> Any:
    """One HF training step: bf16 autocast (CUDA), backward, clip (the Trainer's max_grad_norm),
    AdamW."""
    import torch

    cuda = device == "cuda"
    batch = {name: v.to(device, non_blocking=True) for name, v in batch.items()}
    with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
        loss = fwd(**batch).loss
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=cuda)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def bench_peer(
    config: Any,
    model_config: Any,
    train: Any,
    tok: Any,
    steps: int,
    warmup: int,
    compile: bool,
    multiple: int = 1,
    warm_shapes: bool = False,
) -> dict:
    """HF GPT2LMHeadModel, one model per class, steps split between the classes (class 0 first).

    `warm_shapes`: one untimed step on every distinct batch shape of the timed steps first, i.e.
    the steady state once an epoch has shown the model every length (torch's cuDNN attention
    builds a plan per new shape, ~0.2 s each on an H100: BUILD_NOTES, peer_shapes)."""
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    cfg = transformers.GPT2Config(
        vocab_size=model_config.vocab_size,
        n_positions=model_config.n_positions,
        n_embd=model_config.n_embd,
        n_layer=model_config.n_layer,
        n_head=model_config.n_head,
        layer_norm_epsilon=model_config.layer_norm_epsilon,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,  # training: no KV cache objects
    )
    tc, d = config.train, config.data
    eos = tok.eos_id if d.append_eos else None
    k_classes = train.num_classes
    per_class_steps = [steps // k_classes + (k < steps % k_classes) for k in range(k_classes)]
    epoch_tokens, useful, real, slots, wall, compile_s, epoch_shapes = (
        0.0,
        0.0,
        0,
        0,
        0.0,
        0.0,
        set(),
    )
    for k in range(k_classes):
        seqs = class_sequences(train, k, eos, d.max_len)
        epoch_tokens += float(sum(len(s) for s in seqs))
        n = per_class_steps[k]
        if n == 0:
            continue
        order = np.random.default_rng([int(config.seed), k]).permutation(len(seqs))
        B = int(tc.batch_size)
        lengths = np.asarray([len(x) for x in seqs])
        epoch_shapes |= {
            (min(len(order) - s, B), padded_length(lengths[order[s : s + B]].max(), multiple))
            for s in range(0, len(order), B)
        }
        batches = [
            collate(seqs, order[s : s + B], tok.eos_id, multiple)
            for s in range(0, (warmup + n) * B, B)
            if s < len(order)
        ]
        if len(batches) <= warmup:
            raise SystemExit(f"class {k} has only {len(batches)} peer batches: lower --warmup")
        torch.manual_seed(int(config.seed) + k)
        model = transformers.GPT2LMHeadModel(cfg).to(device).train()
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=tc.lr,
            betas=(tc.b1, tc.b2),
            eps=tc.eps,
            weight_decay=tc.weight_decay,
            fused=cuda,
        )
        fwd = torch.compile(model, dynamic=True) if compile else model
        step = functools.partial(peer_step, model, fwd, opt, device, float(tc.grad_clip))
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        t0 = time.perf_counter()
        step(batches[0])  # first step: compilation (compiled peer), CUDA/cuBLAS start-up (eager)
        sync()
        if compile:
            compile_s += time.perf_counter() - t0
        timed = batches[warmup:]
        warm = batches[1:warmup]
        if warm_shapes:  # one step per distinct timed shape: no first-time plan inside the clock
            warm += list({tuple(b["input_ids"].shape): b for b in timed}.values())
        for b in warm:
            step(b)
        sync()
        t0 = time.perf_counter()
        for b in timed:
            step(b)
        sync()
        wall += time.perf_counter() - t0
        for b in timed:
            useful += float(b["attention_mask"].sum())
            real += int(b["attention_mask"].sum())
            slots += b["attention_mask"].numel()
        del model, opt, fwd, step
        if cuda:
            torch.cuda.empty_cache()  # hand the memory back before the next model (and ours)
    n_timed = sum(per_class_steps)
    name = f"HF torch {'compile' if compile else 'eager'}{' warm' if warm_shapes else ''}"
    return dict(
        impl=name,
        batching="pad-to-longest" + (f"%{multiple}" if multiple > 1 else ""),
        epoch_shapes=len(epoch_shapes),
        padding=1.0 - real / max(slots, 1),
        tokens_s=useful / wall,
        epoch_s=epoch_tokens / (useful / wall),
        compile_s=compile_s if compile else None,
        step_s=wall / n_timed,
        steps_timed=n_timed,
        epoch_tokens=epoch_tokens,
        device=device,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_imdb_args(ap, "config seed: init, shuffles, validation hold-out")
    ap.add_argument(
        "--steps", type=int, default=200, help="timed steps per implementation and batching"
    )
    ap.add_argument(
        "--warmup", type=int, default=3, help="untimed steps before the clock (after compilation)"
    )
    ap.add_argument(
        "--batch-size", type=int, default=8, help="rows (texts for the peer) per class per step"
    )
    ap.add_argument(
        "--batchings", default="pack,bucket", help="our data.batching schemes, in order"
    )
    ap.add_argument(
        "--peer-compile", action="store_true", help="also time the torch.compile(dynamic=True) peer"
    )
    ap.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    ap.add_argument(
        "--peer-pad-multiple",
        type=int,
        default=1,
        help="peer: pad to a multiple of this (pad_to_multiple_of)",
    )
    ap.add_argument(
        "--peer-warm-shapes",
        default="0",
        help="peer runs: 0 = as is, 1 = every timed shape seen once "
        "first (steady state), '0,1' = both",
    )
    ap.add_argument("--out", default="", help="write the result rows as JSON here")
    args = ap.parse_args()

    start()
    import jax

    from gencls_jax.commands import train as E

    print(f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}")
    config = build_config(args)
    tok, train = load_train(config)
    model_config, _ = E.initial_model(config, tok)
    print(
        f"model {args.size}: {model_config.n_layer} layers, width {model_config.n_embd}, context "
        f"{model_config.n_positions}, vocab {model_config.vocab_size}; "
        f"attention {model_config.attention}, "
        f"dtype {model_config.dtype}; max_len {args.max_len}, {args.batch_size} rows per class"
    )

    rows: list[dict] = []
    peers = (
        []
        if args.no_peer
        else itertools.product(
            [False] + ([True] if args.peer_compile else []),
            [bool(int(w)) for w in args.peer_warm_shapes.split(",")],
        )
    )
    # the peer first: its memory goes back to the driver before ours runs
    for compile, warm_shapes in peers:
        try:
            r = bench_peer(
                config,
                model_config,
                train,
                tok,
                args.steps,
                args.warmup,
                compile,
                args.peer_pad_multiple,
                warm_shapes,
            )
        except Exception as e:  # keep the table even if a peer fails
            print(
                f"peer {'compile' if compile else 'eager'} failed: "
                f"{type(e).__name__}: {str(e)[:300]}"
            )
            continue
        rows.append(r)
        print(
            f"{r['impl']} ({r['batching']}): {r['steps_timed']} steps, "
            f"{1000 * r['step_s']:.1f} ms/step; "
            f"{r['epoch_shapes']} distinct batch shapes in a whole epoch"
        )
    for scheme in args.batchings.split(","):
        r = bench_ours(build_config(args, scheme), train, tok, args.steps, args.warmup)
        rows.append(r)
        print(
            f"ours {scheme}: {r['steps_timed']} steps, {1000 * r['step_s']:.1f} ms/step, "
            f"shapes {r['shapes']}, compile {r['compile_s']:.1f} s; "
            f"epoch = {r['epoch_steps']} steps -> {r['epoch_s_by_steps']:.1f} s "
            f"at this step time"
        )

    epoch_tokens = {r["epoch_tokens"] for r in rows}
    # the peer's sequences are built independently of our rows: they must agree
    if len(epoch_tokens) > 1:
        print(
            "WARNING: the epoch's useful tokens differ between implementations: "
            f"{sorted(epoch_tokens)}"
        )
    ours = next((r for r in rows if r["impl"] == "ours"), None)
    print(
        f"\nepoch = {rows[-1]['epoch_tokens']:,.0f} useful tokens "
        f"(both classes, {len(train)} texts)"
    )
    print(
        f"{'impl':22s} {'batching':17s} {'padding':>8s} {'useful tok/s':>13s} "
        f"{'epoch s':>9s} {'compile s':>10s}"
        f"  {'ours is':>8s}   (ours is = ours {ours['batching'] if ours else '-'} "
        f"useful tok/s / this row's)"
    )
    for r in rows:
        ratio = (
            f"{ours['tokens_s'] / r['tokens_s']:7.2f}x"
            if ours and r["impl"] != "ours"
            else f"{'-':>8s}"
        )
        comp = f"{r['compile_s']:10.1f}" if r["compile_s"] is not None else f"{'-':>10s}"
        print(
            f"{r['impl']:22s} {r['batching']:17s} {r['padding']:8.3f} {r['tokens_s']:13.0f} "
            f"{r['epoch_s']:9.1f} "
            f"{comp}  {ratio}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                dict(args=vars(args), device=jax.devices()[0].device_kind, rows=rows), f, indent=2
            )
        print(f"rows written to {args.out}")


if __name__ == "__main__":
    main()
