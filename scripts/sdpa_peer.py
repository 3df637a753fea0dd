"""Peer for `scalinglab bench --op attention`: torch's scaled_dot_product_attention (flash backend,
bf16, causal) on the same shapes, timed the same way (CUDA events over calls that rotate among
three input sets, after warm-up), with the same FLOP count: forward 2 x 2 B H T^2 hd / 2, backward
2.5x that. Layout as ours: tensors [B, T, H, hd] seen as [B, H, T, hd] (HF's transpose).

Usage: python3 scripts/sdpa_peer.py [--shapes 16x1024x12x64,8x2048x12x64,...] [--reps 20]
       [--backend flash|cudnn|efficient|math]
Prints one line per (shape, pass): ms, TFLOP/s.
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peer_timing import time_ms

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="16x1024x12x64,8x2048x12x64,16x1024x6x128,8x2048x6x128")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backend", default="flash", choices=sorted(BACKENDS))
    a = ap.parse_args()
    dev = torch.device("cuda")
    print(f"{'peer':<12} {'pass':<5} {'shape':<28} {'ms':>10} {'TFLOP/s':>10}")
    for shape in a.shapes.split(","):
        B, T, H, hd = (int(x) for x in shape.split("x"))
        sets = []
        for _ in range(3):
            q, k, v, do = (torch.empty(B, T, H, hd, device=dev, dtype=torch.bfloat16)
                           .uniform_(-1, 1) for _ in range(4))
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            sets.append((q, k, v, do))
        fwd_flops = 2 * 2 * B * H * T * T * hd / 2
        with sdpa_kernel(BACKENDS[a.backend]):
            def fwd(i):
                q, k, v, _ = sets[i % 3]
                with torch.no_grad():
                    F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                   v.transpose(1, 2), is_causal=True)
            outs = []
            for q, k, v, do in sets:
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                   v.transpose(1, 2), is_causal=True)
                outs.append(o)

            def bwd(i):
                q, k, v, do = sets[i % 3]
                torch.autograd.grad(outs[i % 3], (q, k, v), do.transpose(1, 2), retain_graph=True)
            for fn, name, flops in ((fwd, "fwd", fwd_flops), (bwd, "bwd", 2.5 * fwd_flops)):
                for i in range(a.warmup):
                    fn(i)
                torch.cuda.synchronize()
                ms = time_ms(fn, a.reps)
                tag = f"B={B} T={T} H={H} hd={hd}"
                tflops = flops / ms / 1e9
                print(f"sdpa-{a.backend:<7} {name:<5} {tag:<28} {ms:>10.4f} {tflops:>10.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
