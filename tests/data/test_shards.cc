// Shard writing (llm.c v1/v7, raw + sidecar) read back by TokenSource, SHA-256, and `prepare`:
// directories and tar/tar.xz archives into shards, the per-document split, the manifest, and bad
// input that must leave the output directory untouched.
#define BOOST_TEST_MODULE shards
#include <stdlib.h>

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/prepare.h"
#include "data/sha256.h"
#include "data/shards.h"
#include "data/tokens.h"

namespace {

namespace fs = std::filesystem;
using sl::ShardFormat;
using sl::TokenSource;

struct TmpDir {
  std::string path;
  TmpDir() {
    char tmpl[] = "/tmp/sl_shards_XXXXXX";
    BOOST_REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TmpDir() { fs::remove_all(path); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(f.good());
}

using sl::test::slurp;

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

std::vector<uint32_t> tokens(size_t n, uint32_t vocab, uint64_t seed) {
  sl::Rng r(seed);
  std::vector<uint32_t> v(n);
  for (auto& t : v) t = static_cast<uint32_t>(r.below(vocab));
  return v;
}

// Files whose names end in ".tmp" anywhere under dir (leftovers of an interrupted write).
int count_tmp(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    n += e.path().string().ends_with(".tmp");
  return n;
}

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

}  // namespace

BOOST_AUTO_TEST_CASE(sha256_matches_the_fips_vectors) {
  BOOST_TEST(sl::sha256_hex("") ==
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  BOOST_TEST(sl::sha256_hex("abc") ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(sl::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Streaming in odd pieces equals one shot (block boundaries inside updates).
  const std::string m(1000000, 'a');
  sl::Sha256 h;
  for (size_t i = 0; i < m.size(); i += 777)
    h.update(m.data() + i, std::min<size_t>(777, m.size() - i));
  BOOST_TEST(h.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

BOOST_AUTO_TEST_CASE(llmc_shards_round_trip_v1_below_65537_and_v7_above) {
  TmpDir d;
  std::vector<uint32_t> a = tokens(5000, 65536, 1);
  a[17] = 65535;
  const sl::ShardInfo ia = sl::write_shard(d.path + "/a.bin", ShardFormat::kLlmc, a.data(),
                                           static_cast<int64_t>(a.size()), 65536);
  BOOST_TEST(ia.tokens == 5000);
  BOOST_TEST(ia.bytes == 1024 + 2 * 5000);
  BOOST_TEST(ia.sha256 == sl::sha256_file(d.path + "/a.bin"));
  const std::string raw = slurp(d.path + "/a.bin");
  int32_t header[3];
  std::memcpy(header, raw.data(), sizeof header);
  BOOST_TEST(header[0] == 20240520);
  BOOST_TEST(header[1] == 1);
  BOOST_TEST(header[2] == 5000);
  const TokenSource sa = TokenSource::open(d.path + "/a.bin", 65536);
  BOOST_TEST((read_all(sa) == std::vector<int32_t>(a.begin(), a.end())));

  std::vector<uint32_t> b = tokens(3000, 128256, 2);
  b[0] = 128255;
  sl::write_shard(d.path + "/b.bin", ShardFormat::kLlmc, b.data(), 3000, 128256);
  std::memcpy(header, slurp(d.path + "/b.bin").data(), sizeof header);
  BOOST_TEST(header[0] == 20240801);
  BOOST_TEST(header[1] == 7);
  const TokenSource sb = TokenSource::open(d.path + "/b.bin", 128256);
  BOOST_TEST((read_all(sb) == std::vector<int32_t>(b.begin(), b.end())));
  BOOST_TEST(sb.describe() == "llmc v7 uint32, 1 shard, 3.0K tokens");
  BOOST_TEST(count_tmp(d.path) == 0);
}

BOOST_AUTO_TEST_CASE(raw_shards_round_trip_with_their_sidecar) {
  TmpDir d;
  std::vector<uint32_t> a = tokens(1000, 50304, 3), b = tokens(700, 200000, 4);
  sl::write_shard(d.path + "/r_0.raw", ShardFormat::kRaw, a.data(), 1000, 50304);
  sl::write_shard(d.path + "/r_1.raw", ShardFormat::kRaw, b.data(), 700, 200000);
  BOOST_TEST(fs::file_size(d.path + "/r_0.raw") == 2000u);  // headerless
  BOOST_TEST(fs::file_size(d.path + "/r_1.raw") == 2800u);
  const auto side = nlohmann::json::parse(slurp(d.path + "/r_1.raw.json"));
  BOOST_TEST(side["dtype"] == "uint32");
  BOOST_TEST(side["tokens"] == 700);
  const TokenSource s = TokenSource::open(d.path + "/r_*.raw", 200000);
  std::vector<int32_t> all(a.begin(), a.end());
  all.insert(all.end(), b.begin(), b.end());
  BOOST_TEST((read_all(s) == all));
  BOOST_TEST(s.describe() == "raw uint16 + raw uint32, 2 shards, 1.7K tokens");

  // The sidecar and the data must agree; a raw shard without its sidecar is refused.
  write_bytes(d.path + "/cut.raw", slurp(d.path + "/r_0.raw").substr(0, 1998));
  write_bytes(d.path + "/cut.raw.json", slurp(d.path + "/r_0.raw.json"));
  expect_one_line_error(
      [&] { TokenSource::open(d.path + "/cut.raw", 50304); },
      {"shard '" + d.path + "/cut.raw': sidecar says 1000 tokens, file holds 999"});
  write_bytes(d.path + "/lone.raw", "abcd");
  expect_one_line_error([&] { TokenSource::open(d.path + "/lone.raw", 50304); },
                        {d.path + "/lone.raw", "without its sidecar"});
  write_bytes(d.path + "/bad.raw", "abcd");
  write_bytes(d.path + "/bad.raw.json", R"({"format": "scalinglab.raw/1", "dtype": "int8"})");
  expect_one_line_error([&] { TokenSource::open(d.path + "/bad.raw", 50304); },
                        {d.path + "/bad.raw.json", "dtype"});
}

BOOST_AUTO_TEST_CASE(an_id_out_of_range_names_shard_and_offset_and_leaves_no_file) {
  TmpDir d;
  std::vector<uint32_t> t = tokens(100000, 50257, 5);
  t[77777] = 50257;
  for (ShardFormat f : {ShardFormat::kLlmc, ShardFormat::kRaw}) {
    const std::string path = d.path + "/x" + sl::shard_extension(f);
    expect_one_line_error([&] { sl::write_shard(path, f, t.data(), 100000, 50257); },
                          {"shard '" + path + "': token id 50257 at offset 77777 >= vocab_size"});
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST(!fs::exists(path + ".json"));
  }
  BOOST_TEST(count_tmp(d.path) == 0);
  // An unfinished writer (e.g. an exception elsewhere) leaves nothing either.
  {
    sl::ShardWriter w(d.path + "/y.bin", ShardFormat::kLlmc, 256);
    const uint8_t bytes[3] = {1, 2, 3};
    w.append_bytes(bytes, 3);
  }
  BOOST_TEST(fs::is_empty(d.path));
}

BOOST_AUTO_TEST_CASE(validation_split_is_by_path_hash_and_near_the_fraction) {
  int val = 0;
  for (int i = 0; i < 20000; ++i) val += sl::is_val_document("dir/file_" + std::to_string(i), 0.1);
  BOOST_TEST(std::abs(val / 20000.0 - 0.1) < 0.01);  // binomial se 0.002
  for (int i = 0; i < 100; ++i) {
    const std::string p = "x/" + std::to_string(i) + ".c";
    BOOST_TEST(!sl::is_val_document(p, 0.0));
    BOOST_TEST(sl::is_val_document(p, 0.05) <= sl::is_val_document(p, 0.5));  // monotone in F
  }
}

// A small tree of documents; returns (document path, bytes) in the order prepare reads a
// directory (sorted relative paths).
std::vector<std::pair<std::string, std::string>> make_tree(const std::string& root, int n) {
  std::vector<std::pair<std::string, std::string>> docs;
  for (int i = 0; i < n; ++i) {
    const std::string rel =
        (i % 3 ? "sub/" : "") + std::string("doc_") + std::to_string(100 + i) + ".txt";
    std::string body = "document " + std::to_string(i) + "\n";
    for (int k = 0; k < i * 7; ++k) body += static_cast<char>('a' + (i + k) % 26);
    write_bytes(root + "/" + rel, body);
    docs.emplace_back(rel, body);
  }
  write_bytes(root + "/.hidden", "never read");
  std::sort(docs.begin(), docs.end());
  return docs;
}

std::string read_split(const std::string& dir, const std::string& split) {
  if (!fs::exists(dir + "/" + split + "_000000.bin")) return "";
  const TokenSource s = TokenSource::open(dir + "/" + split + "_*.bin", 256);
  const auto v = read_all(s);
  return std::string(v.begin(), v.end());
}

BOOST_AUTO_TEST_CASE(prepare_directory_splits_by_document_and_writes_a_manifest) {
  TmpDir d;
  const auto docs = make_tree(d.path + "/in", 40);
  std::string want_train, want_val;
  int n_val = 0;
  for (const auto& [rel, body] : docs) {
    const bool v = sl::is_val_document(rel, 0.2);
    (v ? want_val : want_train) += body;
    n_val += v;
  }
  BOOST_REQUIRE(n_val > 0);
  sl::PrepareOptions o;
  o.inputs = {d.path + "/in"};
  o.out_dir = d.path + "/out";
  o.val_fraction = 0.2;
  o.shard_tokens = 500;  // several shards, documents straddling them
  const sl::PrepareResult r = sl::prepare(o);
  BOOST_TEST(read_split(o.out_dir, "train") == want_train);
  BOOST_TEST(read_split(o.out_dir, "val") == want_val);
  BOOST_TEST(r.train.documents + r.val.documents == 40);
  BOOST_TEST(r.val.documents == n_val);
  BOOST_TEST(r.train.shards.size() == (want_train.size() + 499) / 500);
  const auto m = nlohmann::json::parse(slurp(o.out_dir + "/manifest.json"));
  BOOST_TEST(m["tokens"]["train"] == want_train.size());
  BOOST_TEST(m["tokens"]["val"] == want_val.size());
  BOOST_TEST(m["shards"].size() == r.train.shards.size() + r.val.shards.size());
  for (const auto& s : m["shards"])
    BOOST_TEST(s["sha256"] == sl::sha256_file(o.out_dir + "/" + s["name"].get<std::string>()));
  BOOST_TEST(m["inputs"][0]["documents"] == 40);

  // Adding documents never moves an existing one: the old val documents are all still in val.
  write_bytes(d.path + "/in/zz_new_1.txt", "new one");
  write_bytes(d.path + "/in/aa_new_2.txt", "another new one");
  o.shard_tokens = 100000;  // fewer shards: the old extra shards must disappear
  sl::prepare(o);
  const std::string val2 = read_split(o.out_dir, "val");
  for (const auto& [rel, body] : docs)
    if (sl::is_val_document(rel, 0.2)) BOOST_TEST(val2.find(body) != std::string::npos, rel);
  BOOST_TEST(!fs::exists(o.out_dir + "/train_000001.bin"));
  BOOST_TEST(count_tmp(d.path) == 0);

  // --include/--exclude filter on the document path.
  sl::PrepareOptions f = o;
  f.out_dir = d.path + "/filtered";
  f.val_fraction = 0;
  f.include = {"sub/*"};
  f.exclude = {"*_101.txt"};
  const sl::PrepareResult rf = sl::prepare(f);
  std::string want;
  for (const auto& [rel, body] : docs)
    if (rel.starts_with("sub/") && rel != "sub/doc_101.txt") want += body;
  BOOST_TEST(read_split(f.out_dir, "train") == want);
  BOOST_TEST(rf.val.tokens == 0);
  BOOST_TEST(!fs::exists(f.out_dir + "/val_000000.bin"));

  // raw format: same tokens.
  sl::PrepareOptions rw = o;
  rw.out_dir = d.path + "/raw";
  rw.format = ShardFormat::kRaw;
  sl::prepare(rw);
  const auto v = read_all(TokenSource::open(rw.out_dir + "/val_*.raw", 256));
  BOOST_TEST(std::string(v.begin(), v.end()) == val2);
}

BOOST_AUTO_TEST_CASE(prepare_reads_tar_and_tar_xz_archives_with_long_names) {
  TmpDir d;
  const auto docs = make_tree(d.path + "/t", 12);
  // A member path over 100 bytes needs a ustar prefix or a GNU long-name record.
  const std::string deep = "t/" + std::string(60, 'd') + "/" + std::string(70, 'e') + ".txt";
  write_bytes(d.path + "/" + deep, "deep document");
  for (const char* fmt : {"gnu", "posix"}) {
    const std::string tar = d.path + "/a_" + std::string(fmt) + ".tar";
    BOOST_REQUIRE(run("cd " + d.path + " && LC_ALL=C tar --format=" + fmt + " --sort=name -cf " +
                      tar + " t") == 0);
    BOOST_REQUIRE(run("xz -k -1 " + tar) == 0);
    for (const std::string& path : {tar, tar + ".xz"}) {
      sl::PrepareOptions o;
      o.inputs = {path};
      o.out_dir = d.path + "/out_" + fs::path(path).filename().string();
      o.val_fraction = 0;
      const sl::PrepareResult r = sl::prepare(o);
      BOOST_TEST(r.train.documents == 13, path);
      std::string want;  // tar --sort=name: byte order of member paths, as the directory walk
      std::vector<std::pair<std::string, std::string>> all;
      for (const auto& [rel, body] : docs) all.emplace_back("t/" + rel, body);
      all.emplace_back(deep, "deep document");
      std::sort(all.begin(), all.end());
      for (const auto& [rel, body] : all) want += body;
      BOOST_TEST(read_split(o.out_dir, "train") == want, path);
      // The long name reached the split rule intact.
      o.out_dir += "_inc";
      o.include = {"*/" + std::string(70, 'e') + ".txt"};
      BOOST_TEST(sl::prepare(o).train.tokens == 13, path);
    }
  }
}

BOOST_AUTO_TEST_CASE(prepare_bad_input_fails_with_one_line_and_leaves_out_dir_untouched) {
  TmpDir d;
  make_tree(d.path + "/t", 30);
  BOOST_REQUIRE(run("cd " + d.path + " && tar -cf ok.tar t && xz -k ok.tar") == 0);
  // A good prepare first; every failure below must leave it exactly as it is.
  sl::PrepareOptions good;
  good.inputs = {d.path + "/ok.tar"};
  good.out_dir = d.path + "/out";
  good.val_fraction = 0.2;
  good.shard_tokens = 300;
  sl::prepare(good);
  const std::string manifest = slurp(d.path + "/out/manifest.json");
  const std::string shard0 = slurp(d.path + "/out/train_000000.bin");
  auto attempt = [&](const std::string& input, const std::vector<std::string>& parts) {
    sl::PrepareOptions o = good;
    o.inputs = {d.path + "/ok.tar", input};  // the good archive first: shards get written
    expect_one_line_error([&] { sl::prepare(o); }, parts);
    BOOST_TEST(slurp(d.path + "/out/manifest.json") == manifest);
    BOOST_TEST(slurp(d.path + "/out/train_000000.bin") == shard0);
    BOOST_TEST(count_tmp(d.path + "/out") == 0);
  };
  // Corrupt header checksum.
  std::string bad = slurp(d.path + "/ok.tar");
  bad[512 + 10] ^= 0x55;  // the second header block (the first member is the directory "t/")
  write_bytes(d.path + "/bad.tar", bad);
  attempt(d.path + "/bad.tar", {"archive '" + d.path + "/bad.tar'", "checksum", "offset"});
  // Truncated in the middle of a member.
  write_bytes(d.path + "/cut.tar", slurp(d.path + "/ok.tar").substr(0, 3000));
  attempt(d.path + "/cut.tar", {"archive '" + d.path + "/cut.tar'", "truncated"});
  // A corrupt .xz stream: the decompressor's failure is reported.
  std::string xz = slurp(d.path + "/ok.tar.xz");
  xz.resize(xz.size() / 2);
  write_bytes(d.path + "/cut.tar.xz", xz);
  attempt(d.path + "/cut.tar.xz", {"archive '" + d.path + "/cut.tar.xz'"});
  attempt(d.path + "/missing.txt", {"input '" + d.path + "/missing.txt': no such file"});

  // Empty inputs.
  fs::create_directories(d.path + "/empty");
  sl::PrepareOptions e;
  e.inputs = {d.path + "/empty"};
  e.out_dir = d.path + "/out_empty";
  expect_one_line_error([&] { sl::prepare(e); }, {"no documents selected"});
  write_bytes(d.path + "/empty/zero.txt", "");
  expect_one_line_error([&] { sl::prepare(e); }, {"training split holds no tokens"});
  write_bytes(d.path + "/empty/one.txt", "x");
  e.val_fraction = 0.0;
  sl::prepare(e);
  BOOST_TEST(!fs::exists(e.out_dir + "/val_000000.bin"));
}
