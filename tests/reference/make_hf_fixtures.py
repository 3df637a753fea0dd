#!/usr/bin/env python3
"""Reference fixtures from HuggingFace transformers for the parity test (tests/model/test_hf_parity.cc).

For a tiny OLMo 3 dense model (Olmo3ForCausalLM, pattern AAAA) and a tiny OLMo Hybrid model
(OlmoHybridForCausalLM, pattern GGGA) it writes OUT/hf_dense.h5 and OUT/hf_hybrid.h5:

  attrs   schema = "scalinglab.hf_fixture/1", model_type, config_json (HF config.to_json_string()),
          torch_version, transformers_version, seed, device, dtype, rope_format
  input_ids  int32 [B, T]      token ids, drawn from [1, V) (see docs/MODEL_NOTES.md: id 0 is HF's
                               padding_idx, whose embedding row gets no gradient in HF)
  targets    int32 [B, T]      next-token targets as our Model takes them (last column -1 = ignored);
                               HF gets labels = input_ids and shifts them itself
  logits     float32 [B, T, V]
  loss       float64 scalar    HF's mean cross-entropy over the B*(T-1) predicted tokens
  weights/<HF name>  float32, HF shape
  grads/<HF name>    float32, HF shape: d loss / d weight

Everything runs on the CPU in float32 with eager attention: that is HF's exact reference path (its
GDN falls back to torch_chunk_gated_delta_rule without flash-linear-attention, and several modules
cast to float32 internally, so float64 would not be a cleaner reference).

With --save-pretrained it also writes OUT/hf_saved.tar holding hf_dense/ and hf_hybrid/ as written
by save_pretrained (config.json + model.safetensors), to test our reader against HF's writer.

Usage (GPU machine or any machine with torch + transformers + h5py):
    python3 tests/reference/make_hf_fixtures.py --out tests/fixtures
"""
import argparse
import json
import math
import os
import sys
import tarfile
import tempfile

import h5py
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, Olmo3Config, OlmoHybridConfig

B, T = 2, 96  # T = 96 spans two 64-step GDN chunks (the second one partial)
SEED = 1234
THETA = 5e5


def common_kwargs():
    return dict(vocab_size=256, hidden_size=32, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=2, num_key_value_heads=2, hidden_act="silu",
                max_position_embeddings=T, initializer_range=0.02, rms_norm_eps=1e-6,
                pad_token_id=0, bos_token_id=None, eos_token_id=0, tie_word_embeddings=False,
                attention_bias=False, attention_dropout=0.0)


def dense_config(rope_format):
    rope = {"rope_type": "default", "rope_theta": THETA}
    if rope_format == "per_layer_type":  # what we export (docs/MODEL.md "HuggingFace correspondence")
        rope = {"full_attention": dict(rope), "sliding_attention": dict(rope)}
    return Olmo3Config(layer_types=["full_attention"] * 4, sliding_window=4096,
                       rope_parameters=rope, **common_kwargs())


def hybrid_config(rope_format):
    return OlmoHybridConfig(layer_types=["linear_attention"] * 3 + ["full_attention"],
                            linear_num_key_heads=2, linear_num_value_heads=2,
                            linear_key_head_dim=16, linear_value_head_dim=32,
                            linear_conv_kernel_dim=4, linear_allow_neg_eigval=True,
                            rope_parameters={"rope_type": "default", "rope_theta": THETA},
                            **common_kwargs())


def build(make_config, rope_format):
    cfg = make_config(rope_format)
    torch.manual_seed(0)
    try:
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    except TypeError:  # older from_config without the keyword
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg)
    model = model.float().cpu()
    return cfg, model


def check_rope(model, hd):
    want = 1.0 / (THETA ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    n = 0
    for name, buf in model.named_buffers():
        if name.endswith("inv_freq") and "original" not in name:
            err = (buf.float().cpu() - want).abs().max().item()
            if err > 1e-6 * want.abs().max().item():
                raise SystemExit(f"rope: {name} = {buf.tolist()} is not theta={THETA} default rope")
            n += 1
    if n == 0:
        raise SystemExit("rope: no inv_freq buffer found (NoPE?)")


def set_weights(model, gen):
    """O(1) activations everywhere so every nonlinearity is exercised (not HF's init)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                v = torch.randn(p.shape, generator=gen)
            elif name.endswith("A_log"):
                v = torch.log(1.0 + 15.0 * torch.rand(p.shape, generator=gen))
            elif name.endswith("dt_bias"):
                dt = torch.exp(torch.rand(p.shape, generator=gen) * (math.log(0.1) - math.log(1e-3))
                               + math.log(1e-3)).clamp(min=1e-4)
                v = dt + torch.log(-torch.expm1(-dt))
            elif "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif "conv1d" in name:
                v = 0.5 * torch.randn(p.shape, generator=gen)
            else:  # Linear [out, in]
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1])
            p.copy_(v.to(p.dtype))


def run(model, ids):
    model.zero_grad(set_to_none=True)
    model.train(False)
    out = model(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    return out


def make(kind, make_config, out_dir, saved_dir):
    last_err = None
    for rope_format in (["per_layer_type", "flat"] if kind == "dense" else ["flat"]):
        try:
            cfg, model = build(make_config, rope_format)
            check_rope(model, cfg.hidden_size // cfg.num_attention_heads)
            break
        except Exception as e:  # noqa: BLE001 - report and try the other rope format
            print(f"{kind}: rope_parameters format {rope_format} failed: {e!r}")
            last_err = e
    else:
        raise last_err
    gen = torch.Generator().manual_seed(SEED + (0 if kind == "dense" else 1))
    set_weights(model, gen)
    V = cfg.vocab_size
    ids = torch.randint(1, V, (B, T), generator=gen)
    print(f"{kind}: {type(model).__name__}, attn={model.config._attn_implementation}, "
          f"rope_format={rope_format}")
    print(model)
    out = run(model, ids)
    # Independent loss check: mean CE of the shifted targets.
    ref = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, V).double(),
                                            ids[:, 1:].reshape(-1))
    print(f"{kind}: loss {out.loss.item():.8f} (recomputed {ref.item():.8f})")
    targets = torch.cat([ids[:, 1:], torch.full((B, 1), -1)], dim=1)
    path = os.path.join(out_dir, f"hf_{kind}.h5")
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "scalinglab.hf_fixture/1"
        f.attrs["model_type"] = cfg.model_type
        f.attrs["config_json"] = str(model.config.to_json_string())
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.attrs["seed"] = SEED
        f.attrs["device"] = "cpu"
        f.attrs["dtype"] = "float32"
        f.attrs["rope_format"] = rope_format
        f.create_dataset("input_ids", data=ids.numpy().astype(np.int32))
        f.create_dataset("targets", data=targets.numpy().astype(np.int32))
        f.create_dataset("logits", data=out.logits.detach().numpy().astype(np.float32))
        f.create_dataset("loss", data=np.float64(out.loss.item()))
        w, g = f.create_group("weights"), f.create_group("grads")
        for name, p in model.named_parameters():
            w.create_dataset(name, data=p.detach().numpy().astype(np.float32))
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            g.create_dataset(name, data=grad.numpy().astype(np.float32))
    print(f"{kind}: wrote {path} ({os.path.getsize(path)} bytes), "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    for name, p in model.named_parameters():
        print(f"  {name} {list(p.shape)} |grad|max {p.grad.abs().max().item():.3e}")
    if saved_dir:
        model.save_pretrained(os.path.join(saved_dir, f"hf_{kind}"))
    # Informational: the same model on the GPU (fla kernels if installed, else the torch path).
    if torch.cuda.is_available():
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            mg = model.cuda()
            og = run(mg, ids.cuda())
            dl = (og.logits.detach().cpu() - out.logits.detach()).abs().max().item()
            print(f"{kind}: GPU fp32 vs CPU fp32: max |dlogits| {dl:.3e}, "
                  f"loss {og.loss.item():.8f}")
            model.cpu()
        except Exception as e:  # noqa: BLE001
            print(f"{kind}: GPU run failed: {e!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    ap.add_argument("--save-pretrained", action="store_true",
                    help="also write OUT/hf_saved.tar (save_pretrained of both models)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, h5py {h5py.__version__}, "
          f"numpy {np.__version__}")
    try:
        import fla  # noqa: F401
        print("flash-linear-attention: installed")
    except ImportError:
        print("flash-linear-attention: not installed (HF uses its torch GDN path)")
    saved = tempfile.mkdtemp() if args.save_pretrained else None
    make("dense", dense_config, args.out, saved)
    make("hybrid", hybrid_config, args.out, saved)
    if saved:
        with tarfile.open(os.path.join(args.out, "hf_saved.tar"), "w") as tar:
            for kind in ("dense", "hybrid"):
                tar.add(os.path.join(saved, f"hf_{kind}"), arcname=f"hf_{kind}")


if __name__ == "__main__":
    main()
