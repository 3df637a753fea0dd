// Checkpoints RUN/ckpt/state.h5 and atomic_write_file: exact round trip, atomic replacement
// (crashes leave the previous checkpoint), named errors, checksums (a zeroed or flipped tensor is
// refused naming it), and a write that does not fit leaving the previous checkpoint and no tmp.
#define BOOST_TEST_MODULE checkpoint
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>

#include "core/crc32.h"
#include "core/error.h"
#include "core/fs.h"
#include "runlog/checkpoint.h"

namespace {

using sl::Checkpoint;

struct TmpDir {
  std::string path;
  TmpDir() {
    char tmpl[] = "/tmp/sl_ckpt_XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TmpDir() { std::filesystem::remove_all(path); }
};

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

// A checkpoint whose contents identify `version`, with awkward floats (NaN payload, infinities,
// denormals, -0) that must survive bit for bit.
Checkpoint make(int version, size_t n = 1000) {
  Checkpoint c;
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = static_cast<float>(std::sin(0.37 * i + version));
  if (n >= 5) {
    w[0] = std::numeric_limits<float>::infinity();
    w[1] = -std::numeric_limits<float>::infinity();
    w[2] = std::numeric_limits<float>::denorm_min();
    w[3] = -0.0f;
    w[4] = std::numeric_limits<float>::quiet_NaN();
  }
  c.arrays["model.embed_tokens.weight"] = w;
  c.arrays["model.layers.0.self_attn.q_proj.weight"] = std::vector<float>(12, 0.5f * version);
  c.arrays["adam_m.model.norm.weight"] = std::vector<float>(3, -1.0f);
  c.arrays["empty"] = {};
  c.ints["step"] = 1000 * version;
  c.ints["tokens"] = (int64_t{1} << 40) + version;
  c.ints["rng_neg"] = -7;
  c.strings["config"] = "[model]\narch = \"hybrid\" # ✓\n" + std::string(200000, 'c');
  c.strings["spec"] = "v" + std::to_string(version);
  return c;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void check_equal(const Checkpoint& got, const Checkpoint& want) {
  BOOST_REQUIRE_EQUAL(got.arrays.size(), want.arrays.size());
  for (const auto& [name, v] : want.arrays) {
    BOOST_REQUIRE_MESSAGE(got.arrays.count(name), name);
    BOOST_TEST(same_bits(got.arrays.at(name), v), name);
  }
  BOOST_TEST((got.ints == want.ints));
  BOOST_TEST((got.strings == want.strings));
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_preserves_arrays_ints_and_strings_bit_for_bit) {
  TmpDir d;
  const std::string dir = d.path + "/run/ckpt";  // created on demand, parents included
  BOOST_TEST(!sl::checkpoint_exists(dir));
  const Checkpoint c = make(1);
  sl::write_checkpoint(dir, c);
  BOOST_TEST(sl::checkpoint_exists(dir));
  BOOST_TEST(!std::filesystem::exists(dir + "/state.h5.tmp"));
  const Checkpoint r = sl::read_checkpoint(dir);
  check_equal(r, c);
  BOOST_TEST(r.source == dir + "/state.h5");
  BOOST_TEST(r.array("model.layers.0.self_attn.q_proj.weight", 12).at(0) == 0.5f);
  BOOST_TEST(r.int_value("step") == 1000);
  BOOST_TEST(r.string_value("spec") == "v1");
}

BOOST_AUTO_TEST_CASE(a_new_checkpoint_replaces_the_previous_one_whole) {
  TmpDir d;
  sl::write_checkpoint(d.path, make(1));
  Checkpoint c2 = make(2, 50);
  c2.arrays.erase("empty");
  sl::write_checkpoint(d.path, c2);
  check_equal(sl::read_checkpoint(d.path), c2);  // nothing of checkpoint 1 remains
}

BOOST_AUTO_TEST_CASE(stale_tmp_from_a_crash_does_not_hide_the_good_checkpoint) {
  TmpDir d;
  const Checkpoint good = make(1);
  sl::write_checkpoint(d.path, good);
  // A writer that died mid-write leaves a partial state.h5.tmp behind.
  std::ofstream(d.path + "/state.h5.tmp") << "\x89HDF\r\n\x1a\n partial garbage";
  BOOST_TEST(sl::checkpoint_exists(d.path));
  check_equal(sl::read_checkpoint(d.path), good);
  // The next write replaces the stale tmp and leaves none.
  const Checkpoint next = make(3);
  sl::write_checkpoint(d.path, next);
  check_equal(sl::read_checkpoint(d.path), next);
  BOOST_TEST(!std::filesystem::exists(d.path + "/state.h5.tmp"));
}

BOOST_AUTO_TEST_CASE(sigkill_during_a_write_leaves_the_previous_checkpoint_or_the_new_one) {
  // A child writes a large checkpoint and is killed at several points of the write; the parent
  // must then read either the old checkpoint or the new one, never a mix or an error.
  TmpDir d;
  const Checkpoint old_c = make(1);
  sl::write_checkpoint(d.path, old_c);
  int saw_old = 0, saw_new = 0;
  for (int delay_ms : {0, 5, 20, 60, 150, -1}) {  // -1: let the write finish
    pid_t pid = fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      Checkpoint big = make(2);
      big.arrays["big"] = std::vector<float>(size_t{24} << 20, 1.25f);  // 96 MiB
      try {
        sl::write_checkpoint(d.path, big);
      } catch (...) {
        _exit(1);
      }
      _exit(0);
    }
    int st = 0;
    if (delay_ms >= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
    } else {
      waitpid(pid, &st, 0);
      BOOST_REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    const Checkpoint r = sl::read_checkpoint(d.path);
    if (r.arrays.count("big")) {
      ++saw_new;
      BOOST_TEST(r.ints.at("step") == 2000);
      BOOST_TEST(r.arrays.at("big").size() == size_t{24} << 20);
      BOOST_TEST(r.arrays.at("big").back() == 1.25f);
    } else {
      ++saw_old;
      check_equal(r, old_c);
    }
  }
  BOOST_TEST_MESSAGE("old checkpoint seen " << saw_old << " times, new " << saw_new);
  BOOST_TEST(saw_old > 0);  // at least the 0 ms kill lands before the rename
  BOOST_TEST(saw_new > 0);  // and the completed write is seen whole
}

BOOST_AUTO_TEST_CASE(missing_or_mismatched_array_errors_name_the_file_and_the_array) {
  TmpDir d;
  sl::write_checkpoint(d.path, make(1));
  const Checkpoint r = sl::read_checkpoint(d.path);
  const std::string file = d.path + "/state.h5";
  expect_one_line_error([&] { r.array("model.layers.0.self_attn.q_proj.weight", 10); },
                        {"checkpoint " + file +
                         ": array 'model.layers.0.self_attn.q_proj.weight' has 12 elements, "
                         "expected 10"});
  expect_one_line_error([&] { r.array("model.layers.1.mlp.up_proj.weight", 12); },
                        {file, "no array 'model.layers.1.mlp.up_proj.weight'"});
  expect_one_line_error([&] { r.int_value("epoch"); }, {file, "no int 'epoch'"});
  expect_one_line_error([&] { r.string_value("tokenizer"); }, {file, "no string 'tokenizer'"});
}

BOOST_AUTO_TEST_CASE(missing_corrupt_or_foreign_checkpoint_files_give_named_errors) {
  TmpDir d;
  const std::string none = d.path + "/none";
  expect_one_line_error([&] { sl::read_checkpoint(none); }, {none + "/state.h5", "no such file"});

  const std::string bad = d.path + "/bad";
  std::filesystem::create_directories(bad);
  std::ofstream(bad + "/state.h5") << "not hdf5";
  expect_one_line_error([&] { sl::read_checkpoint(bad); }, {bad + "/state.h5", "cannot open"});

  // Truncation of a real checkpoint (e.g. a copy cut short) is caught too.
  const std::string cut = d.path + "/cut";
  sl::write_checkpoint(cut, make(1, 100000));
  std::filesystem::resize_file(cut + "/state.h5", 2000);
  expect_one_line_error([&] { sl::read_checkpoint(cut); }, {cut + "/state.h5"});
}

BOOST_AUTO_TEST_CASE(names_with_a_slash_or_empty_are_rejected_before_writing) {
  TmpDir d;
  Checkpoint c;
  c.arrays["a/b"] = {1.0f};
  expect_one_line_error([&] { sl::write_checkpoint(d.path, c); }, {"invalid array name 'a/b'"});
  Checkpoint e;
  e.ints[""] = 1;
  expect_one_line_error([&] { sl::write_checkpoint(d.path, e); }, {"invalid int name ''"});
  BOOST_TEST(!sl::checkpoint_exists(d.path));
}

BOOST_AUTO_TEST_CASE(atomic_write_file_replaces_contents_and_leaves_no_tmp) {
  TmpDir d;
  const std::string p = d.path + "/sub/dir/file.txt";
  sl::make_dirs(sl::parent_dir(p));
  sl::atomic_write_file(p, "first");
  BOOST_TEST(sl::read_file(p) == "first");
  std::string binary("a\0b\xff", 4);
  sl::atomic_write_file(p, binary);
  BOOST_TEST(sl::read_file(p) == binary);
  BOOST_TEST(!std::filesystem::exists(p + ".tmp"));
  expect_one_line_error([&] { sl::atomic_write_file(d.path + "/missing_dir/x", "y"); },
                        {d.path + "/missing_dir/x.tmp"});
  expect_one_line_error([&] { sl::read_file(d.path + "/nope"); }, {d.path + "/nope"});
}

// ---- integrity (issue 19, item 3): checksums per tensor, a failed write leaves nothing ----------

namespace {

// The byte offset of /arrays/NAME's data in the file (contiguous layout).
haddr_t data_offset(const std::string& file, const std::string& name) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  BOOST_REQUIRE(f >= 0);
  hid_t ds = H5Dopen2(f, ("/arrays/" + name).c_str(), H5P_DEFAULT);
  BOOST_REQUIRE(ds >= 0);
  const haddr_t off = H5Dget_offset(ds);
  H5Dclose(ds);
  H5Fclose(f);
  BOOST_REQUIRE(off != HADDR_UNDEF);
  return off;
}

}  // namespace

BOOST_AUTO_TEST_CASE(crc32_is_the_ieee_crc) {
  // The standard check value of CRC-32/ISO-HDLC (zlib's crc32), whole and split in two.
  const char* s = "123456789";
  BOOST_TEST(sl::crc32(s, 9) == 0xCBF43926u);
  BOOST_TEST(sl::crc32(s + 4, 5, sl::crc32(s, 4)) == 0xCBF43926u);
  BOOST_TEST(sl::crc32(s, 0) == 0u);
}

BOOST_AUTO_TEST_CASE(a_zeroed_tensor_is_refused_naming_it) {
  TmpDir d;
  sl::write_checkpoint(d.path, make(1));
  const std::string file = d.path + "/state.h5";
  // Overwrite one tensor with zeros through HDF5 itself: a valid file whose data changed, as
  // when a storage layer returns a zero-filled block.
  {
    hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    BOOST_REQUIRE(f >= 0);
    hid_t ds = H5Dopen2(f, "/arrays/model.layers.0.self_attn.q_proj.weight", H5P_DEFAULT);
    BOOST_REQUIRE(ds >= 0);
    std::vector<float> zeros(12, 0.f);
    BOOST_REQUIRE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data()) >= 0);
    H5Dclose(ds);
    H5Fclose(f);
  }
  expect_one_line_error(
      [&] { sl::read_checkpoint(d.path); },
      {file, "array 'model.layers.0.self_attn.q_proj.weight'", "checksum", "corrupt"});
}

BOOST_AUTO_TEST_CASE(a_flipped_byte_in_any_tensor_or_in_the_step_is_refused) {
  TmpDir d;
  const Checkpoint c = make(1);
  sl::write_checkpoint(d.path, c);
  const std::string file = d.path + "/state.h5";
  const std::string pristine = [&] {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  for (const auto& [name, v] : c.arrays) {
    if (v.empty()) continue;
    std::string bytes = pristine;
    const haddr_t off = data_offset(file, name) + (v.size() * sizeof(float)) / 2;
    bytes[off] = static_cast<char>(bytes[off] ^ 0x10);  // one bit
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    expect_one_line_error([&] { sl::read_checkpoint(d.path); },
                          {"array '" + name + "'", "checksum"});
  }
  // The step counter lives in an attribute: changing it (to resume at the wrong step) is caught
  // by the checksum of /ints.
  std::ofstream(file, std::ios::binary | std::ios::trunc) << pristine;
  {
    hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "ints", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "step", H5P_DEFAULT);
    const int64_t wrong = 999;
    BOOST_REQUIRE(H5Awrite(a, H5T_NATIVE_INT64, &wrong) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
  }
  expect_one_line_error([&] { sl::read_checkpoint(d.path); }, {"/ints", "checksum"});
  // Untouched, it still loads.
  std::ofstream(file, std::ios::binary | std::ios::trunc) << pristine;
  check_equal(sl::read_checkpoint(d.path), c);
}

// A file-size limit (as a full disk or quota would) makes the write fail: one line, no stray
// state.h5.tmp, the previous checkpoint untouched. Run in a child with RLIMIT_FSIZE so the limit
// does not apply to the test itself.
BOOST_AUTO_TEST_CASE(a_write_that_does_not_fit_leaves_the_previous_checkpoint_and_no_tmp) {
  TmpDir d;
  const Checkpoint small = make(1, 100);
  sl::write_checkpoint(d.path, small);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit lim{64 * 1024, 64 * 1024};
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      sl::write_checkpoint(d.path, make(2, 100000));  // 400 KB of floats: over the limit
      _exit(10);
    } catch (const sl::Error& e) {
      const std::string msg = e.what();
      const bool ok = msg.find("state.h5.tmp") != std::string::npos &&
                      msg.find("File too large") != std::string::npos &&
                      msg.find('\n') == std::string::npos;
      std::fprintf(stderr, "child error: %s\n", e.what());
      _exit(ok ? 0 : 11);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
  BOOST_TEST(!std::filesystem::exists(d.path + "/state.h5.tmp"));
  check_equal(sl::read_checkpoint(d.path), small);
}
