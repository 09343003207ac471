"""Score the IMDB test set against two class models: our scorer against a batched PyTorch forward
pass.

    # gpt2, all 25,000 texts, H100:
    python bench/bench_score.py --data /work/shared/data
    # CPU smoke test:
    python bench/bench_score.py --data /work/shared/data --size tiny --max-len 256 --limit 64
    # the host's share and the padding (score_host.py), the decision recipe's shapes, no model:
    python bench/bench_score.py --data /work/shared/data --buckets 256,512,1024 \
        --host-table per_class,label_prefix --host-only

Two random-init class models (seeds --seeds), stacked. Ours: the per-class conditioning's `score`,
the path `run.py` eval takes (rows, length buckets `data.bucket_lengths` or --buckets,
--batch-size rows at max_len and proportionally more in shorter buckets, both classes in one
vmapped call), timed twice in one process: cold (compiles
each bucket shape) and warm. Peer: each class model written with `weights.save_pretrained`,
loaded with `GPT2LMHeadModel.from_pretrained`, bf16 (--peer-precisions: `autocast` = float32
weights under torch.autocast, the numerics of ours; `bf16` = `model.to(torch.bfloat16)`),
`torch.inference_mode()`, texts sorted by length in batches of --batch-size, each padded to its
longest; log p(text) = sum of log_softmax(logits in float32)[target] over the tokens ours scores:
the text + EOS (data.append_eos), truncated to --max-len, the first token predicted from BOS.
Both times run from token ids to [N, K] log-likelihoods on the host (ours: rows, batches and
transfers inside the clock; the peer: sorting, padding and transfers inside the clock).
The peer's cold wall = one warm-up batch per model + its first pass; with --peer-compile the
compiled peer's warm wall is a second pass.

Correctness: our log-likelihoods against each peer's (bf16 both: close, not equal): max and mean
absolute difference (nats per text), the largest difference per scored token, and the fraction
of texts whose argmax class agrees (with the mean margin between the best and second class: with
random-init models the classes are close, so agreement says little unless the margin is large).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from imdb_setup import add_imdb_args, imdb_config, padded_length, start


def build_config(args: argparse.Namespace) -> Any:
    """The shared IMDB per-class config with our eval batch size."""
    c = imdb_config(args)
    c.eval.batch_size = args.batch_size
    if args.eval_buckets:
        c.eval.bucket_lengths = tuple(int(x) for x in args.eval_buckets.split(","))
    c.eval.pack_texts = args.pack_texts
    scored_as = c.eval.long_text or c.data.long_text  # what scoring reads (pipeline.long_text)
    if scored_as != "truncate":  # the peer below reproduces 'truncate' rows only
        raise SystemExit(f"long texts {scored_as!r}: this bench compares 'truncate' scoring only")
    return c


def load_test(config: Any, limit: int) -> tuple[Any, Any]:
    """(tokenizer, the tokenized test split); with `limit`, limit // K texts per class (seeded)."""
    from gencls_jax.data import pipeline
    from gencls_jax.data.splits import per_class_sample
    from gencls_jax.data.tokenize import load_tokenizer

    d = config.data
    tok = load_tokenizer(d.tokenizer, d.tokenizer_fallback)
    t0 = time.perf_counter()
    test = pipeline.load_datasets(config, ("test",), tok)["test"]  # (reads train too: label names)
    if limit > 0:
        test = test.subset(
            per_class_sample(
                test.labels, max(limit // test.num_classes, 1), int(config.seed), "test"
            )
        )
    print(
        f"test: {len(test)} texts, per class {test.class_counts().tolist()}, "
        f"mean {test.tokens.lengths.mean():.0f} "
        f"tokens (loaded in {time.perf_counter() - t0:.1f} s)"
    )
    return tok, test


def class_models(config: Any, tok: Any, seeds: list[int]) -> tuple[Any, list[dict]]:
    """(resolved model config, one float32 param tree per seed) through
    `experiment.initial_model`."""
    from gencls_jax.commands import train as E

    params = []
    for s in seeds:
        c = config.copy_and_resolve_references()
        c.seed = s
        model_config, p = E.initial_model(c, tok)
        params.append(p)
    return model_config, params


def bench_ours(
    config: Any, model_config: Any, stacked: Any, test: Any, tok: Any, name: str = "per_class"
) -> dict:
    """`scoring.batched.score_dataset` of conditioning `name` twice: cold (with compilation),
    then warm."""
    from gencls_jax import conditioning
    from gencls_jax.scoring.batched import score_dataset

    walls, out = [], None
    cond = conditioning.get(name)
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        ll, n_tok = score_dataset(
            stacked, cond, test, tok, config, model_config, desc=f"ours {run}"
        )
        walls.append(time.perf_counter() - t0)
        out = (ll, n_tok)
    return dict(
        impl="ours",
        cold_s=walls[0],
        warm_s=walls[1],
        texts_s=len(test) / walls[1],
        ll=out[0],
        n_tokens=out[1],
    )


def peer_sequences(test: Any, tok: Any, config: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, targets) per text, built from the token ids independently of our rows:
    targets = text + EOS truncated to max_len; inputs = BOS + targets[:-1] (the first token is
    predicted from BOS, as `data.rows.make_rows` / `score.shift_right` do)."""
    d = config.data
    eos = np.asarray([tok.eos_id] if d.append_eos else [], np.int64)
    targets = [
        np.concatenate([test.tokens[i], eos])[: d.max_len].astype(np.int64)
        for i in range(len(test))
    ]
    inputs = [np.concatenate([[tok.bos_id], t[:-1]]).astype(np.int64) for t in targets]
    return inputs, targets


def peer_batches(
    inputs: list[np.ndarray],
    targets: list[np.ndarray],
    batch_size: int,
    pad_id: int,
    multiple: int = 1,
) -> list[tuple]:
    """Texts sorted by length, batches of `batch_size`, each right-padded to its longest rounded
    up to `multiple` (DataCollatorWithPadding's pad_to_multiple_of): (text indices, input_ids,
    targets (0 at padding), attention_mask) as CPU tensors."""
    import torch

    lengths = np.fromiter((len(t) for t in targets), np.int64, len(targets))
    order = np.argsort(lengths, kind="stable")
    out = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        t = padded_length(lengths[idx].max(), multiple)
        ids = np.full((len(idx), t), pad_id, np.int64)
        tgt = np.zeros((len(idx), t), np.int64)
        mask = np.zeros((len(idx), t), np.int64)
        for j, i in enumerate(idx):
            n = len(targets[i])
            ids[j, :n], tgt[j, :n], mask[j, :n] = inputs[i], targets[i], 1
        out.append(tuple(torch.from_numpy(a) for a in (idx, ids, tgt, mask)))
    return out


def bench_peer(
    model_config: Any,
    params: list[dict],
    test: Any,
    tok: Any,
    config: Any,
    precision: str,
    compile: bool,
    multiple: int,
    workdir: Path,
) -> dict:
    """HF GPT2LMHeadModel per class from our weights; [N, K] log-likelihoods and the walls."""
    import torch
    import transformers

    from gencls_jax.model.weights import save_pretrained

    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = []
    for k, p in enumerate(params):
        folder = save_pretrained(model_config, p, workdir / f"class{k}")
        # float32 weights
        m = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).float().to(device).eval()
        if precision == "bf16":
            m = m.to(torch.bfloat16)
        models.append(torch.compile(m, dynamic=True) if compile else m)
    attn = models[0].config._attn_implementation
    inputs, targets = peer_sequences(test, tok, config)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    autocast = precision == "autocast"
    bs = int(config.eval.batch_size)

    @torch.inference_mode()
    def batch_ll(model, ids: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, tgt, mask = ids.to(device), tgt.to(device), mask.to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids, attention_mask=mask).logits
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt[..., None])[..., 0]
        return (lp * mask).sum(-1)

    @torch.inference_mode()
    def one_pass() -> np.ndarray:
        batches = peer_batches(inputs, targets, bs, tok.eos_id, multiple)
        out = torch.zeros((len(models), len(targets)), dtype=torch.float32, device=device)
        for k, model in enumerate(models):
            for idx, ids, tgt, mask in batches:
                out[k, idx.to(device)] = batch_ll(model, ids, tgt, mask)  # no host sync per batch
        return out.T.double().cpu().numpy()

    # Warm-up on the largest batch (sizes the allocator; compiles the compiled peer).
    largest = max(
        peer_batches(inputs, targets, bs, tok.eos_id, multiple), key=lambda b: b[1].numel()
    )
    t0 = time.perf_counter()
    for model in models:
        batch_ll(model, *largest[1:])
    sync()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = one_pass()
    first_s = time.perf_counter() - t0
    warm_s = first_s
    if compile:  # dynamic shapes may still recompile during the first pass: time a second one
        t0 = time.perf_counter()
        ll = one_pass()
        warm_s = time.perf_counter() - t0
    n_tokens = np.fromiter((len(t) for t in targets), np.float64, len(targets))
    models.clear()
    if device == "cuda":
        torch.cuda.empty_cache()  # hand the memory back before ours runs
    name = (
        f"HF torch {precision}{' compile' if compile else ''}"
        f"{f' pad%{multiple}' if multiple > 1 else ''}"
    )
    return dict(
        impl=name,
        cold_s=warmup_s + first_s,
        warm_s=warm_s,
        texts_s=len(test) / warm_s,
        ll=ll,
        n_tokens=n_tokens,
        device=device,
        attention=attn,
    )


def compare(ours: dict, peer: dict, labels: np.ndarray) -> dict:
    """How close our [N, K] log-likelihoods are to the peer's."""
    if not np.array_equal(ours["n_tokens"], peer["n_tokens"]):
        bad = int(np.sum(ours["n_tokens"] != peer["n_tokens"]))
        print(f"WARNING: scored tokens per text differ for {bad} texts ({peer['impl']})")
    diff = np.abs(ours["ll"] - peer["ll"])
    agree = ours["ll"].argmax(1) == peer["ll"].argmax(1)
    return dict(
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_abs_per_token=float((diff / ours["n_tokens"][:, None]).max()),
        argmax_agree=float(agree.mean()),
        # how far apart the classes are: a difference far below this cannot flip the argmax
        mean_class_margin=float(np.mean(np.abs(ours["ll"].max(1) - np.sort(ours["ll"], 1)[:, -2]))),
        acc_ours=float(np.mean(ours["ll"].argmax(1) == labels)),
        acc_peer=float(np.mean(peer["ll"].argmax(1) == labels)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_imdb_args(ap, "config seed (the --limit sample)")
    ap.add_argument(
        "--limit",
        type=int,
        default=0,
        help="score limit // 2 test texts per class (seeded); 0 = all",
    )
    ap.add_argument(
        "--batch-size", type=int, default=32, help="texts per scoring batch (eval.batch_size), both"
    )
    ap.add_argument("--seeds", default="0,1", help="init seeds of the class models, one per class")
    ap.add_argument(
        "--peer-precisions",
        default="autocast,bf16",
        help="peers: autocast and/or bf16 ('' for none)",
    )
    ap.add_argument(
        "--peer-compile",
        action="store_true",
        help="also time each peer under torch.compile(dynamic=True)",
    )
    ap.add_argument(
        "--peer-pad-multiples",
        default="1",
        help="peer batches padded to a multiple of each of these "
        "(pad_to_multiple_of; 1 = the longest text): fewer distinct shapes",
    )
    ap.add_argument(
        "--eval-buckets", default="", help="eval.bucket_lengths, the scoring shapes ('' = ())"
    )
    ap.add_argument(
        "--pack-texts",
        type=int,
        default=0,
        help="eval.pack_texts: rows packed up to this many per scoring row (0 = one per row)",
    )
    ap.add_argument(
        "--host-table",
        default="",
        help="conditionings (per_class,label_prefix) whose host steps and padding to print "
        "first (score_host.py)",
    )
    ap.add_argument(
        "--ours-conditioning",
        default="per_class",
        help="per_class (K stacked models, the peers' comparison) | label_prefix (one model, "
        "a pass per class: the decision recipe's scoring; no peer)",
    )
    ap.add_argument(
        "--check-unpacked",
        action="store_true",
        help="label_prefix with --pack-texts: score again one text per row (eval.pack_texts=0) "
        "and print how far the packed scores are from those (the GPU's equality check)",
    )
    ap.add_argument("--host-only", action="store_true", help="the host tables alone, no model")
    ap.add_argument("--out", default="", help="write the result rows as JSON here")
    args = ap.parse_args()

    start()
    import jax

    from gencls_jax.scoring.score import stack_params
    from gencls_jax.system.runtime import setup_compilation_cache

    print(f"device: {jax.devices()[0].device_kind}  jax {jax.__version__}")
    config = build_config(args)
    setup_compilation_cache(config)
    tok, test = load_test(config, args.limit)
    host = {}
    for cond_name in filter(None, args.host_table.split(",")):
        from score_host import print_tables

        host[cond_name] = print_tables(config, cond_name, test, tok)
    if args.host_only:
        if args.out:
            with open(args.out, "w") as f:
                json.dump(dict(args=vars(args), n_texts=len(test), host=host), f, indent=2)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != test.num_classes:
        raise SystemExit(f"--seeds gives {len(seeds)} models for {test.num_classes} classes")
    model_config, params = class_models(config, tok, seeds)
    print(
        f"model {args.size}: {model_config.n_layer} layers, width {model_config.n_embd}, context "
        f"{model_config.n_positions}; attention {model_config.attention}, "
        f"dtype {model_config.dtype}; "
        f"batch {args.batch_size}, buckets {tuple(config.data.bucket_lengths)} up to {args.max_len}"
        f", eval.pack_texts {config.eval.pack_texts}"
    )

    # first: its figures survive a peer failure
    if args.ours_conditioning == "label_prefix":  # one model (the first seed's), no peer
        ours = bench_ours(config, model_config, params[0], test, tok, "label_prefix")
        print(f"ours label_prefix: cold {ours['cold_s']:.2f} s, warm {ours['warm_s']:.2f} s")
        if args.check_unpacked and config.eval.pack_texts:
            config.eval.pack_texts = 0
            rows = bench_ours(config, model_config, params[0], test, tok, "label_prefix")
            rows["impl"] = "ours, one text per row"
            c = compare(ours, rows, test.labels)
            print(
                f"packed vs one text per row ({len(test)} texts x {test.num_classes} classes): "
                f"max |diff| {c['max_abs']:.4f} nats per text, mean {c['mean_abs']:.5f}, max per "
                f"token {c['max_abs_per_token']:.5f}, argmax agrees {100 * c['argmax_agree']:.2f}% "
                f"(mean class margin {c['mean_class_margin']:.2f})"
            )
        return
    ours = bench_ours(config, model_config, stack_params(params), test, tok)
    print(f"ours: cold {ours['cold_s']:.2f} s, warm {ours['warm_s']:.2f} s", flush=True)
    peers: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp:
        for precision in filter(None, args.peer_precisions.split(",")):
            for compile, multiple in itertools.product(
                [False] + ([True] if args.peer_compile else []),
                [int(m) for m in args.peer_pad_multiples.split(",")],
            ):
                try:
                    r = bench_peer(
                        model_config,
                        params,
                        test,
                        tok,
                        config,
                        precision,
                        compile,
                        multiple,
                        Path(tmp),
                    )
                except Exception as e:  # keep the table even if a peer fails
                    print(
                        f"peer {precision}{' compile' if compile else ''} failed: "
                        f"{type(e).__name__}: {str(e)[:300]}"
                    )
                    continue
                peers.append(r)
                print(
                    f"{r['impl']} ({r['device']}, attention {r['attention']}): {r['warm_s']:.2f} s",
                    flush=True,
                )
    checks = {}
    print(
        f"\ncorrectness (ours vs peer, {len(test)} texts x {test.num_classes} classes, "
        "nats per text):"
    )
    for p in peers:
        checks[p["impl"]] = c = compare(ours, p, test.labels)
        print(
            f"  {p['impl']:26s} max |diff| {c['max_abs']:.4f}  mean |diff| {c['mean_abs']:.4f}  "
            f"max |diff|/token {c['max_abs_per_token']:.5f}  "
            f"argmax agrees {100 * c['argmax_agree']:.2f}% "
            f"(mean class margin {c['mean_class_margin']:.2f}) "
            f"(accuracy ours {100 * c['acc_ours']:.1f}%, peer {100 * c['acc_peer']:.1f}%: "
            "random init)"
        )

    print(
        f"\n{'impl':26s} {'wall s (cold / warm)':>22s} {'texts/s':>9s} {'vs peer':>8s}   "
        "(vs peer = ours texts/s / its)"
    )
    for r in [ours] + peers:
        ratio = f"{ours['texts_s'] / r['texts_s']:7.2f}x" if r is not ours else f"{'-':>8s}"
        walls = f"{r['cold_s']:.2f} / {r['warm_s']:.2f}"
        print(f"{r['impl']:26s} {walls:>22s} {r['texts_s']:9.1f} {ratio}")
    if args.out:

        def strip(r):
            return {k: v for k, v in r.items() if k not in ("ll", "n_tokens")}

        with open(args.out, "w") as f:
            json.dump(
                dict(
                    args=vars(args),
                    device=jax.devices()[0].device_kind,
                    n_texts=len(test),
                    rows=[strip(r) for r in [ours] + peers],
                    correctness=checks,
                    host=host,
                ),
                f,
                indent=2,
            )
        print(f"rows written to {args.out}")


if __name__ == "__main__":
    main()
