"""The HuggingFace hybrid peer with FLA's Triton GDN kernels, for timing only.

Runs the shared peer benchmark (its path is the first argument, e.g.
../shared/bench/hf_peer_bench.py; the rest are its own arguments) after lifting FLA's guard that
refuses the gated backward on Hopper with Triton < 3.7.1 (its issue #640: wrong dq/dk/dg there):
the step's cost is what is measured, never its values (scripts/gdn_peer.py --allow-wrong-grads
does the same for the op alone). FLA's checkout (the folder holding `fla/`) must be on PYTHONPATH.

Usage: PYTHONPATH=path/to/flash-linear-attention python3 scripts/hybrid_peer.py
       ../shared/bench/hf_peer_bench.py --archs hybrid --sizes S4 --modes compile
"""
import runpy
import sys

import fla.ops.common.chunk_o as chunk_o

chunk_o.TRITON_ABOVE_3_7_1 = True
path = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(path, run_name="__main__")
