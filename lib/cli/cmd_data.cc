// `scalinglab data prepare|inspect`: build byte-level token shards from text, directories and tar
// archives (data/prepare.h), and describe or verify token files.
//
//   scalinglab data prepare INPUT... --out DIR [--val-fraction F] [--shard-tokens N]
//       [--format llmc|raw] [--include GLOB]... [--exclude GLOB]... [--quiet]
//   scalinglab data inspect FILE|DIR [--vocab V] [--head N]
//
// inspect FILE (a .bin/.raw shard or a text file): format, token count, id range, sha256 of the
// file, and the first tokens decoded as bytes. inspect DIR: with a manifest.json (from prepare),
// the manifest's summary and a check of every shard listed (present, size, sha256, header);
// without one, each .bin/.raw shard of DIR in name order. A shard that fails a check ends the
// command with one line naming it.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/prepare.h"
#include "data/sha256.h"
#include "data/tokens.h"

namespace sl::cli {

namespace {

namespace fs = std::filesystem;

struct PrepareArgs {
  PrepareOptions opt;
  std::string format = "llmc";
  bool quiet = false;
};

struct InspectArgs {
  std::string path;
  int64_t vocab = 0;  // 0: only the format's own range
  int head = 64;
};

void run_prepare(PrepareArgs& a) {
  a.opt.format = parse_shard_format(a.format);
  a.opt.verbose = !a.quiet;
  const PrepareResult r = prepare(a.opt);
  std::printf("train: %lld documents, %lld tokens, %zu shards, unigram entropy %.4f nats/token\n",
              static_cast<long long>(r.train.documents), static_cast<long long>(r.train.tokens),
              r.train.shards.size(), r.train.unigram_entropy);
  std::printf("val:   %lld documents, %lld tokens, %zu shards, unigram entropy %.4f nats/token\n",
              static_cast<long long>(r.val.documents), static_cast<long long>(r.val.tokens),
              r.val.shards.size(), r.val.unigram_entropy);
  if (r.skipped)
    std::printf("skipped by --include/--exclude: %lld documents\n",
                static_cast<long long>(r.skipped));
  std::printf("wrote %s (%.1f s)\n", r.manifest_path.c_str(), r.seconds);
}

// Printable rendering of byte tokens: ASCII as is, \n \t, others as \xHH.
std::string escape_bytes(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (id == '\n') {
      s += "\\n";
    } else if (id == '\t') {
      s += "\\t";
    } else if (id == '\\') {
      s += "\\\\";
    } else if (id >= 32 && id < 127) {
      s += static_cast<char>(id);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", id & 0xff);
      s += buf;
    }
  }
  return s;
}

void inspect_file(const std::string& path, const InspectArgs& a) {
  // 2^32 admits every uint32 id: the scan below reports the range; --vocab checks it.
  const TokenSource src = TokenSource::open(path, a.vocab > 0 ? a.vocab : (int64_t{1} << 32));
  int64_t lo = INT64_MAX, hi = -1;
  constexpr int64_t kChunk = 1 << 20;
  std::vector<int32_t> buf(static_cast<size_t>(std::min(kChunk, src.size())));
  for (int64_t pos = 0; pos < src.size(); pos += kChunk) {
    const int64_t n = std::min(kChunk, src.size() - pos);
    src.read(pos, n, buf.data());  // throws naming the shard and offset for ids >= --vocab
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = static_cast<uint32_t>(buf[static_cast<size_t>(i)]);
      lo = std::min(lo, id);
      hi = std::max(hi, id);
    }
  }
  std::printf("file:     %s\n", path.c_str());
  std::printf("format:   %s\n", src.describe().c_str());
  std::printf("tokens:   %lld\n", static_cast<long long>(src.size()));
  std::printf("id range: [%lld, %lld]\n", static_cast<long long>(lo), static_cast<long long>(hi));
  std::printf("sha256:   %s\n", sha256_file(path).c_str());
  const int64_t n = std::min<int64_t>(a.head, src.size());
  std::vector<int32_t> first(static_cast<size_t>(n));
  src.read(0, n, first.data());
  const bool bytes =
      std::all_of(first.begin(), first.end(), [](int32_t id) { return id >= 0 && id < 256; });
  if (bytes) {
    std::printf("first %lld tokens as bytes: \"%s\"\n", static_cast<long long>(n),
                escape_bytes(first).c_str());
  } else {
    std::printf("first %lld token ids:", static_cast<long long>(n));
    for (int32_t id : first) std::printf(" %u", static_cast<uint32_t>(id));
    std::printf("\n");
  }
}

void inspect_prepared_dir(const std::string& dir, const InspectArgs& a) {
  const std::string mpath = dir + "/manifest.json";
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    fail("manifest '" + mpath + "': not valid JSON: " + std::string(e.what()));
  }
  if (!m.is_object() || m.value("format", "") != "scalinglab.prepare/1" || !m.contains("shards"))
    fail("manifest '" + mpath + "': key 'format' is not \"scalinglab.prepare/1\"");
  std::printf("directory: %s (%s, %s, vocab %lld)\n", dir.c_str(),
              m.value("tokenizer", "?").c_str(), m.value("shard_format", "?").c_str(),
              static_cast<long long>(m.value("vocab_size", 0)));
  for (const char* split : {"train", "val"})
    std::printf("%-5s: %lld documents, %lld tokens, unigram entropy %.4f nats/token\n", split,
                static_cast<long long>(m["documents"].value(split, 0)),
                static_cast<long long>(m["tokens"].value(split, 0)),
                m["unigram_entropy_nats"].value(split, 0.0));
  const int64_t vocab = a.vocab > 0 ? a.vocab : m.value("vocab_size", int64_t{1} << 32);
  std::printf("%-20s %-5s %12s %14s  %s\n", "shard", "split", "tokens", "bytes", "sha256");
  for (const auto& s : m["shards"]) {
    const std::string name = s.value("name", "");
    const std::string path = dir + "/" + name;
    const std::string where = "shard '" + path + "'";
    if (!path_exists(path)) fail(where + ": listed in the manifest but missing");
    const int64_t bytes = static_cast<int64_t>(fs::file_size(path));
    if (bytes != s.value("bytes", int64_t{-1}))
      fail(where + ": " + std::to_string(bytes) + " bytes, the manifest says " +
           std::to_string(s.value("bytes", int64_t{-1})));
    const std::string sha = sha256_file(path);
    if (sha != s.value("sha256", ""))
      fail(where + ": sha256 " + sha + " differs from the manifest's " + s.value("sha256", ""));
    const TokenSource src = TokenSource::open(path, vocab);  // header and count checks
    if (src.size() != s.value("tokens", int64_t{-1}))
      fail(where + ": " + std::to_string(src.size()) + " tokens, the manifest says " +
           std::to_string(s.value("tokens", int64_t{-1})));
    src.validate();  // ids < vocab
    std::printf("%-20s %-5s %12lld %14lld  %s ok\n", name.c_str(), s.value("split", "?").c_str(),
                static_cast<long long>(src.size()), static_cast<long long>(bytes), sha.c_str());
  }
  std::printf("all %zu shards match the manifest\n", m["shards"].size());
}

void run_inspect(const InspectArgs& a) {
  if (!path_exists(a.path)) fail("data inspect '" + a.path + "': no such file or directory");
  if (!fs::is_directory(a.path)) return inspect_file(a.path, a);
  if (path_exists(a.path + "/manifest.json")) return inspect_prepared_dir(a.path, a);
  std::vector<std::string> shards;
  for (const auto& e : fs::directory_iterator(a.path)) {
    const std::string p = e.path().string();
    if (e.is_regular_file() && (p.ends_with(".bin") || p.ends_with(".raw"))) shards.push_back(p);
  }
  std::sort(shards.begin(), shards.end());
  if (shards.empty()) return inspect_file(a.path, a);  // a directory of text files
  for (const std::string& s : shards) {
    inspect_file(s, a);
    std::printf("\n");
  }
}

}  // namespace

void register_data(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare and inspect token data");
  data->require_subcommand(1);

  auto pa = std::make_shared<PrepareArgs>();
  CLI::App* prep = data->add_subcommand(
      "prepare", "Text files, directories and .tar/.tar.xz archives -> byte-level token shards");
  prep->add_option("inputs", pa->opt.inputs, "files, directories, tar archives")->required();
  prep->add_option("--out", pa->opt.out_dir, "output directory")->required();
  prep->add_option("--val-fraction", pa->opt.val_fraction,
                   "expected fraction of documents in validation (by document path hash)")
      ->capture_default_str();
  prep->add_option("--shard-tokens", pa->opt.shard_tokens, "tokens per shard")
      ->capture_default_str();
  prep->add_option("--format", pa->format, "llmc (.bin, llm.c header) or raw (.raw + .json)")
      ->capture_default_str();
  prep->add_option("--include", pa->opt.include, "keep documents whose path matches (fnmatch)");
  prep->add_option("--exclude", pa->opt.exclude, "drop documents whose path matches (fnmatch)");
  prep->add_flag("--quiet", pa->quiet, "no progress lines");
  prep->callback([pa]() { run_prepare(*pa); });

  auto ia = std::make_shared<InspectArgs>();
  CLI::App* insp =
      data->add_subcommand("inspect", "Describe a token file or verify a prepared DIR");
  insp->add_option("path", ia->path, "a .bin/.raw shard, a text file, or a directory")->required();
  insp->add_option("--vocab", ia->vocab, "check every id against this vocabulary size");
  insp->add_option("--head", ia->head, "tokens to decode from the start")->capture_default_str();
  insp->callback([ia]() { run_inspect(*ia); });
}

}  // namespace sl::cli
