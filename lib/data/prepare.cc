#include "data/prepare.h"

#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/process.h"
#include "core/rng.h"
#include "data/sha256.h"

namespace sl {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The decompressor for an archive name, "" for a plain .tar, nullptr when not an archive.
const char* archive_filter(const std::string& path) {
  if (ends_with(path, ".tar")) return "";
  if (ends_with(path, ".tar.xz") || ends_with(path, ".txz")) return "xz";
  if (ends_with(path, ".tar.gz") || ends_with(path, ".tgz")) return "gzip";
  if (ends_with(path, ".tar.zst")) return "zstd";
  return nullptr;
}

// A sequential byte stream: a file, or a decompressor's stdout. Tracks the offset (in the
// uncompressed stream) for error messages.
class Stream {
 public:
  Stream(const std::string& path, const char* filter) : path_(path) {
    if (*filter) {
      piped_ = true;
      // The decompressor's stderr goes to a temporary file, so its complaint ends up inside our
      // one-line error instead of on the terminal beside it.
      char tmpl[] = "/tmp/sl_prepare_stderr_XXXXXX";
      const int fd = ::mkstemp(tmpl);
      if (fd < 0) fail("archive '" + path + "': cannot create a temporary file");
      ::close(fd);
      err_path_ = tmpl;
      SpawnOptions so;
      so.out = Redirect::pipe();
      so.err = Redirect::truncate(err_path_);
      const Process p = spawn({filter, "-dc", "--", path}, so);
      child_ = p.pid;
      f_ = ::fdopen(p.out, "r");
      if (!f_) {
        const int e = errno;
        ::close(p.out);
        wait_child(child_);
        child_ = -1;
        errno = e;
      }
    } else {
      f_ = std::fopen(path.c_str(), "rb");
    }
    if (!f_) fail("archive '" + path + "': cannot open: " + std::strerror(errno));
    filter_ = filter;
  }
  ~Stream() {
    if (f_) std::fclose(f_);
    if (child_ > 0) wait_child(child_);  // closed early: it ends with SIGPIPE
    if (!err_path_.empty()) ::unlink(err_path_.c_str());
  }
  // Reads up to n bytes; returns how many (less only at the end of the stream).
  size_t read(void* p, size_t n) {
    const size_t got = std::fread(p, 1, n, f_);
    offset_ += static_cast<int64_t>(got);
    if (got < n && std::ferror(f_)) fail("archive '" + path_ + "': read error");
    return got;
  }
  void read_exact(void* p, size_t n, const std::string& what) {
    if (read(p, n) != n)
      fail_truncated("archive '" + path_ + "': truncated in " + what + " at offset " +
                     std::to_string(offset_));
  }
  // A short read from a decompressor usually means the decompressor failed (a cut or corrupt
  // .xz): report its error if it has one, else `msg`.
  [[noreturn]] void fail_truncated(const std::string& msg) {
    if (piped_) close();
    fail(msg);
  }
  void skip(int64_t n, const std::string& what) {
    char buf[1 << 14];
    while (n > 0) {
      const size_t m = static_cast<size_t>(std::min<int64_t>(n, sizeof buf));
      read_exact(buf, m, what);
      n -= static_cast<int64_t>(m);
    }
  }
  // Drains the rest (so the decompressor is not killed by SIGPIPE) and checks its exit status.
  void close() {
    char buf[1 << 14];
    while (read(buf, sizeof buf) > 0) {
    }
    FILE* f = f_;
    f_ = nullptr;
    std::fclose(f);
    if (piped_) {
      const ExitStatus st = wait_child(child_);
      child_ = -1;
      if (st.pid < 0 || st.signaled() || st.code != 0) {
        std::string msg;
        try {
          msg = read_file(err_path_);
        } catch (const Error&) {
        }
        msg = msg.substr(0, msg.find('\n'));
        fail("archive '" + path_ + "': '" + filter_ + " -dc' failed (exit status " +
             std::to_string(st.pid < 0 || st.signaled() ? -1 : st.code) +
             (msg.empty() ? "" : ": ") + msg + ")");
      }
    }
  }
  int64_t offset() const { return offset_; }

 private:
  std::string path_, err_path_;
  const char* filter_ = "";
  FILE* f_ = nullptr;
  bool piped_ = false;
  pid_t child_ = -1;  // the decompressor
  int64_t offset_ = 0;
};

// A NUL-terminated field of at most n bytes.
std::string field(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len]) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

// Tar numeric field: octal digits (space/NUL padded), or GNU base-256 when the top bit is set.
int64_t tar_number(const uint8_t* p, size_t n, const std::string& where) {
  if (p[0] & 0x80) {
    int64_t v = p[0] & 0x3f;
    for (size_t i = 1; i < n; ++i) v = (v << 8) | p[i];
    return v;
  }
  int64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) v = v * 8 + (p[i] - '0');
  if (i < n && p[i] != ' ' && p[i] != 0) fail(where + ": bad numeric field in tar header");
  return v;
}

// Calls fn(member path, contents) for each regular file of a tar stream, in archive order.
void read_tar(const std::string& path, const char* filter,
              const std::function<void(const std::string&, const std::string&)>& fn) {
  Stream in(path, filter);
  std::string long_name, pax_path;
  uint8_t h[512];
  bool any_header = false;
  while (true) {
    const int64_t at = in.offset();
    const size_t got = in.read(h, 512);
    if (got == 0) break;  // no end-of-archive blocks: tolerated, like GNU tar
    const std::string where = "archive '" + path + "': header at offset " + std::to_string(at);
    if (got < 512) in.fail_truncated(where + " truncated");
    if (std::all_of(h, h + 512, [](uint8_t b) { return b == 0; })) break;  // end of archive
    // Checksum: sum of the header bytes with the checksum field read as 8 spaces.
    int64_t sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    if (tar_number(h + 148, 8, where) != sum)
      fail(where + ": bad header checksum (not a tar archive, or corrupt)");
    any_header = true;
    const int64_t size = tar_number(h + 124, 12, where);
    const int64_t padded = (size + 511) / 512 * 512;
    const char type = static_cast<char>(h[156]);
    std::string name = field(h, 100);
    if (std::memcmp(h + 257, "ustar\0", 6) == 0) {  // POSIX ustar: prefix "/" name
      const std::string prefix = field(h + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    auto read_data = [&](const std::string& what) {
      std::string data(static_cast<size_t>(size), '\0');
      in.read_exact(data.data(), data.size(), what);
      in.skip(padded - size, what);
      return data;
    };
    if (type == 'L') {  // GNU long name for the next header
      long_name = field(reinterpret_cast<const uint8_t*>(read_data("a long name").data()),
                        static_cast<size_t>(size));
      continue;
    }
    if (type == 'x') {  // pax extended header: records "LEN key=value\n"
      const std::string rec = read_data("a pax header");
      size_t pos = 0;
      while (pos < rec.size()) {
        const size_t sp = rec.find(' ', pos);
        if (sp == std::string::npos) break;
        const int64_t len = std::atoll(rec.c_str() + pos);
        if (len <= 0 || pos + static_cast<size_t>(len) > rec.size()) break;
        const std::string kv = rec.substr(sp + 1, pos + len - sp - 2);  // without the '\n'
        if (kv.rfind("path=", 0) == 0) pax_path = kv.substr(5);
        pos += static_cast<size_t>(len);
      }
      continue;
    }
    if (!pax_path.empty())
      name = pax_path;
    else if (!long_name.empty())
      name = long_name;
    pax_path.clear();
    long_name.clear();
    if (name.rfind("./", 0) == 0) name = name.substr(2);
    // Hidden members (a path component starting with '.') are skipped, as in a directory walk.
    const bool hidden = (!name.empty() && name[0] == '.') || name.find("/.") != std::string::npos;
    if ((type == '0' || type == '\0' || type == '7') && !hidden && !name.empty()) {
      fn(name, read_data("member '" + name + "'"));
    } else {
      in.skip(padded, "member '" + name + "'");  // directories, links, devices, global pax
    }
  }
  if (!any_header) fail("archive '" + path + "': empty (no tar header)");
  in.close();
}

double entropy_nats(const std::array<int64_t, 256>& counts) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  double h = 0;
  for (int64_t c : counts)
    if (c > 0) h -= static_cast<double>(c) / n * std::log(static_cast<double>(c) / n);
  return h;
}

// One split's shard sequence: bytes go to <dir>/<prefix>_<k><ext>, shard_tokens per shard.
struct SplitSink {
  std::string dir, prefix;
  ShardFormat format;
  int64_t shard_tokens;
  PrepareSplit* out;
  std::array<int64_t, 256> counts{};
  std::unique_ptr<ShardWriter> cur;
  std::vector<std::unique_ptr<ShardWriter>> sealed;  // committed by prepare() at the very end

  std::string next_name() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "_%06zu", out->shards.size());
    return prefix + buf + shard_extension(format);
  }
  void add(const std::string& doc) {
    ++out->documents;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(doc.data());
    int64_t n = static_cast<int64_t>(doc.size());
    for (int64_t i = 0; i < n; ++i) ++counts[p[i]];
    out->tokens += n;
    while (n > 0) {
      if (!cur) cur = std::make_unique<ShardWriter>(dir + "/" + next_name(), format, 256);
      const int64_t take = std::min(n, shard_tokens - cur->tokens());
      cur->append_bytes(p, take);
      p += take;
      n -= take;
      if (cur->tokens() == shard_tokens) flush();
    }
  }
  void flush() {
    if (!cur) return;
    out->shards.push_back(cur->seal());
    sealed.push_back(std::move(cur));
  }
};

bool selected(const std::string& doc, const PrepareOptions& opt) {
  bool in = opt.include.empty();
  for (const std::string& g : opt.include) in = in || fnmatch(g.c_str(), doc.c_str(), 0) == 0;
  if (!in) return false;
  for (const std::string& g : opt.exclude)
    if (fnmatch(g.c_str(), doc.c_str(), 0) == 0) return false;
  return true;
}

}  // namespace

bool is_val_document(const std::string& doc_path, double val_fraction) {
  const double u = static_cast<double>(mix64(fnv1a64(doc_path)) >> 11) * 0x1.0p-53;
  return u < val_fraction;
}

PrepareResult prepare(const PrepareOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.inputs.empty()) fail("data prepare: no INPUT given");
  if (opt.out_dir.empty()) fail("data prepare: --out DIR is required");
  if (!(opt.val_fraction >= 0 && opt.val_fraction < 1))
    fail("data prepare: --val-fraction " + std::to_string(opt.val_fraction) + " must be in [0, 1)");
  if (opt.shard_tokens <= 0 || opt.shard_tokens > INT32_MAX)
    fail("data prepare: --shard-tokens " + std::to_string(opt.shard_tokens) +
         " must be in [1, 2^31-1]");
  // Check every input before creating anything.
  for (const std::string& in : opt.inputs) {
    struct stat st;
    if (::stat(in.c_str(), &st) != 0) fail("input '" + in + "': no such file or directory");
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
      fail("input '" + in + "': not a regular file or directory");
  }
  make_dirs(opt.out_dir);
  const fs::path out_canon = fs::weakly_canonical(opt.out_dir);

  PrepareResult res;
  SplitSink train{opt.out_dir, "train", opt.format, opt.shard_tokens, &res.train, {}, nullptr, {}};
  SplitSink val{opt.out_dir, "val", opt.format, opt.shard_tokens, &res.val, {}, nullptr, {}};
  nlohmann::ordered_json inputs = nlohmann::ordered_json::array();

  auto document = [&](const std::string& doc, const std::string& bytes) {
    if (!selected(doc, opt)) {
      ++res.skipped;
      return;
    }
    (is_val_document(doc, opt.val_fraction) ? val : train).add(bytes);
  };

  for (const std::string& in : opt.inputs) {
    const int64_t docs_before = res.train.documents + res.val.documents;
    nlohmann::ordered_json rec;
    rec["path"] = in;
    if (fs::is_directory(in)) {
      rec["kind"] = "directory";
      std::vector<std::pair<std::string, std::string>> files;  // (relative path, full path)
      std::error_code ec;
      auto it = fs::recursive_directory_iterator(in, ec);
      if (ec) fail("input '" + in + "': cannot list: " + ec.message());
      for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) fail("input '" + in + "': cannot list: " + ec.message());
        const std::string name = it->path().filename().string();
        const bool is_dir = it->is_directory(ec) && !it->is_symlink(ec);
        if (!name.empty() && name[0] == '.') {
          if (is_dir) it.disable_recursion_pending();
          continue;
        }
        if (is_dir && fs::weakly_canonical(it->path()) == out_canon) {
          it.disable_recursion_pending();  // never read our own output
          continue;
        }
        if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
        files.emplace_back(fs::relative(it->path(), in).generic_string(), it->path().string());
      }
      std::sort(files.begin(), files.end());
      int64_t bytes = 0;
      for (const auto& [rel, full] : files) {
        const std::string b = read_file(full);
        bytes += static_cast<int64_t>(b.size());
        document(rel, b);
      }
      rec["bytes"] = bytes;
    } else if (const char* filter = archive_filter(in)) {
      rec["kind"] = *filter ? std::string("tar+") + filter : std::string("tar");
      rec["bytes"] = static_cast<int64_t>(fs::file_size(in));
      rec["sha256"] = sha256_file(in);
      read_tar(in, filter, document);
    } else {
      rec["kind"] = "file";
      const std::string b = read_file(in);
      rec["bytes"] = static_cast<int64_t>(b.size());
      rec["sha256"] = sha256_hex(b);
      document(fs::path(in).filename().string(), b);
    }
    rec["documents"] = res.train.documents + res.val.documents - docs_before;
    if (opt.verbose)
      std::fprintf(stdout, "data prepare: %s: %lld documents\n", in.c_str(),
                   static_cast<long long>(rec["documents"].get<int64_t>()));
    inputs.push_back(rec);
  }
  train.flush();
  val.flush();
  const std::string what = "data prepare -> '" + opt.out_dir + "'";
  if (res.train.documents + res.val.documents == 0)
    fail(what + ": no documents selected from the inputs (" + std::to_string(res.skipped) +
         " filtered out)");
  if (res.train.tokens == 0) fail(what + ": the training split holds no tokens (empty input)");
  if (opt.val_fraction > 0 && res.val.tokens == 0)
    fail(what + ": no validation tokens: none of the " + std::to_string(res.train.documents) +
         " documents fell into the validation split at --val-fraction " +
         std::to_string(opt.val_fraction) + " (add documents or raise it)");
  res.train.unigram_entropy = entropy_nats(train.counts);
  res.val.unigram_entropy = entropy_nats(val.counts);

  nlohmann::ordered_json m;
  m["format"] = "scalinglab.prepare/1";
  m["tokenizer"] = "bytes";
  m["vocab_size"] = 256;
  m["shard_format"] = opt.format == ShardFormat::kLlmc ? "llmc v1 uint16" : "raw uint16";
  m["shard_tokens"] = opt.shard_tokens;
  m["val_fraction"] = opt.val_fraction;
  m["split_rule"] =
      "document = file; val iff (mix64(fnv1a64(document path)) >> 11) * 2^-53 < val_fraction";
  m["include"] = opt.include;
  m["exclude"] = opt.exclude;
  m["inputs"] = inputs;
  m["documents"] = {
      {"train", res.train.documents}, {"val", res.val.documents}, {"skipped", res.skipped}};
  m["tokens"] = {{"train", res.train.tokens}, {"val", res.val.tokens}};
  m["unigram_entropy_nats"] = {{"train", res.train.unigram_entropy},
                               {"val", res.val.unigram_entropy}};
  nlohmann::ordered_json shards = nlohmann::ordered_json::array();
  std::set<std::string> written;
  for (const PrepareSplit* s : {&res.train, &res.val})
    for (const ShardInfo& sh : s->shards) {
      const std::string name = fs::path(sh.path).filename().string();
      written.insert(name);
      if (opt.format == ShardFormat::kRaw) written.insert(name + ".json");
      shards.push_back({{"name", name},
                        {"split", s == &res.train ? "train" : "val"},
                        {"tokens", sh.tokens},
                        {"bytes", sh.bytes},
                        {"sha256", sh.sha256}});
    }
  m["shards"] = shards;
  // Every input was read and every shard sealed: only now do the shards take their final names.
  for (SplitSink* s : {&train, &val})
    for (auto& w : s->sealed) w->commit();
  res.manifest_path = opt.out_dir + "/manifest.json";
  atomic_write_file(res.manifest_path, m.dump(2) + "\n");
  // Shards of an earlier prepare into the same DIR would join a train_*.bin glob: remove them.
  static const std::regex kShardName(R"((train|val)_[0-9]{6}\.(bin|raw|raw\.json))");
  for (const auto& e : fs::directory_iterator(opt.out_dir)) {
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, kShardName) && !written.count(name)) fs::remove(e.path());
  }
  fsync_dir(opt.out_dir);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace sl
