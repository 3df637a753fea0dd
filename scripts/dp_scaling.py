#!/usr/bin/env python3
"""Data-parallel scaling efficiency of `scalinglab train --nproc N` (weak scaling).

Trains the same model for a few steps on 1 GPU with B sequences per step and on N GPUs with
N*B (B per GPU), and reports tokens/s (median of the logged per-step rates after a warm-up) and
the efficiency E = tok/s(N) / (N * tok/s(1)). Needs python3 with h5py (reads RUN/log.h5).

    python3 scripts/dp_scaling.py --exe build/bin/scalinglab --size S4 --arch hybrid \
        --batch 16 --seq 1024 --steps 30 --nproc 2
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import h5py


def corpus(dirname):
    text = []
    for root in ("/usr/share/common-licenses",):
        for name in sorted(os.listdir(root)):
            p = os.path.join(root, name)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    text.append(f.read())
    data = b"".join(text)
    with open(os.path.join(dirname, "train.txt"), "wb") as f:
        f.write(data)
    with open(os.path.join(dirname, "val.txt"), "wb") as f:
        f.write(data[: len(data) // 4])


def run(args, work, nproc):
    cfg = os.path.join(work, f"cfg{nproc}.toml")
    batch = args.batch * nproc
    steps = args.steps
    with open(cfg, "w") as f:
        f.write(f'[model]\narch = "{args.arch}"\nsize = "{args.size}"\nvocab_size = {args.vocab}\n'
                f"[train]\nseq_len = {args.seq}\nbatch_size = {batch}\n"
                f"tokens = {steps * batch * args.seq}\nwarmup_tokens = 0\n"
                f"eval_every = {steps}\neval_tokens = {args.seq * nproc}\n"
                f"checkpoint_every = {steps * 10}\n"
                f'[data]\ntrain = "train.txt"\nval = "val.txt"\n')
    out = os.path.join(work, f"run{nproc}")
    cmd = [args.exe, "train", "--config", cfg, "--out", out, "--device", "cuda", "--quiet"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    subprocess.run(cmd, check=True)
    with h5py.File(os.path.join(out, "log.h5"), "r") as f:
        rates = list(f["train/tokens_per_s"][()])
    return statistics.median(rates[args.warmup:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exe", default="build/bin/scalinglab")
    ap.add_argument("--arch", default="hybrid")
    ap.add_argument("--size", default="S4")
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--batch", type=int, default=16, help="sequences per GPU per step")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        corpus(work)
        os.chdir(work)
        one = run(args, work, 1)
        many = run(args, work, args.nproc)
    eff = many / (args.nproc * one)
    print(f"{args.arch} {args.size} seq {args.seq} x {args.batch}/GPU: 1 GPU {one:.0f} tok/s, "
          f"{args.nproc} GPUs {many:.0f} tok/s, efficiency {eff:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
