#!/usr/bin/env python3
"""Prints the installed transformers source of everything the parity fixtures depend on (the two
model files, their configs, the causal-LM loss, PreTrainedModel._init_weights), so docs/MODEL.md can be
checked line by line against the version that made tests/fixtures/. Usage: python3 dump_hf_sources.py > hf_src.txt"""
import importlib
import inspect

import torch
import transformers

print(f"# torch {torch.__version__}, transformers {transformers.__version__}")
for mod in ["transformers.models.olmo3.configuration_olmo3",
            "transformers.models.olmo3.modeling_olmo3",
            "transformers.models.olmo_hybrid.configuration_olmo_hybrid",
            "transformers.models.olmo_hybrid.modeling_olmo_hybrid",
            "transformers.loss.loss_utils"]:
    m = importlib.import_module(mod)
    print(f"\n\n######## {mod} ({m.__file__})\n")
    print(inspect.getsource(m))
from transformers.modeling_utils import PreTrainedModel  # noqa: E402

print("\n\n######## PreTrainedModel._init_weights\n")
print(inspect.getsource(PreTrainedModel._init_weights))
import transformers.modeling_rope_utils as r  # noqa: E402

print("\n\n######## transformers.modeling_rope_utils (standardize/default)\n")
for name in ["RotaryEmbeddingConfigMixin", "_compute_default_rope_parameters"]:
    if hasattr(r, name):
        print(inspect.getsource(getattr(r, name)))
