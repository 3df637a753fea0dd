// Token sources (text, directories, llm.c v1/v7 shards), their one-line errors, the stateless
// seeded sampler, the eval windows, and the counter-based RNG.
#define BOOST_TEST_MODULE tokens
#include <stdlib.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/tokens.h"

namespace {

using sl::TokenSource;

struct TmpDir {
  std::string path;
  TmpDir() {
    char tmpl[] = "/tmp/sl_tokens_XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TmpDir() { std::filesystem::remove_all(path); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(f.good());
}

// An llm.c shard: 256 x int32 header {magic, version, count, 0...} then the tokens as uint16
// (version 1) or uint32 (version 7). `count_override` >= 0 writes a lying header.
void write_shard(const std::string& path, int version, const std::vector<uint32_t>& tokens,
                 int32_t magic = 0, int64_t count_override = -1) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic ? magic : (version == 1 ? 20240520 : 20240801);
  header[1] = version;
  header[2] = static_cast<int32_t>(count_override >= 0 ? count_override : tokens.size());
  std::string bytes(reinterpret_cast<const char*>(header.data()), 1024);
  for (uint32_t t : tokens) {
    if (version == 1) {
      const uint16_t v = static_cast<uint16_t>(t);
      bytes.append(reinterpret_cast<const char*>(&v), 2);
    } else {
      bytes.append(reinterpret_cast<const char*>(&t), 4);
    }
  }
  write_bytes(path, bytes);
}

void expect_one_line_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    BOOST_FAIL("expected sl::Error");
  } catch (const sl::Error& e) {
    const std::string msg = e.what();
    BOOST_TEST_MESSAGE("error: " << msg);
    BOOST_TEST(msg.find('\n') == std::string::npos, "multi-line error: " << msg);
    for (const std::string& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, msg);
  }
}

std::vector<int32_t> read_all(const TokenSource& s) {
  std::vector<int32_t> v(static_cast<size_t>(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

// A pseudo-random token sequence below `vocab` (so shards hold ids above 255 and 65535).
std::vector<uint32_t> tokens(size_t n, uint32_t vocab, uint64_t seed) {
  sl::Rng r(seed);
  std::vector<uint32_t> v(n);
  for (auto& t : v) t = static_cast<uint32_t>(r.below(vocab));
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_file_tokens_are_its_bytes) {
  TmpDir d;
  const std::string text = std::string("Hello, world!\n\xff\x80 bytes", 23);
  write_bytes(d.path + "/a.txt", text);
  const TokenSource s = TokenSource::open(d.path + "/a.txt", 256);
  BOOST_REQUIRE_EQUAL(s.size(), 23);
  const auto v = read_all(s);
  for (size_t i = 0; i < text.size(); ++i)
    BOOST_TEST(v[i] == static_cast<int32_t>(static_cast<unsigned char>(text[i])));
  BOOST_TEST(s.describe() == "byte-level text, 1 file, 23 tokens");
  s.validate();
}

BOOST_AUTO_TEST_CASE(directory_concatenates_its_files_sorted_by_name_skipping_hidden) {
  TmpDir d;
  write_bytes(d.path + "/b.txt", "BBB");
  write_bytes(d.path + "/a.txt", "AA");
  write_bytes(d.path + "/c.bin", "C");  // in a directory everything is text
  write_bytes(d.path + "/empty.txt", "");
  write_bytes(d.path + "/.hidden", "HIDDEN");
  std::filesystem::create_directories(d.path + "/sub");
  const TokenSource s = TokenSource::open(d.path, 256);
  const auto v = read_all(s);
  BOOST_TEST(std::string(v.begin(), v.end()) == "AABBBC");
  // Every sub-range, including ones that cross file boundaries and the empty file.
  for (int64_t pos = 0; pos <= s.size(); ++pos)
    for (int64_t n = 0; pos + n <= s.size(); ++n) {
      std::vector<int32_t> out(static_cast<size_t>(n));
      s.read(pos, n, out.data());
      BOOST_TEST((out == std::vector<int32_t>(v.begin() + pos, v.begin() + pos + n)));
    }
}

BOOST_AUTO_TEST_CASE(llmc_v1_shards_read_back_exactly_across_shard_boundaries) {
  TmpDir d;
  std::vector<std::vector<uint32_t>> parts = {tokens(1000, 50257, 1), tokens(1, 50257, 2),
                                              tokens(0, 50257, 3), tokens(2500, 50257, 4)};
  parts[3][0] = 65535;  // the largest uint16 survives as 65535, not -1
  std::vector<int32_t> all;
  for (size_t k = 0; k < parts.size(); ++k) {
    // Written out of name order on purpose: the glob result is sorted.
    write_shard(d.path + "/train_00000" + std::to_string(3 - k) + ".bin", 1, parts[k]);
  }
  for (int k = 3; k >= 0; --k) all.insert(all.end(), parts[k].begin(), parts[k].end());
  const TokenSource s = TokenSource::open(d.path + "/train_*.bin", 65536);
  BOOST_REQUIRE_EQUAL(s.size(), 3501);
  BOOST_TEST((read_all(s) == all));
  BOOST_TEST(s.describe() == "llmc v1 uint16, 4 shards, 3.5K tokens");
  // Windows straddling each boundary (2500 | 0 | 1 | 1000).
  for (int64_t pos : {0, 2490, 2499, 2500, 2501, 2495, 3500}) {
    for (int64_t n : {0, 1, 2, 7, 11}) {
      if (pos + n > s.size()) continue;
      std::vector<int32_t> out(static_cast<size_t>(n));
      s.read(pos, n, out.data());
      BOOST_TEST((out == std::vector<int32_t>(all.begin() + pos, all.begin() + pos + n)));
    }
  }
  expect_one_line_error(
      [&] {
        std::vector<int32_t> o(10);
        s.read(3495, 10, o.data());
      },
      {"train_*.bin", "outside"});
}

BOOST_AUTO_TEST_CASE(llmc_v7_uint32_shards_read_back_exactly) {
  TmpDir d;
  std::vector<uint32_t> a = tokens(777, 128256, 5), b = tokens(333, 128256, 6);
  a[0] = 128255;
  write_shard(d.path + "/x_0.bin", 7, a);
  write_shard(d.path + "/x_1.bin", 7, b);
  const TokenSource s = TokenSource::open(d.path + "/x_?.bin", 128256);
  std::vector<int32_t> all(a.begin(), a.end());
  all.insert(all.end(), b.begin(), b.end());
  BOOST_TEST((read_all(s) == all));
  BOOST_TEST(s.describe() == "llmc v7 uint32, 2 shards, 1.1K tokens");
  // A single .bin path (no glob) is a shard too.
  const TokenSource one = TokenSource::open(d.path + "/x_1.bin", 128256);
  BOOST_TEST(one.size() == 333);
  one.validate();
}

BOOST_AUTO_TEST_CASE(missing_files_give_one_line_errors_naming_them) {
  TmpDir d;
  expect_one_line_error([&] { TokenSource::open(d.path + "/nope.txt", 256); },
                        {"data file '" + d.path + "/nope.txt': no such file"});
  expect_one_line_error([&] { TokenSource::open(d.path + "/nope_*.bin", 256); },
                        {d.path + "/nope_*.bin", "no such file"});
}

BOOST_AUTO_TEST_CASE(bad_magic_or_version_errors_name_the_shard) {
  TmpDir d;
  const std::string magic = d.path + "/magic.bin";
  write_shard(magic, 1, {1, 2, 3}, 123);
  expect_one_line_error([&] { TokenSource::open(magic, 50304); },
                        {"shard '" + magic + "': bad magic 123 (expected 20240520 or 20240801)"});
  const std::string ver = d.path + "/ver.bin";
  write_shard(ver, 7, {1, 2, 3}, 20240520);  // v1 magic with version 7
  expect_one_line_error([&] { TokenSource::open(ver, 50304); },
                        {"shard '" + ver + "'", "version 7 (expected 1)"});
  const std::string tiny = d.path + "/tiny.bin";
  write_bytes(tiny, "short");
  expect_one_line_error([&] { TokenSource::open(tiny, 50304); },
                        {"shard '" + tiny + "'", "header"});
}

BOOST_AUTO_TEST_CASE(truncated_or_overlong_shard_bodies_are_rejected_at_open) {
  TmpDir d;
  const std::string cut = d.path + "/cut.bin";
  write_shard(cut, 1, tokens(90, 100, 1), 0, 100);  // header claims 100, body holds 90
  expect_one_line_error([&] { TokenSource::open(cut, 50304); },
                        {"shard '" + cut + "': header says 100 tokens, file holds 90"});
  const std::string longer = d.path + "/long.bin";
  write_shard(longer, 7, tokens(120, 100, 1), 0, 100);
  expect_one_line_error([&] { TokenSource::open(longer, 50304); },
                        {"shard '" + longer + "': header says 100 tokens, file holds 120"});
  // One shard bad among good ones: the bad one is named.
  write_shard(d.path + "/g_0.bin", 1, tokens(10, 100, 1));
  write_shard(d.path + "/g_1.bin", 1, tokens(10, 100, 1), 0, 11);
  expect_one_line_error([&] { TokenSource::open(d.path + "/g_*.bin", 50304); },
                        {"shard '" + d.path + "/g_1.bin'", "header says 11 tokens, file holds 10"});
}

BOOST_AUTO_TEST_CASE(token_ids_at_or_above_vocab_size_name_the_shard_and_offset) {
  TmpDir d;
  std::vector<uint32_t> t = tokens(500, 1000, 9);
  t[321] = 50304;
  write_shard(d.path + "/s_0.bin", 1, tokens(100, 1000, 8));
  write_shard(d.path + "/s_1.bin", 1, t);
  const TokenSource s = TokenSource::open(d.path + "/s_*.bin", 50304);  // open is O(files)
  std::vector<int32_t> out(50);
  s.read(0, 50, out.data());  // reads that avoid the bad id succeed
  const std::string want =
      "shard '" + d.path + "/s_1.bin': token id 50304 at offset 321 >= vocab_size 50304";
  expect_one_line_error([&] { s.read(400, 30, out.data()); }, {want});
  expect_one_line_error([&] { s.validate(); }, {want});
  // Byte-level text with a smaller vocabulary is checked the same way.
  write_bytes(d.path + "/t.txt", "abc\xf0");
  const TokenSource txt = TokenSource::open(d.path + "/t.txt", 128);
  expect_one_line_error([&] { txt.validate(); },
                        {"data file '" + d.path + "/t.txt': token id 240 at offset 3"});
}

BOOST_AUTO_TEST_CASE(empty_short_or_mixed_sources_are_rejected) {
  TmpDir d;
  write_bytes(d.path + "/empty.txt", "");
  expect_one_line_error([&] { TokenSource::open(d.path + "/empty.txt", 256); },
                        {d.path + "/empty.txt", "empty source (0 tokens)"});
  write_shard(d.path + "/zero.bin", 1, {});
  expect_one_line_error([&] { TokenSource::open(d.path + "/zero.bin", 256); },
                        {d.path + "/zero.bin", "empty source"});
  std::filesystem::create_directories(d.path + "/nodir");
  expect_one_line_error([&] { TokenSource::open(d.path + "/nodir", 256); },
                        {d.path + "/nodir", "holds no files"});
  write_bytes(d.path + "/short.txt", "0123456789");
  const TokenSource s = TokenSource::open(d.path + "/short.txt", 256);
  std::vector<int32_t> in(10), tg(10);
  expect_one_line_error([&] { sl::sample_batch(s, 0, 0, 1, 10, in.data(), tg.data()); },
                        {d.path + "/short.txt", "10 tokens, fewer than seq_len + 1 = 11"});
  expect_one_line_error([&] { sl::eval_windows(s, 100, 10); }, {d.path + "/short.txt"});
  sl::sample_batch(s, 0, 0, 1, 9, in.data(), tg.data());  // exactly seq_len + 1 tokens is fine
  BOOST_TEST(in[0] == '0');
  BOOST_TEST(tg[8] == '9');
  expect_one_line_error([&] { TokenSource::open(d.path + "/*", 256); }, {"mixes .bin/.raw shards"});
}

BOOST_AUTO_TEST_CASE(sampler_is_a_pure_function_of_seed_and_draw_counter) {
  TmpDir d;
  write_shard(d.path + "/a.bin", 1, tokens(20000, 50304, 1));
  const TokenSource s = TokenSource::open(d.path + "/a.bin", 50304);
  const int64_t B = 8, T = 64;
  auto batch = [&](uint64_t seed, int64_t step, int64_t b) {
    std::vector<int32_t> in(b * T), tg(b * T);
    sl::sample_batch(s, seed, step, b, T, in.data(), tg.data());
    return std::make_pair(in, tg);
  };
  const auto a = batch(7, 100, B);
  BOOST_TEST((a == batch(7, 100, B)));  // same seed and step: same windows, in any order of calls
  BOOST_TEST((a.first != batch(7, 101, B).first));
  BOOST_TEST((a.first != batch(8, 100, B).first));
  // Rows are draws c = step * batch + i: step 100 of batch 8 = steps 200 and 201 of batch 4.
  auto h0 = batch(7, 200, 4).first, h1 = batch(7, 201, 4).first;
  h0.insert(h0.end(), h1.begin(), h1.end());
  BOOST_TEST((h0 == a.first));
  // Targets are inputs shifted by one, and each window is the slice at a multiple of seq_len.
  const auto all = read_all(s);
  for (int64_t i = 0; i < B; ++i) {
    const int32_t* in = a.first.data() + i * T;
    const int32_t* tg = a.second.data() + i * T;
    BOOST_TEST(std::memcmp(in + 1, tg, (T - 1) * sizeof(int32_t)) == 0);
    bool found = false;
    for (int64_t w = 0; w < (s.size() - 1) / T && !found; ++w)
      found = std::equal(in, in + T, all.begin() + w * T) && all[w * T + T] == tg[T - 1];
    BOOST_TEST(found);
  }
}

BOOST_AUTO_TEST_CASE(window_permutation_is_a_bijection_for_every_size) {
  for (uint64_t n = 1; n <= 300; ++n)
    for (uint64_t seed : {0ull, 1ull, 12345ull}) {
      std::vector<int> seen(n, 0);
      for (uint64_t i = 0; i < n; ++i) ++seen.at(sl::window_permutation(seed, 3, n, i));
      BOOST_TEST(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }),
                 "n=" << n << " seed=" << seed);
    }
  // A large domain: no collision among the first 200k images (a birthday check would flag ~1e-6
  // of bias; a bijection has none), and images spread over the whole range.
  const uint64_t n = (uint64_t{1} << 40) + 12345;
  std::set<uint64_t> img;
  uint64_t hi = 0;
  for (uint64_t i = 0; i < 200000; ++i) {
    const uint64_t v = sl::window_permutation(9, 0, n, i);
    BOOST_REQUIRE(v < n);
    img.insert(v);
    hi = std::max(hi, v);
  }
  BOOST_TEST(img.size() == 200000u);
  BOOST_TEST(hi > n / 2);
}

// A source whose token at position p is p (uint32 shard), so a window's first input names it.
TokenSource counting_source(const TmpDir& d, int64_t n) {
  std::vector<uint32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
  write_shard(d.path + "/count.bin", 7, t);
  return TokenSource::open(d.path + "/count.bin", n);
}

BOOST_AUTO_TEST_CASE(every_window_is_drawn_exactly_once_per_epoch_and_epochs_differ) {
  TmpDir d;
  const int64_t T = 4, W = 37, B = 5;
  const TokenSource s = counting_source(d, W * T + 3);  // 2 spare tokens: still W windows
  BOOST_REQUIRE(sl::train_windows(s, T) == W);
  const int64_t epochs = 4, steps = (epochs * W + B - 1) / B;
  std::vector<int64_t> draws;  // window index of draw c
  std::vector<int32_t> in(B * T), tg(B * T);
  for (int64_t step = 0; step < steps; ++step) {
    sl::sample_batch(s, 11, step, B, T, in.data(), tg.data());
    for (int64_t i = 0; i < B; ++i) {
      BOOST_REQUIRE(in[i * T] % T == 0);
      for (int64_t t = 0; t < T; ++t) {
        BOOST_REQUIRE(in[i * T + t] == in[i * T] + t);
        BOOST_REQUIRE(tg[i * T + t] == in[i * T] + t + 1);
      }
      draws.push_back(in[i * T] / T);
    }
    BOOST_TEST(sl::epoch_of(s, step, B, T) == step * B / W);
  }
  std::vector<std::vector<int64_t>> order;
  for (int64_t e = 0; e < epochs; ++e) {
    std::vector<int64_t> ep(draws.begin() + e * W, draws.begin() + (e + 1) * W);
    order.push_back(ep);
    std::sort(ep.begin(), ep.end());
    for (int64_t w = 0; w < W; ++w) BOOST_TEST(ep[w] == w, "epoch " << e << " misses window " << w);
  }
  for (int64_t e = 1; e < epochs; ++e) BOOST_TEST((order[e] != order[e - 1]));
  std::vector<int64_t> identity(W);
  for (int64_t w = 0; w < W; ++w) identity[w] = w;
  BOOST_TEST((order[0] != identity));
}

BOOST_AUTO_TEST_CASE(resume_at_any_step_reads_the_same_tokens) {
  // Statelessness: steps drawn in a fresh process order (backwards, skipping) equal the steps of
  // one uninterrupted pass, across epoch boundaries.
  TmpDir d;
  const int64_t T = 8, B = 3;
  const TokenSource s = counting_source(d, 50 * T + 1);
  std::vector<std::vector<int32_t>> pass;
  std::vector<int32_t> in(B * T), tg(B * T);
  for (int64_t step = 0; step < 60; ++step) {
    sl::sample_batch(s, 5, step, B, T, in.data(), tg.data());
    pass.push_back(in);
  }
  for (int64_t step = 59; step >= 0; step -= 7) {
    sl::sample_batch(s, 5, step, B, T, in.data(), tg.data());
    BOOST_TEST((in == pass[step]), "step " << step);
  }
}

BOOST_AUTO_TEST_CASE(ranks_partition_the_single_rank_batch) {
  TmpDir d;
  const int64_t T = 16, per_rank = 3, world = 4;
  const TokenSource s = counting_source(d, 40 * T + 1);  // 40 windows: steps cross epochs
  for (int64_t step : {0, 1, 2, 3, 7, 100}) {
    std::vector<int32_t> all(per_rank * world * T), alltg(all.size());
    sl::sample_batch(s, 3, step, per_rank * world, T, all.data(), alltg.data());
    std::vector<int32_t> joined, joinedtg;
    for (int64_t r = 0; r < world; ++r) {
      std::vector<int32_t> in(per_rank * T), tg(per_rank * T);
      sl::sample_batch_rank(s, 3, step, per_rank, T, r, world, in.data(), tg.data());
      joined.insert(joined.end(), in.begin(), in.end());
      joinedtg.insert(joinedtg.end(), tg.begin(), tg.end());
    }
    BOOST_TEST((joined == all), "step " << step);
    BOOST_TEST((joinedtg == alltg));
  }
  std::vector<int32_t> in(T), tg(T);
  expect_one_line_error([&] { sl::sample_batch_rank(s, 3, 0, 1, T, 4, 4, in.data(), tg.data()); },
                        {"count.bin", "rank 4 of world 4"});
}

BOOST_AUTO_TEST_CASE(eval_windows_are_consecutive_non_overlapping_from_the_start) {
  TmpDir d;
  std::vector<uint32_t> t(1000);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint32_t>(i);
  write_shard(d.path + "/v.bin", 1, t);
  const TokenSource s = TokenSource::open(d.path + "/v.bin", 50304);
  const int64_t T = 64, B = 4;
  BOOST_TEST(sl::eval_windows(s, 300, T) == 5);    // ceil(300 / 64)
  BOOST_TEST(sl::eval_windows(s, 0, T) == 15);     // whole source: (1000 - 1) / 64
  BOOST_TEST(sl::eval_windows(s, 5000, T) == 15);  // capped by the source
  BOOST_TEST(sl::eval_batches(s, 300, B, T) == 2);
  std::vector<int32_t> in(B * T), tg(B * T);
  int64_t window = 0;
  for (int64_t b = 0; b < sl::eval_batches(s, 300, B, T); ++b) {
    const int64_t rows = sl::eval_batch(s, 300, B, T, b, in.data(), tg.data());
    BOOST_TEST(rows == (b == 0 ? 4 : 1));
    for (int64_t r = 0; r < rows; ++r, ++window)
      for (int64_t j = 0; j < T; ++j) {
        BOOST_TEST(in[r * T + j] == window * T + j);
        BOOST_TEST(tg[r * T + j] == window * T + j + 1);
      }
  }
  BOOST_TEST(window == 5);
  expect_one_line_error([&] { sl::eval_batch(s, 300, B, T, 2, in.data(), tg.data()); },
                        {"v.bin", "eval batch 2 of 2"});
}

BOOST_AUTO_TEST_CASE(rng_is_counter_based_and_its_distributions_have_the_right_moments) {
  sl::Rng a(42, 7), b(42, 7), c(42, 8), e(43, 7);
  std::vector<uint64_t> va, vb, vc, ve;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next());
    vb.push_back(b.next());
    vc.push_back(c.next());
    ve.push_back(e.next());
  }
  BOOST_TEST((va == vb));
  BOOST_TEST((va != vc));
  BOOST_TEST((va != ve));
  // Value k depends only on (seed, stream, k): jumping the counter reproduces the sequence.
  sl::Rng j(42, 7);
  j.counter = 50;
  BOOST_TEST(j.next() == va[50]);

  sl::Rng r(1);
  const int n = 400000;
  double su = 0, sn = 0, sn2 = 0, sn4 = 0;
  double umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    su += u;
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    const double z = r.normal();
    sn += z;
    sn2 += z * z;
    sn4 += z * z * z * z;
  }
  BOOST_TEST(umin >= 0.0);
  BOOST_TEST(umax < 1.0);
  BOOST_TEST(std::abs(su / n - 0.5) < 0.003);   // se = 0.29 / sqrt(n) = 4.6e-4
  BOOST_TEST(std::abs(sn / n) < 0.01);          // se = 1.6e-3
  BOOST_TEST(std::abs(sn2 / n - 1.0) < 0.015);  // se = sqrt(2 / n) = 2.2e-3
  BOOST_TEST(std::abs(sn4 / n - 3.0) < 0.1);    // kurtosis of a normal, se ~ 0.015
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(r.below(10));
  BOOST_TEST(seen.size() == 10u);
  BOOST_TEST(r.below(1) == 0u);
}
