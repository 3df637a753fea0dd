// The local executor's GPU packing decisions (sweep/packing.h) with made-up sizes and memory: the
// largest queued run that fits starts, smaller ones are packed beside it, nothing exceeds a GPU's
// memory or --per-gpu, runs spread over GPUs; a whole ladder simulated to its end; and the
// memory sources (--gpu-mem, nvidia-smi's CSV); the run order by measured rates.
#define BOOST_TEST_MODULE sweep_packing
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "sweep/packing.h"
#include "sweep/sweep.h"
#include "sweep/tables.h"

namespace {

using sl::sweep::GpuPacker;
constexpr int64_t GiB = int64_t{1} << 30;

// Starts what next() picks until nothing fits; returns (queue value, gpu) in start order and
// removes them from the queue.
std::vector<std::pair<int64_t, int>> fill(GpuPacker& p, std::vector<int64_t>& queue) {
  std::vector<std::pair<int64_t, int>> started;
  while (const auto pl = p.next(queue)) {
    const int64_t b = queue[pl->queue_index];
    p.start(pl->gpu, b);
    started.push_back({b, pl->gpu});
    queue.erase(queue.begin() + static_cast<std::ptrdiff_t>(pl->queue_index));
  }
  return started;
}

}  // namespace

BOOST_AUTO_TEST_CASE(unknown_memory_places_by_count_and_spreads_over_gpus) {
  GpuPacker p(2, 2, 0);
  std::vector<int64_t> queue = {50 * GiB, 40 * GiB, 30 * GiB, 20 * GiB, 10 * GiB};
  const auto s = fill(p, queue);
  // Two per GPU, alternating (fewest runs first, then the most free memory: 40 goes beside
  // nothing, 30 beside the smaller 40).
  const std::vector<std::pair<int64_t, int>> want = {
      {50 * GiB, 0}, {40 * GiB, 1}, {30 * GiB, 1}, {20 * GiB, 0}};
  BOOST_TEST(s == want);
  BOOST_TEST(queue == std::vector<int64_t>{10 * GiB});
  BOOST_TEST(p.fits_alone(1000 * GiB));  // nothing is too large when the size is unknown
  p.finish(1, 40 * GiB);
  BOOST_TEST(p.place(10 * GiB) == 1);
}

BOOST_AUTO_TEST_CASE(largest_first_then_smaller_ones_packed_beside_it) {
  // One GPU of 10 GiB, up to 4 runs: the 8 GiB run starts, 6 and 3 do not fit beside it, 2 does
  // (exactly 10); when the 8 ends, the 6 starts beside the 2, then the 1 (the 3 would make 11).
  GpuPacker p(1, 4, 10 * GiB);
  std::vector<int64_t> queue = {8 * GiB, 6 * GiB, 3 * GiB, 2 * GiB, 1 * GiB};
  auto s = fill(p, queue);
  BOOST_TEST((s == std::vector<std::pair<int64_t, int>>{{8 * GiB, 0}, {2 * GiB, 0}}));
  BOOST_TEST(p.used_on(0) == 10 * GiB);
  p.finish(0, 8 * GiB);
  s = fill(p, queue);
  BOOST_TEST((s == std::vector<std::pair<int64_t, int>>{{6 * GiB, 0}, {1 * GiB, 0}}));
  BOOST_TEST(queue == std::vector<int64_t>{3 * GiB});
  BOOST_TEST(p.runs_on(0) == 3);
  p.finish(0, 1 * GiB);
  BOOST_TEST(!p.next(queue));  // 2 + 6 + 3 = 11 > 10
  p.finish(0, 2 * GiB);
  BOOST_TEST(p.next(queue)->gpu == 0);
  // --per-gpu still counts: four tiny runs fill it.
  GpuPacker q(1, 4, 10 * GiB);
  std::vector<int64_t> tiny(6, GiB / 4);
  BOOST_TEST(fill(q, tiny).size() == 4u);
  BOOST_TEST(tiny.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_run_larger_than_a_gpu_never_fits) {
  const GpuPacker p(4, 8, 80 * GiB);
  BOOST_TEST(p.fits_alone(80 * GiB));
  BOOST_TEST(!p.fits_alone(80 * GiB + 1));
  BOOST_TEST(p.place(80 * GiB + 1) == -1);
  // next() skips it and takes the first that fits.
  const auto pl = p.next({100 * GiB, 5 * GiB});
  BOOST_REQUIRE(pl);
  BOOST_TEST(pl->queue_index == 1u);
}

BOOST_AUTO_TEST_CASE(memory_decides_the_gpu_when_counts_tie) {
  // Two GPUs of 16 GiB: 12 on GPU 0, 10 on GPU 1 (fewer runs); a 5 fits only on GPU 1 (15); a 3
  // then goes to GPU 0, which has fewer runs and is the only one with room.
  GpuPacker p(2, 4, 16 * GiB);
  std::vector<int64_t> queue = {12 * GiB, 10 * GiB, 5 * GiB, 3 * GiB};
  const auto s = fill(p, queue);
  const std::vector<std::pair<int64_t, int>> want = {
      {12 * GiB, 0}, {10 * GiB, 1}, {5 * GiB, 1}, {3 * GiB, 0}};
  BOOST_TEST(s == want);
  BOOST_TEST(p.used_on(0) == 15 * GiB);
  BOOST_TEST(p.used_on(1) == 15 * GiB);
}

BOOST_AUTO_TEST_CASE(a_ladder_simulated_to_its_end_never_overfills) {
  // 16 runs of a ladder (sizes in GiB, durations in minutes, both largest first), 2 GPUs of
  // 12 GiB, up to 3 runs each: an event loop as launch_local's, checking every GPU at every
  // start and that every run starts once.
  struct Run {
    int64_t bytes;
    double minutes;
  };
  std::vector<Run> runs;
  for (int rep = 0; rep < 2; ++rep)
    for (const Run r : {Run{9 * GiB, 40}, Run{6 * GiB, 20}, Run{5 * GiB, 12}, Run{4 * GiB, 8},
                        Run{3 * GiB, 5}, Run{2 * GiB, 3}, Run{GiB, 2}, Run{GiB / 2, 1}})
      runs.push_back(r);
  std::stable_sort(runs.begin(), runs.end(),
                   [](const Run& a, const Run& b) { return a.minutes > b.minutes; });
  GpuPacker p(2, 3, 12 * GiB);
  std::vector<int64_t> queue;
  std::vector<double> minutes;
  for (const Run& r : runs) {
    queue.push_back(r.bytes);
    minutes.push_back(r.minutes);
  }
  std::multimap<double, std::pair<int, int64_t>> ends;  // end time -> (gpu, bytes)
  double now = 0, work = 0;
  int started = 0;
  while (!queue.empty() || !ends.empty()) {
    while (const auto pl = p.next(queue)) {
      const size_t k = pl->queue_index;
      p.start(pl->gpu, queue[k]);
      BOOST_TEST(p.used_on(pl->gpu) <= 12 * GiB);
      BOOST_TEST(p.runs_on(pl->gpu) <= 3);
      ends.insert({now + minutes[k], {pl->gpu, queue[k]}});
      work += minutes[k];
      ++started;
      queue.erase(queue.begin() + static_cast<std::ptrdiff_t>(k));
      minutes.erase(minutes.begin() + static_cast<std::ptrdiff_t>(k));
    }
    BOOST_REQUIRE(!ends.empty());  // something runs whenever runs are queued
    const auto first = ends.begin();
    now = first->first;
    p.finish(first->second.first, first->second.second);
    ends.erase(first);
  }
  BOOST_TEST(started == 16);
  // (Minutes here are of one run alone; the bound is the work over the 2 GPUs x 3 slots, or the
  // longest run.)
  BOOST_TEST(now >= std::max(40.0, work / 6));
  BOOST_TEST(now <= 2 * std::max(40.0, work / 6));
}

BOOST_AUTO_TEST_CASE(gpu_memory_from_the_option_or_nvidia_smi) {
  const sl::sweep::GpuMemory m = sl::sweep::gpu_memory(12.5);
  BOOST_TEST(m.bytes == 25 * GiB / 2);
  BOOST_TEST(m.source == "--gpu-mem");
  // nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits: MiB per GPU; the
  // smallest counts for all.
  BOOST_TEST(sl::sweep::parse_memory_total("143771\n143771\n") == int64_t{143771} << 20);
  BOOST_TEST(sl::sweep::parse_memory_total("81559\n40960\n") == int64_t{40960} << 20);
  BOOST_TEST(sl::sweep::parse_memory_total("") == 0);
  BOOST_TEST(sl::sweep::parse_memory_total("[N/A]\n") == 0);
  BOOST_TEST(sl::sweep::gib_text(9 * GiB + GiB / 2) == "9.50 GiB");
}

// The run order (sweep/tables.h order_longest_first): by FLOPs without rates; with a bench file's
// rates by estimated time, so a hybrid run of fewer FLOPs but a third of the FLOP/s goes first; a
// run not benchmarked counts at the mean of the benchmarked rates; ties keep the plan order.
BOOST_AUTO_TEST_CASE(runs_start_longest_first_by_measured_rates) {
  auto run = [](int64_t index, const char* arch, const char* size, double flops) {
    sl::sweep::SweepRun r;
    r.index = index;
    r.arch = arch;
    r.size = size;
    r.config.model.pattern = std::string(arch) == "dense" ? "AAAA" : "GGGA";
    r.flops = flops;
    return r;
  };
  const std::vector<sl::sweep::SweepRun> runs = {
      run(0, "dense", "L2", 4e17), run(1, "hybrid", "L2", 3e17), run(2, "dense", "L1", 1e17),
      run(3, "hybrid", "L1", 1e17), run(4, "dense", "L0", 1e17)};
  auto order = [&](const sl::sweep::Rates& rates) {
    std::vector<const sl::sweep::SweepRun*> q;
    for (const auto& r : runs) q.push_back(&r);
    sl::sweep::order_longest_first(q, rates);
    std::vector<int64_t> ix;
    for (const auto* r : q) ix.push_back(r->index);
    return ix;
  };
  // No rates: FLOPs, ties (runs 2, 3, 4) in plan order.
  BOOST_TEST((order({}) == std::vector<int64_t>{0, 1, 2, 3, 4}));
  // Dense at 3e14 FLOP/s, hybrid at 1e14 (keyed by arch for L2, by pattern for L1): hybrid L2
  // 3000 s, dense L2 1333 s, hybrid L1 1000 s, dense L1 333 s; dense L0 not benchmarked counts
  // at the mean rate 2e14: 500 s.
  const sl::sweep::Rates rates = {{{"dense", "L2"}, 3e14},
                                  {{"hybrid", "L2"}, 1e14},
                                  {{"AAAA", "L1"}, 3e14},
                                  {{"GGGA", "L1"}, 1e14}};
  BOOST_TEST((order(rates) == std::vector<int64_t>{1, 0, 3, 4, 2}));
  BOOST_TEST(sl::sweep::rate_for(runs[3], rates) == 1e14);  // by pattern
  BOOST_TEST(sl::sweep::rate_for(runs[4], rates) == 0.0);   // not benchmarked
}
