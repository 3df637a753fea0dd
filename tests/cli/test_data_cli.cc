// `scalinglab data prepare|inspect` through the real binary (SL_EXE): exit codes, the one-line
// error naming the file (and offset), and that a failed prepare leaves no shard behind.
#define BOOST_TEST_MODULE data_cli
#include <stdlib.h>
#include <sys/wait.h>

#include "common/files.h"
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct TmpDir {
  std::string path;
  TmpDir() {
    char tmpl[] = "/tmp/sl_data_cli_XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TmpDir() { fs::remove_all(path); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

using sl::test::slurp;

struct Result {
  int code;
  std::string out, err;
};

// Runs SL_EXE with `args` (already shell-quoted where needed), capturing stdout and stderr.
Result run(const TmpDir& d, const std::string& args) {
  const std::string out = d.path + "/.stdout", err = d.path + "/.stderr";
  const int st = std::system((std::string(SL_EXE) + " " + args + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
}

// A non-zero exit with exactly one stderr line holding every part.
void expect_error(const Result& r, const std::vector<std::string>& parts) {
  BOOST_TEST_MESSAGE("stderr: " << r.err);
  BOOST_TEST(r.code != 0);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  for (const std::string& p : parts) BOOST_TEST(r.err.find(p) != std::string::npos, r.err);
}

std::string shard(int32_t magic, int32_t version, int32_t count, const std::vector<uint16_t>& t) {
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::string b(reinterpret_cast<const char*>(header.data()), 1024);
  b.append(reinterpret_cast<const char*>(t.data()), t.size() * 2);
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(prepare_then_inspect_verifies_every_shard) {
  TmpDir d;
  fs::create_directories(d.path + "/in/sub");
  for (int i = 0; i < 30; ++i)
    write_bytes(d.path + "/in/" + (i % 2 ? "sub/" : "") + "f" + std::to_string(i) + ".txt",
                "file " + std::to_string(i) + " says hello\n");
  Result r = run(d, "data prepare " + d.path + "/in --out " + d.path + "/out --val-fraction 0.2 " +
                        "--shard-tokens 200 --quiet");
  BOOST_TEST(r.code == 0, r.err);
  BOOST_TEST(r.out.find("train: ") != std::string::npos, r.out);
  r = run(d, "data inspect " + d.path + "/out");
  BOOST_TEST(r.code == 0, r.err);
  BOOST_TEST(r.out.find("shards match the manifest") != std::string::npos, r.out);
  r = run(d, "data inspect " + d.path + "/out/train_000000.bin");
  BOOST_TEST(r.code == 0, r.err);
  BOOST_TEST(r.out.find("llmc v1 uint16") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("tokens:   200") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("first 64 tokens as bytes: \"file ") != std::string::npos, r.out);

  // A flipped byte in a shard: inspect names the shard.
  std::string s = slurp(d.path + "/out/train_000001.bin");
  s[1100] ^= 1;  // a token byte (the header is bytes 0..1023)
  write_bytes(d.path + "/out/train_000001.bin", s);
  expect_error(run(d, "data inspect " + d.path + "/out"),
               {"shard '" + d.path + "/out/train_000001.bin'", "sha256"});
}

BOOST_AUTO_TEST_CASE(bad_shards_exit_non_zero_with_one_line_naming_file_and_offset) {
  TmpDir d;
  const std::string magic = d.path + "/magic.bin", count = d.path + "/count.bin",
                    ver = d.path + "/ver.bin", oob = d.path + "/oob.bin";
  write_bytes(magic, shard(12345, 1, 3, {1, 2, 3}));
  write_bytes(ver, shard(20240520, 2, 3, {1, 2, 3}));
  write_bytes(count, shard(20240520, 1, 5, {1, 2, 3}));
  write_bytes(oob, shard(20240520, 1, 4, {1, 2, 300, 4}));
  expect_error(run(d, "data inspect " + magic), {"shard '" + magic + "'", "bad magic 12345"});
  expect_error(run(d, "data inspect " + ver), {"shard '" + ver + "'", "version 2"});
  expect_error(run(d, "data inspect " + count),
               {"shard '" + count + "'", "header says 5 tokens, file holds 3"});
  expect_error(run(d, "data inspect " + oob + " --vocab 256"),
               {"shard '" + oob + "'", "token id 300 at offset 2"});
  const Result ok = run(d, "data inspect " + oob);  // no --vocab: only reports the range
  BOOST_TEST(ok.code == 0, ok.err);
  BOOST_TEST(ok.out.find("id range: [1, 300]") != std::string::npos, ok.out);
}

BOOST_AUTO_TEST_CASE(failed_prepare_leaves_no_shard_under_a_final_name) {
  TmpDir d;
  fs::create_directories(d.path + "/empty");
  expect_error(run(d, "data prepare " + d.path + "/empty --out " + d.path + "/o1"),
               {"no documents"});
  write_bytes(d.path + "/a.txt", "some text");
  write_bytes(d.path + "/bad.tar", std::string(1024, 'x'));
  expect_error(run(d, "data prepare " + d.path + "/a.txt " + d.path + "/bad.tar --out " + d.path +
                          "/o2 --val-fraction 0"),
               {"archive '" + d.path + "/bad.tar'", "offset 0"});
  for (const char* o : {"/o1", "/o2"})
    if (fs::exists(d.path + o)) BOOST_TEST(fs::is_empty(d.path + o), o);
  expect_error(run(d, "data prepare " + d.path + "/nope --out " + d.path + "/o3"),
               {"input '" + d.path + "/nope'"});
  expect_error(run(d, "data prepare " + d.path + "/a.txt --out " + d.path + "/o4 --format zip"),
               {"shard format 'zip'"});
}
