"""Peer for `scalinglab bench --op gdn`: FLA's chunk_gated_delta_rule (Triton) on the same shapes,
timed the same way (CUDA events over calls that rotate among three input sets, after warm-up).
Inputs as ours: q, k [B, T, H, d_k] bf16 (L2-normalised, as the model's GDN block feeds them),
v [B, T, H, d_v] bf16, beta in (0, 1) and g (log decay) in [-0.2, -0.01] per token and head,
no initial state. The backward is timed as one autograd pass over a saved forward graph.

FLA's source is not packaged here: put its checkout's top folder (the one holding `fla/`) on
PYTHONPATH. On Hopper with Triton < 3.7.1 FLA refuses its gated backward (its issue #640: wrong
dq/dk/dg there); --allow-wrong-grads lifts that guard to TIME it only: never compare its values.

Usage: PYTHONPATH=path/to/flash-linear-attention python3 scripts/gdn_peer.py
       [--shapes 16x1024x12x64x128,32x1024x4x64x128] [--reps 10] [--allow-wrong-grads]
Prints one line per (shape, pass): ms.
"""
import argparse

import torch

from peer_timing import time_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="16x1024x12x64x128,32x1024x4x64x128",
                    help="BxTxHxDKxDV, comma-separated")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--allow-wrong-grads", action="store_true")
    a = ap.parse_args()
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    if a.allow_wrong_grads:
        import fla.ops.common.chunk_o as chunk_o
        chunk_o.TRITON_ABOVE_3_7_1 = True
    dev = torch.device("cuda")
    print(f"{'peer':<12} {'pass':<5} {'shape':<40} {'ms':>10}")
    for shape in a.shapes.split(","):
        B, T, H, DK, DV = (int(x) for x in shape.split("x"))
        sets = []
        for _ in range(3):
            q = torch.nn.functional.normalize(torch.randn(B, T, H, DK, device=dev), dim=-1)
            k = torch.nn.functional.normalize(torch.randn(B, T, H, DK, device=dev), dim=-1)
            q, k = q.bfloat16().requires_grad_(), k.bfloat16().requires_grad_()
            v = torch.empty(B, T, H, DV, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
            v.requires_grad_()
            beta = torch.empty(B, T, H, device=dev).uniform_(0, 1).bfloat16().requires_grad_()
            g = torch.empty(B, T, H, device=dev).uniform_(-0.2, -0.01).requires_grad_()
            do = torch.empty(B, T, H, DV, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
            sets.append((q, k, v, g, beta, do))

        def run(s):
            q, k, v, g, beta, _ = s
            o, _ = chunk_gated_delta_rule(q, k, v, g=g, beta=beta, scale=DK ** -0.5)
            return o

        def fwd(i):
            with torch.no_grad():
                run(sets[i % 3])
        outs = [run(s) for s in sets]

        def bwd(i):
            q, k, v, g, beta, do = sets[i % 3]
            torch.autograd.grad(outs[i % 3], (q, k, v, g, beta), do, retain_graph=True)
        tag = f"B={B} T={T} H={H} dk={DK} dv={DV}"
        for fn, name in ((fwd, "fwd"), (bwd, "bwd")):
            for i in range(a.warmup):
                fn(i)
            torch.cuda.synchronize()
            print(f"fla-chunk    {name:<5} {tag:<40} {time_ms(fn, a.reps):>10.4f}", flush=True)


if __name__ == "__main__":
    main()
