// Counter-based random numbers: SplitMix64 over a key derived from (seed, stream).
//
// Value k (k = 1, 2, ...) of Rng(seed, stream) is mix64(key + k * kGamma), where
//   key = mix64(seed ^ kSeedSalt) ^ mix64(stream + kStreamSalt),
// a pure function of (seed, stream, k). So a draw can be reproduced from its coordinates alone
// (the data sampler keys a generator by (seed, step, window) and needs no state to resume), and
// two streams of one seed are independent for all practical purposes. The formulas are part of the
// reproducibility contract: changing them changes every run's data order and initial weights.
#pragma once
#include <cmath>
#include <cstdint>

namespace sl {

// SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection on 64-bit words, full avalanche.
inline constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Combines two words into one stream id, order-sensitive: stream_id(a, b) != stream_id(b, a).
inline constexpr uint64_t stream_id(uint64_t a, uint64_t b) {
  return mix64(a + 0x243F6A8885A308D3ull) ^ (mix64(b ^ 0x13198A2E03707344ull) * 3 + 1);
}

struct Rng {
  static constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio, odd

  explicit Rng(uint64_t seed, uint64_t stream = 0)
      : key(mix64(seed ^ 0x6A09E667F3BCC909ull) ^ mix64(stream + 0xBB67AE8584CAA73Bull)) {}

  // The next 64 uniformly distributed bits.
  uint64_t next() { return mix64(key + (++counter) * kGamma); }

  // Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire 2019: multiply, reject the
  // short tail). Returns 0 for n == 0.
  uint64_t below(uint64_t n) {
    if (n == 0) return 0;
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t lo = static_cast<uint64_t>(m);
    if (lo < n) {
      const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
      while (lo < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        lo = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

  // Standard normal N(0, 1) by Box-Muller. Each pair of uniforms gives two normals; the second
  // is cached, so a sequence of normal() calls is still a pure function of (seed, stream).
  double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]: log(u1) is finite
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 6.283185307179586476925286766559 * u2;
    spare = r * std::sin(t);
    has_spare = true;
    return r * std::cos(t);
  }

  uint64_t key;
  uint64_t counter = 0;  // number of 64-bit words drawn so far
  double spare = 0;
  bool has_spare = false;
};

}  // namespace sl
