// NcclComm: gradient averaging for data parallelism (core/comm.h) with NCCL.
//
// Overlap. The backend runs every op on one stream S. allreduce_mean_async(buf) records an event
// on S (buf is final there), makes the communication stream C wait for it, and enqueues
// ncclAllReduce(avg) on C; S goes on with the backward pass of the next block. wait() records an
// event on C and makes S wait for it, so the optimizer step sees averaged gradients. NCCL's
// reductions are deterministic for a fixed world size and ring, so all ranks get identical bits.
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/nccl_comm.h"
#include "core/error.h"
#include "core/fs.h"

namespace sl {
namespace {

void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    fail(std::string("nccl: ") + what + ": " + ncclGetErrorString(r) + " (" +
         ncclGetLastError(nullptr) + ")");
}
void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(std::string("nccl comm: ") + what + ": " + cudaGetErrorString(e));
}

std::string hex(const ncclUniqueId& id) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : std::string(id.internal, sizeof id.internal)) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

bool unhex(const std::string& s, ncclUniqueId* id) {
  if (s.size() != 2 * sizeof id->internal) return false;
  auto v = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < sizeof id->internal; ++i)
    id->internal[i] = static_cast<char>(v(s[2 * i]) * 16 + v(s[2 * i + 1]));
  return true;
}

class NcclComm final : public Comm {
 public:
  NcclComm(CudaBackend& be, int rank, int world, const std::string& id_file, double timeout_s)
      : rank_(rank), world_(world), stream_(static_cast<cudaStream_t>(be.stream_handle())) {
    setenv("NCCL_NVLS_ENABLE", "0", 0);  // keep a value the user set
    ncclUniqueId id{};
    if (rank == 0) {
      nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      atomic_write_file(id_file, hex(id) + "\n");
    } else {
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
      for (;;) {
        std::ifstream in(id_file);
        std::string line;
        if (in && std::getline(in, line) && unhex(line, &id)) break;
        if (std::chrono::steady_clock::now() > deadline)
          fail("rank " + std::to_string(rank) + ": no NCCL id from rank 0 at '" + id_file +
               "' after " + std::to_string(static_cast<int>(timeout_s)) + " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    cuda_check(cudaSetDevice(be.device()), "cudaSetDevice");
    nccl_check(ncclCommInitRank(&comm_, world, id, rank), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "stream");
    cuda_check(cudaMalloc(&scalars_, 64 * sizeof(double)), "cudaMalloc");
    // Everyone has joined (init is collective): the id has served its purpose.
    if (rank == 0) ::unlink(id_file.c_str());
  }
  ~NcclComm() override {
    if (comm_stream_) cudaStreamSynchronize(comm_stream_);
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
    if (scalars_) cudaFree(scalars_);
    if (comm_) ncclCommDestroy(comm_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void allreduce_mean_async(Tensor buf) override {
    if (buf.dtype != DType::f32) fail("nccl comm: gradients must be f32");
    cudaEvent_t ready = event();
    cuda_check(cudaEventRecord(ready, stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(comm_stream_, ready, 0), "cudaStreamWaitEvent");
    nccl_check(ncclAllReduce(buf.data, buf.data, static_cast<size_t>(buf.n), ncclFloat32, ncclAvg,
                             comm_, comm_stream_),
               "ncclAllReduce");
  }

  void wait() override {
    cudaEvent_t done = event();
    cuda_check(cudaEventRecord(done, comm_stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, done, 0), "cudaStreamWaitEvent");
    next_ = 0;  // every event recorded so far is waited for: reuse them
  }

  void allreduce_sum(double* x, int n) override {
    if (n > 64) fail("nccl comm: allreduce_sum of more than 64 values");
    wait();
    cuda_check(cudaMemcpyAsync(scalars_, x, n * sizeof(double), cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync");
    nccl_check(ncclAllReduce(scalars_, scalars_, static_cast<size_t>(n), ncclFloat64, ncclSum,
                             comm_, stream_),
               "ncclAllReduce");
    cuda_check(cudaMemcpyAsync(x, scalars_, n * sizeof(double), cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

 private:
  // Events are recycled after each wait(): at most (blocks + 2) are alive per step.
  cudaEvent_t event() {
    if (next_ == pool_.size()) {
      cudaEvent_t e;
      cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      pool_.push_back(e);
    }
    return pool_[next_++];
  }

  int rank_, world_;
  cudaStream_t stream_;
  cudaStream_t comm_stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  double* scalars_ = nullptr;
  std::vector<cudaEvent_t> pool_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(Backend& be, int rank, int world, const std::string& id_file,
                                     double timeout_s) {
  auto* cb = dynamic_cast<CudaBackend*>(&be);
  if (!cb) fail("data parallelism needs --device cuda (NCCL), not " + be.name());
  return std::make_unique<NcclComm>(*cb, rank, world, id_file, timeout_s);
}

}  // namespace sl
