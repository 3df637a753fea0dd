"""Timing shared by the per-op peers (sdpa_peer.py, gdn_peer.py): CUDA events around `reps`
calls of fn(i) (fn rotates among its input sets by i), after the caller's warm-up."""
import torch


def time_ms(fn, reps):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(reps):
        fn(i)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps
