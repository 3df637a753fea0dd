#include "data/tokens.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"

namespace sl {

namespace {

constexpr int64_t kHeaderBytes = 256 * 4;  // llm.c: 256 x int32
constexpr int32_t kMagicV1 = 20240520;     // version 1, uint16 tokens (GPT-2 vocab)
constexpr int32_t kMagicV7 = 20240801;     // version 7, uint32 tokens (Llama 3 vocab)

// One memory-mapped file and where its tokens start. Text files have width 1 and version 0; raw
// shards have version 0 and raw = true.
struct File {
  std::string path;
  void* map = nullptr;  // the whole file, PROT_READ (nullptr for an empty file)
  size_t map_len = 0;
  const uint8_t* tokens = nullptr;  // first token (after the header for shards)
  int width = 1;                    // bytes per token: 1 (text), 2 (v1), 4 (v7)
  int version = 0;                  // llm.c version, 0 for text and raw
  bool raw = false;                 // a headerless ".raw" shard (sidecar gives width and count)
  int64_t count = 0;                // tokens in this file
};

bool is_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string human(int64_t n) {
  char buf[32];
  if (n < 1000) return std::to_string(n);
  if (n < 1000000)
    std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else if (n < 1000000000)
    std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  return buf;
}

// Maps `path` read-only. `kind` ("data file" or "shard") prefixes errors.
File map_file(const std::string& path, const char* kind) {
  File f;
  f.path = path;
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait (forever, deaf to signals) for
  // a writer; the fstat below then refuses anything that is not a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) fail(std::string(kind) + " '" + path + "': no such file");
    fail(std::string(kind) + " '" + path + "': cannot open: " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(std::string(kind) + " '" + path + "': cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(std::string(kind) + " '" + path + "': not a regular file (a FIFO, device or socket)");
  }
  f.map_len = static_cast<size_t>(st.st_size);
  if (f.map_len > 0) {
    f.map = ::mmap(nullptr, f.map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (f.map == MAP_FAILED) {
      const std::string e = std::strerror(errno);
      ::close(fd);
      f.map = nullptr;
      fail(std::string(kind) + " '" + path + "': cannot mmap: " + e);
    }
  }
  ::close(fd);  // the mapping keeps the file referenced
  f.tokens = static_cast<const uint8_t*>(f.map);
  return f;
}

// Validates the llm.c header of a mapped shard and sets width/version/count/tokens.
void parse_shard(File& f) {
  const std::string where = "shard '" + f.path + "'";
  const int64_t size = static_cast<int64_t>(f.map_len);
  if (size < kHeaderBytes)
    fail(where + ": file holds " + std::to_string(size) + " bytes, less than the " +
         std::to_string(kHeaderBytes) + "-byte header");
  int32_t header[3];
  std::memcpy(header, f.map, sizeof header);
  if (header[0] == kMagicV1) {
    if (header[1] != 1)
      fail(where + ": magic 20240520 with version " + std::to_string(header[1]) + " (expected 1)");
    f.width = 2;
  } else if (header[0] == kMagicV7) {
    if (header[1] != 7)
      fail(where + ": magic 20240801 with version " + std::to_string(header[1]) + " (expected 7)");
    f.width = 4;
  } else {
    fail(where + ": bad magic " + std::to_string(header[0]) + " (expected 20240520 or 20240801)");
  }
  f.version = header[1];
  // llm.c writes the count as int32; read it unsigned so counts in [2^31, 2^32) still work.
  f.count = static_cast<int64_t>(static_cast<uint32_t>(header[2]));
  const int64_t body = size - kHeaderBytes;
  if (body != f.count * f.width) {
    std::string msg = where + ": header says " + std::to_string(f.count) + " tokens, file holds " +
                      std::to_string(body / f.width);
    if (body % f.width != 0) msg += " and " + std::to_string(body % f.width) + " stray bytes";
    fail(msg);
  }
  f.tokens = static_cast<const uint8_t*>(f.map) + kHeaderBytes;
}

// Validates a headerless ".raw" shard against its sidecar "<path>.json" (see tokens.h).
void parse_raw(File& f) {
  const std::string side = f.path + ".json";
  const std::string where = "shard '" + f.path + "'";
  if (!path_exists(side)) fail(where + ": raw shard without its sidecar '" + side + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(side));
  } catch (const nlohmann::json::exception& e) {
    fail("sidecar '" + side + "': not valid JSON: " + std::string(e.what()));
  }
  if (!j.is_object() || j.value("format", "") != "scalinglab.raw/1")
    fail("sidecar '" + side + "': key 'format' must be \"scalinglab.raw/1\"");
  const std::string dtype = j.value("dtype", "");
  if (dtype == "uint16")
    f.width = 2;
  else if (dtype == "uint32")
    f.width = 4;
  else
    fail("sidecar '" + side + "': key 'dtype' is '" + dtype + "' (expected uint16 or uint32)");
  if (!j.contains("tokens") || !j["tokens"].is_number_integer() || j["tokens"].get<int64_t>() < 0)
    fail("sidecar '" + side + "': key 'tokens' must be a non-negative integer");
  f.count = j["tokens"].get<int64_t>();
  f.raw = true;
  const int64_t size = static_cast<int64_t>(f.map_len);
  if (size != f.count * f.width) {
    std::string msg = where + ": sidecar says " + std::to_string(f.count) + " tokens, file holds " +
                      std::to_string(size / f.width);
    if (size % f.width != 0) msg += " and " + std::to_string(size % f.width) + " stray bytes";
    fail(msg);
  }
}

// Regular, non-hidden files of a directory, sorted by name.
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_regular_file(ec)) out.push_back(e.path().string());
  }
  if (ec) fail("data directory '" + dir + "': cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

struct TokenSource::Impl {
  std::string spec;
  int64_t vocab = 0;
  bool shards = false;
  std::vector<File> files;
  std::vector<int64_t> offsets;  // offsets[k] = first global token of files[k]; back() = size

  ~Impl() {
    for (File& f : files)
      if (f.map) ::munmap(f.map, f.map_len);
  }

  // Copies tokens [pos, pos+n) of file k to out, checking ids against the vocabulary.
  void copy(const File& f, int64_t pos, int64_t n, int32_t* out) const {
    const char* kind = shards ? "shard" : "data file";
    auto bad = [&](int64_t i, uint64_t id) {
      fail(std::string(kind) + " '" + f.path + "': token id " + std::to_string(id) + " at offset " +
           std::to_string(pos + i) + " >= vocab_size " + std::to_string(vocab));
    };
    const uint64_t v = static_cast<uint64_t>(vocab);
    if (f.width == 1) {
      const uint8_t* p = f.tokens + pos;
      for (int64_t i = 0; i < n; ++i) {
        out[i] = p[i];
        if (p[i] >= v) bad(i, p[i]);
      }
    } else if (f.width == 2) {
      // Unaligned-safe little-endian loads: the body starts at byte 1024 of a page-aligned map,
      // so uint16 access is aligned, but memcpy says so without relying on it.
      const uint8_t* p = f.tokens + 2 * pos;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t t;
        std::memcpy(&t, p + 2 * i, 2);
        out[i] = t;
        if (t >= v) bad(i, t);
      }
    } else {
      const uint8_t* p = f.tokens + 4 * pos;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t t;
        std::memcpy(&t, p + 4 * i, 4);
        if (t >= v) bad(i, t);
        out[i] = static_cast<int32_t>(t);
      }
    }
  }
};

TokenSource TokenSource::open(const std::string& spec, int64_t vocab_size) {
  if (spec.empty()) fail("data: empty path");
  if (vocab_size <= 0)
    fail("data '" + spec + "': vocab_size " + std::to_string(vocab_size) + " must be positive");
  auto impl = std::make_shared<Impl>();
  impl->spec = spec;
  impl->vocab = vocab_size;

  std::vector<std::string> paths;
  bool dir_text = false;
  if (is_glob(spec)) {
    glob_t g{};
    const int rc = ::glob(spec.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH) {
      globfree(&g);
      fail("data file '" + spec + "': no such file (the pattern matches nothing)");
    }
    if (rc != 0) {
      globfree(&g);
      fail("data file '" + spec + "': glob failed");
    }
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      struct stat st;
      if (::stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) paths.push_back(g.gl_pathv[i]);
    }
    globfree(&g);
    std::sort(paths.begin(), paths.end());
    if (paths.empty()) fail("data file '" + spec + "': the pattern matches no regular file");
  } else {
    struct stat st;
    if (::stat(spec.c_str(), &st) != 0) fail("data file '" + spec + "': no such file");
    if (S_ISDIR(st.st_mode)) {
      paths = list_dir(spec);
      dir_text = true;
      if (paths.empty()) fail("data directory '" + spec + "': holds no files");
    } else if (!S_ISREG(st.st_mode)) {
      fail("data file '" + spec + "': not a regular file (a FIFO, device or socket)");
    } else {
      paths.push_back(spec);
    }
  }

  size_t n_bin = 0;
  for (const std::string& p : paths) n_bin += ends_with(p, ".bin") || ends_with(p, ".raw");
  if (dir_text) n_bin = 0;  // a directory is always byte-level text (see tokens.h)
  if (n_bin != 0 && n_bin != paths.size())
    fail("data '" + spec + "': mixes .bin/.raw shards and text files");
  impl->shards = n_bin != 0;

  impl->offsets.push_back(0);
  for (const std::string& p : paths) {
    File f = map_file(p, impl->shards ? "shard" : "data file");
    impl->files.push_back(f);  // owned by impl from here on, so an error below still unmaps it
    if (impl->shards && ends_with(p, ".raw")) {
      parse_raw(impl->files.back());
    } else if (impl->shards) {
      parse_shard(impl->files.back());
    } else {
      impl->files.back().count = static_cast<int64_t>(f.map_len);
    }
    impl->offsets.push_back(impl->offsets.back() + impl->files.back().count);
  }
  if (impl->offsets.back() == 0) fail("data '" + spec + "': empty source (0 tokens)");
  TokenSource s;
  s.impl_ = std::move(impl);
  return s;
}

int64_t TokenSource::size() const { return impl_->offsets.back(); }
const std::string& TokenSource::spec() const { return impl_->spec; }
int64_t TokenSource::vocab_size() const { return impl_->vocab; }

void TokenSource::read(int64_t pos, int64_t n, int32_t* out) const {
  const Impl& m = *impl_;
  if (pos < 0 || n < 0 || pos > size() - n)
    fail("data '" + m.spec + "': read of tokens [" + std::to_string(pos) + ", " +
         std::to_string(pos + n) + ") outside the source's " + std::to_string(size()) + " tokens");
  // File k holds global tokens [offsets[k], offsets[k+1]); start in the last file whose first
  // token is <= pos (empty files share an offset with their successor and are skipped).
  size_t k = std::upper_bound(m.offsets.begin(), m.offsets.end(), pos) - m.offsets.begin() - 1;
  while (n > 0) {
    const int64_t local = pos - m.offsets[k];
    const int64_t take = std::min(n, m.files[k].count - local);
    if (take > 0) {
      m.copy(m.files[k], local, take, out);
      out += take;
      pos += take;
      n -= take;
    }
    ++k;
  }
}

namespace {

// The largest id of n tokens of width W: a plain max reduction the compiler vectorises (several
// GB/s), so the whole source is checked before a run starts. The bodies are aligned for their
// width (text: bytes; shards: page-aligned maps with 1024-byte headers or none).
template <class T>
uint64_t max_id(const uint8_t* p, int64_t n) {
  const T* t = reinterpret_cast<const T*>(p);
  T m = 0;
  for (int64_t i = 0; i < n; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

}  // namespace

void TokenSource::validate() const {
  const Impl& m = *impl_;
  const uint64_t v = static_cast<uint64_t>(m.vocab);
  for (const File& f : m.files) {
    // Widths whose every id fits need no scan (bytes with a byte-level vocabulary).
    if (f.count == 0 || (f.width < 8 && v >= (uint64_t{1} << (8 * f.width)))) continue;
    const uint64_t mx = f.width == 1   ? max_id<uint8_t>(f.tokens, f.count)
                        : f.width == 2 ? max_id<uint16_t>(f.tokens, f.count)
                                       : max_id<uint32_t>(f.tokens, f.count);
    if (mx < v) continue;
    // Find the first offender for the message: copy() names the file and offset.
    constexpr int64_t kChunk = 1 << 16;
    std::vector<int32_t> buf(kChunk);
    for (int64_t pos = 0; pos < f.count; pos += kChunk)
      m.copy(f, pos, std::min(kChunk, f.count - pos), buf.data());
  }
}

std::string TokenSource::describe() const {
  const Impl& m = *impl_;
  std::string kind;
  if (m.shards) {
    // Kinds in a fixed order, joined by " + " when a glob mixes them.
    bool v1 = false, v7 = false, r16 = false, r32 = false;
    for (const File& f : m.files) {
      if (f.raw)
        (f.width == 2 ? r16 : r32) = true;
      else
        (f.version == 1 ? v1 : v7) = true;
    }
    const std::pair<bool, const char*> kinds[] = {
        {v1, "llmc v1 uint16"}, {v7, "llmc v7 uint32"}, {r16, "raw uint16"}, {r32, "raw uint32"}};
    for (const auto& [on, name] : kinds)
      if (on) kind += std::string(kind.empty() ? "" : " + ") + name;
  } else {
    kind = "byte-level text";
  }
  const size_t nf = m.files.size();
  return kind + ", " + std::to_string(nf) + (m.shards ? " shard" : " file") + (nf == 1 ? "" : "s") +
         ", " + human(size()) + " tokens";
}

namespace {

void check_window(const TokenSource& src, int64_t seq_len) {
  if (seq_len <= 0)
    fail("data '" + src.spec() + "': seq_len " + std::to_string(seq_len) + " must be positive");
  if (src.size() < seq_len + 1)
    fail("data '" + src.spec() + "': " + std::to_string(src.size()) +
         " tokens, fewer than seq_len + 1 = " + std::to_string(seq_len + 1));
}

}  // namespace

uint64_t window_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t i) {
  SL_ASSERT(n >= 1 && i < n);
  // A balanced Feistel network on 2*half bits, the smallest even width covering [0, n): a
  // bijection of [0, 4^half) for any round function. Cycle walking (re-apply until the value
  // lands in [0, n)) restricts it to a bijection of [0, n); since 4^half < 4n, a walk takes fewer
  // than 4 rounds on average. Six rounds, each F(r) = mix64(r ^ round_key) masked to half bits.
  int bits = 0;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  const int half = std::max(1, (bits + 1) / 2);
  const uint64_t mask = (uint64_t{1} << half) - 1;
  constexpr int kRounds = 6;
  uint64_t keys[kRounds];
  const uint64_t base = mix64(stream_id(seed ^ 0x452821E638D01377ull, epoch));
  for (int r = 0; r < kRounds; ++r) keys[r] = mix64(base + (r + 1) * Rng::kGamma);
  uint64_t x = i;
  do {
    uint64_t l = x >> half, r = x & mask;
    for (int k = 0; k < kRounds; ++k) {
      const uint64_t t = l ^ (mix64(r ^ keys[k]) & mask);
      l = r;
      r = t;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}

int64_t train_windows(const TokenSource& src, int64_t seq_len) {
  check_window(src, seq_len);
  return (src.size() - 1) / seq_len;  // >= 1 by check_window
}

int64_t epoch_of(const TokenSource& src, int64_t step, int64_t batch, int64_t seq_len) {
  if (step < 0 || batch <= 0)
    fail("data '" + src.spec() + "': step " + std::to_string(step) + " / batch " +
         std::to_string(batch) + " out of range");
  return step * batch / train_windows(src, seq_len);
}

void sample_batch_rank(const TokenSource& src, uint64_t seed, int64_t step, int64_t batch_per_rank,
                       int64_t seq_len, int64_t rank, int64_t world, int32_t* inputs,
                       int32_t* targets) {
  const int64_t w = train_windows(src, seq_len);
  if (batch_per_rank <= 0)
    fail("data '" + src.spec() + "': batch " + std::to_string(batch_per_rank) +
         " must be positive");
  if (world <= 0 || rank < 0 || rank >= world)
    fail("data '" + src.spec() + "': rank " + std::to_string(rank) + " of world " +
         std::to_string(world) + " out of range");
  if (step < 0) fail("data '" + src.spec() + "': step " + std::to_string(step) + " is negative");
  const int64_t first = step * batch_per_rank * world + rank * batch_per_rank;
  // The epoch changes at most a few times per batch; recomputing its keys per row is cheap
  // (6 mix64) next to reading seq_len tokens.
  for (int64_t j = 0; j < batch_per_rank; ++j) {
    const int64_t c = first + j;
    const uint64_t epoch = static_cast<uint64_t>(c / w);
    const int64_t win = static_cast<int64_t>(
        window_permutation(seed, epoch, static_cast<uint64_t>(w), static_cast<uint64_t>(c % w)));
    const int64_t start = win * seq_len;
    // Two overlapping reads instead of a (seq_len+1) scratch buffer: no allocation per window.
    src.read(start, seq_len, inputs + j * seq_len);
    src.read(start + 1, seq_len, targets + j * seq_len);
  }
}

void sample_batch(const TokenSource& src, uint64_t seed, int64_t step, int64_t batch,
                  int64_t seq_len, int32_t* inputs, int32_t* targets) {
  sample_batch_rank(src, seed, step, batch, seq_len, 0, 1, inputs, targets);
}

int64_t eval_windows(const TokenSource& src, int64_t n_tokens, int64_t seq_len) {
  check_window(src, seq_len);
  const int64_t max_windows = (src.size() - 1) / seq_len;  // >= 1 by check_window
  if (n_tokens <= 0) return max_windows;
  return std::min((n_tokens + seq_len - 1) / seq_len, max_windows);
}

int64_t eval_batches(const TokenSource& src, int64_t n_tokens, int64_t batch, int64_t seq_len) {
  if (batch <= 0)
    fail("data '" + src.spec() + "': eval batch " + std::to_string(batch) + " must be positive");
  const int64_t w = eval_windows(src, n_tokens, seq_len);
  return (w + batch - 1) / batch;
}

int64_t eval_batch(const TokenSource& src, int64_t n_tokens, int64_t batch, int64_t seq_len,
                   int64_t b, int32_t* inputs, int32_t* targets) {
  const int64_t nb = eval_batches(src, n_tokens, batch, seq_len);
  if (b < 0 || b >= nb)
    fail("data '" + src.spec() + "': eval batch " + std::to_string(b) + " of " +
         std::to_string(nb));
  const int64_t w = eval_windows(src, n_tokens, seq_len);
  const int64_t first = b * batch;
  const int64_t rows = std::min(batch, w - first);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t start = (first + r) * seq_len;
    src.read(start, seq_len, inputs + r * seq_len);
    src.read(start + 1, seq_len, targets + r * seq_len);
  }
  return rows;
}

}  // namespace sl
