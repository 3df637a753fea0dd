// Data-parallel training runs: which rank this process is, how the ranks meet, and the
// single-node launcher `scalinglab train --nproc N`.
//
// One process per GPU. A rank learns its place from
//   - `train --nproc N` (this node): SL_RANK, SL_WORLD, SL_LOCAL_RANK, SL_DIST_KEY set by the
//     launcher for the N processes it starts;
//   - Slurm's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (inside a job step, i.e. with
//     SLURM_STEP_ID set), the key from SLURM_JOB_ID.SLURM_STEP_ID.SLURM_RESTART_COUNT.
// Each rank trains on GPU cuda:<local rank> and on its own stride of every global batch
// (data/tokens.h sample_batch_rank); rank 0 alone writes RUN/log.h5 and RUN/ckpt. The state is
// replicated, so a checkpoint is the same whatever the number of ranks, and a run resumes on any
// number of GPUs that divides train.batch_size.
#pragma once
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/comm.h"

namespace sl {

struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  bool launched = false;  // started as a rank (even a world of 1): the run uses a Comm
  std::string key;        // names this launch's rendezvous file
};

// From the environment (above); world 1 when launched as a plain process. Malformed values fail
// naming the variable.
DistEnv dist_env();

// The NCCL rendezvous file of a run: next to RUN (RUN/ may not exist yet): DIR/.NAME.nccl-KEY.
std::string rendezvous_path(const std::string& run_dir, const std::string& key);

// Connects the ranks (NCCL on a CUDA backend); fails with one line when this build has no NCCL.
std::unique_ptr<Comm> make_comm(Backend& be, const DistEnv& env, const std::string& run_dir);

// `train --nproc N`: starts N copies of this process (same arguments) as ranks 0..N-1, forwards
// SIGTERM/SIGUSR1/SIGINT to them, and returns the exit code: 0 when all exit 0, else the first
// non-zero code (the other ranks are then stopped: a rank left alone would wait forever in a
// collective).
int launch_ranks(int nproc);

}  // namespace sl
