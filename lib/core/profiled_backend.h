// ProfiledBackend: a Backend that forwards every call to another one and adds up the time each
// op takes (wall clock between a synchronize() before and after the call, so asynchronous GPU
// work is charged to the op that queued it). The synchronizations serialize the device, so the
// total is a little above an unprofiled step; the shares are what `scalinglab bench --profile`
// reports to say where a step's time goes before anyone optimises it.
#pragma once
#include <chrono>
#include <map>
#include <string>

#include "core/backend.h"

namespace sl {

class ProfiledBackend final : public Backend {
 public:
  struct Stat {
    double seconds = 0;
    int64_t calls = 0;
  };
  explicit ProfiledBackend(Backend& inner) : in_(inner) {}
  const std::map<std::string, Stat>& stats() const { return stats_; }
  void reset() { stats_.clear(); }
  // Off: calls are forwarded untimed, with no synchronization (the unprofiled speed).
  void enable(bool on) { on_ = on; }

  std::string name() const override { return in_.name(); }
  DType act_dtype() const override { return in_.act_dtype(); }
  DType param_dtype() const override { return in_.param_dtype(); }
  Tensor alloc(int64_t n, DType t) override { return in_.alloc(n, t); }
  void free(Tensor t) override { in_.free(t); }
  void synchronize() override { in_.synchronize(); }
  double time_ms(const std::function<void()>& fn, int reps) override {
    return in_.time_ms(fn, reps);
  }
  // Staging is forwarded untimed (copies are charged to the ops that wait for them). capture()
  // is forwarded only while timing is off (the unprofiled speed, with the inner backend's
  // graphs); while it is on there is no graph (null), so a step runs op by op.
  void* alloc_host(size_t bytes) override { return in_.alloc_host(bytes); }
  void free_host(void* p) override { in_.free_host(p); }
  void copy_to_device(Tensor dst, const void* host) override { in_.copy_to_device(dst, host); }
  void copy_to_host(void* host, Tensor src) override { in_.copy_to_host(host, src); }
  uint64_t fence() override { return in_.fence(); }
  void wait(uint64_t f) override { in_.wait(f); }
  int64_t bytes_in_use() const override { return in_.bytes_in_use(); }
  int64_t peak_bytes() const override { return in_.peak_bytes(); }
  std::unique_ptr<Graph> capture(std::function<void()> fn) override {
    return on_ ? nullptr : in_.capture(std::move(fn));
  }

 private:
  // Times one forwarded call; `op` names the table row.
  struct Timed {
    ProfiledBackend& p;
    const char* op;
    std::chrono::steady_clock::time_point t0;
    Timed(ProfiledBackend& pb, const char* name) : p(pb), op(name) {
      if (!p.on_) return;
      p.in_.synchronize();
      t0 = std::chrono::steady_clock::now();
    }
    ~Timed() {
      if (!p.on_) return;
      p.in_.synchronize();
      Stat& s = p.stats_[op];
      s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++s.calls;
    }
  };
  Backend& in_;
  std::map<std::string, Stat> stats_;
  bool on_ = true;

 public:
// Every op of the list: forwarded, timed under its own name.
#define SL_OP(name, params, args) \
  void name params override {     \
    Timed timed_(*this, #name);   \
    in_.name args;                \
  }
#include "core/backend_ops.inc"
#undef SL_OP
};

}  // namespace sl
