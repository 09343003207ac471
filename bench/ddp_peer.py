"""HF PyTorch GPT-2 (124M, random init) under DistributedDataParallel: the peer of our
data-parallel train step. One process per GPU, launched by torchrun:

    torchrun --nproc_per_node=2 bench/ddp_peer.py --batch 16 --length 1024 --steps 20 --compile

`--batch` is per GPU. Prints one JSON line (rank 0): global tokens/s and the step time.
Same recipe as bench_train_step.bench_torch: bf16 autocast, fused AdamW, no dropout.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="rows per GPU")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()

    import torch
    import torch.distributed as dist
    import transformers

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).cuda().train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=3e-4, weight_decay=0.01, fused=True)

    def step(tokens):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = ddp(tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if args.compile:
        step = torch.compile(step)
    gen = torch.Generator(device="cuda").manual_seed(rank)
    data = [
        torch.randint(0, 50257, (args.batch, args.length), device="cuda", generator=gen)
        for _ in range(4)
    ]
    for i in range(3):
        step(data[i % 4])
    torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(data[i % 4])
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    if rank == 0:
        tokens_s = world * args.batch * args.length / dt
        print(json.dumps(dict(gpus=world, compile=args.compile, step_s=dt, tokens_s=tokens_s)))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
