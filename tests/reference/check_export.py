#!/usr/bin/env python3
"""Checks `scalinglab export --format hf --with-logits` directories against transformers.

For each DIR: AutoModelForCausalLM.from_pretrained(DIR) with the user's defaults must load with no
missing, unexpected or mismatched keys and in float32; its logits on DIR/scalinglab_logits.safetensors
(input_ids I64 [B, T], our CPU fp32 logits F32 [B, T, V]) must equal ours: normwise relative
error max|hf - ours| / max|hf| < 1e-4, computed on the CPU in float32 (HF's exact reference path).
Prints one line per directory and exits 1 on any failure.

Usage (GPU machine, or any machine with torch + transformers):
    scalinglab export RUN --format hf --out DIR --with-logits      # on our side
    python3 tests/reference/check_export.py DIR [DIR ...]
"""
import argparse
import sys

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

TOL = 1e-4


def check(d):
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    model = model.cpu().eval()
    problems = {k: v for k, v in info.items() if v and k in
                ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    ref = load_file(f"{d}/scalinglab_logits.safetensors")
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], use_cache=False).logits.float()
    ours = ref["logits"].float()
    abs_err = (logits - ours).abs().max().item()
    rel_err = abs_err / logits.abs().max().item()
    ok = not problems and dtypes == ["torch.float32"] and rel_err < TOL
    print(f"{d}: {type(model).__name__} attn={model.config._attn_implementation} "
          f"dtypes={dtypes} loading_problems={problems or 'none'} "
          f"logits max rel err {rel_err:.3e} (max abs {abs_err:.3e}, tol {TOL:g}) "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    torch.set_grad_enabled(False)
    results = []
    for d in args.dirs:
        try:
            results.append(check(d))
        except Exception as e:  # noqa: BLE001 - report every directory
            print(f"{d}: FAIL: {e!r}")
            results.append(False)
    print("check_export:", "all passed" if all(results) else "FAILED")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
