// ProfiledBackend: a Backend that forwards every call to another one and adds up the time each
// op takes on the device: a stamp (Backend::stamp) before and after each forwarded call, read
// once the run is done, so the ops run back to back as they would unprofiled (no
// synchronization between them) and each is charged only the device time between its two
// stamps: while the device has work queued, the launch latency and the host's gaps fall outside
// every op (when it runs dry, as with small ops whose host side is slower, an op's interval
// also holds its own launch). (The CPU backend's stamps are its host clock.) The shares are what
// `scalinglab bench --profile` reports to say where a step's time goes before anyone optimises it.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/backend.h"

namespace sl {

class ProfiledBackend final : public Backend {
 public:
  struct Stat {
    double seconds = 0;
    int64_t calls = 0;
  };
  explicit ProfiledBackend(Backend& inner) : in_(inner) {}
  // The ops timed so far (waits for the device to read their stamps).
  const std::map<std::string, Stat>& stats() {
    collect();
    return stats_;
  }
  void reset() {
    collect();
    stats_.clear();
  }
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
  // Staging is forwarded untimed (a copy falls between two ops' stamps). capture()
  // is forwarded only while timing is off (the unprofiled speed, with the inner backend's
  // graphs); while it is on there is no graph (null), so a step runs op by op.
  void* alloc_host(size_t bytes) override { return in_.alloc_host(bytes); }
  void free_host(void* p) override { in_.free_host(p); }
  void copy_to_device(Tensor dst, const void* host) override { in_.copy_to_device(dst, host); }
  void copy_to_host(void* host, Tensor src) override { in_.copy_to_host(host, src); }
  uint64_t fence() override { return in_.fence(); }
  void wait(uint64_t f) override { in_.wait(f); }
  uint64_t stamp() override { return in_.stamp(); }
  double stamp_ms(uint64_t a, uint64_t b) override { return in_.stamp_ms(a, b); }
  void clear_stamps() override { in_.clear_stamps(); }
  int64_t bytes_in_use() const override { return in_.bytes_in_use(); }
  int64_t peak_bytes() const override { return in_.peak_bytes(); }
  std::unique_ptr<Graph> capture(std::function<void()> fn) override {
    return on_ ? nullptr : in_.capture(std::move(fn));
  }

 private:
  // Stamps one forwarded call; `op` names the table row.
  struct Timed {
    ProfiledBackend& p;
    const char* op;
    uint64_t a = 0;
    Timed(ProfiledBackend& pb, const char* name) : p(pb), op(name) {
      if (p.on_) a = p.in_.stamp();
    }
    ~Timed() {
      if (p.on_) p.pending_.push_back({op, a, p.in_.stamp()});
    }
  };
  struct Pending {
    const char* op;
    uint64_t a, b;
  };
  // Reads the stamps of the calls timed since the last collect() into stats_.
  void collect() {
    if (pending_.empty()) return;
    in_.synchronize();
    for (const Pending& c : pending_) {
      Stat& st = stats_[c.op];
      st.seconds += 1e-3 * in_.stamp_ms(c.a, c.b);
      ++st.calls;
    }
    pending_.clear();
    in_.clear_stamps();
  }
  Backend& in_;
  std::map<std::string, Stat> stats_;
  std::vector<Pending> pending_;
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
