#include "train/config.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <toml++/toml.h>

#include "core/error.h"
#include "model/block_kind.h"

namespace sl {
namespace fs = std::filesystem;

namespace {

// Model keys are collected first and resolved at the end, because a preset (`size`) and explicit
// shape keys may come from the file and the overrides in any order.
struct RawModel {
  std::optional<std::string> arch, pattern, size;
  std::optional<int64_t> d_model, n_layers, n_heads, vocab_size, d_mlp, dk, dv;
};

const char* type_name(const toml::node& n) {
  if (n.is_integer()) return "integer";
  if (n.is_floating_point()) return "float";
  if (n.is_string()) return "string";
  if (n.is_boolean()) return "boolean";
  if (n.is_array()) return "array";
  if (n.is_table()) return "table";
  return "value";
}

struct Reader {
  std::string origin;  // file name or "--set"
  std::string base;    // directory that relative data paths are resolved against

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    fail(origin + ": key '" + key + "' " + what);
  }
  int64_t integer(const toml::node& n, const std::string& key) const {
    if (auto v = n.value_exact<int64_t>()) return *v;
    if (auto d = n.value_exact<double>()) {
      // 4e6 is a natural way to write a token count: accept integral floats.
      if (std::isfinite(*d) && std::floor(*d) == *d && std::abs(*d) < 9e18)
        return static_cast<int64_t>(*d);
    }
    bad(key, std::string("must be an integer (got ") + type_name(n) + ")");
  }
  double number(const toml::node& n, const std::string& key) const {
    if (auto v = n.value<double>()) {
      if (!n.is_integer() && !n.is_floating_point())
        bad(key, std::string("must be a number (got ") + type_name(n) + ")");
      return *v;
    }
    bad(key, std::string("must be a number (got ") + type_name(n) + ")");
  }
  std::string string(const toml::node& n, const std::string& key) const {
    if (auto v = n.value_exact<std::string>()) return *v;
    bad(key, std::string("must be a string (got ") + type_name(n) + ")");
  }
  std::string path(const toml::node& n, const std::string& key) const {
    std::string p = string(n, key);
    if (p.empty()) bad(key, "must not be empty");
    fs::path fp(p);
    if (fp.is_relative() && !base.empty()) fp = fs::path(base) / fp;
    return fp.lexically_normal().string();
  }
};

// Upper bounds that keep every derived count (steps x batch x seq_len, tokens + one step, token
// offsets) far from int64 overflow: tokens = 2^63 - 1 used to wrap to "completed, 0 steps".
// 10^15 tokens is 100x the largest training runs published; 2^20 covers any batch or context.
constexpr int64_t kMaxTokens = 1'000'000'000'000'000;
constexpr int64_t kMaxBatchOrSeq = int64_t{1} << 20;

std::string bound_text(int64_t max) { return max == kMaxTokens ? "10^15" : std::to_string(max); }

void apply_table(const toml::table& root, const Reader& rd, TrainConfig& c, RawModel& m) {
  using Setter = std::function<void(const toml::node&, const std::string&)>;
  auto pos_int = [&](int64_t& dst, int64_t max = std::numeric_limits<int64_t>::max()) {
    return [&rd, &dst, max](const toml::node& n, const std::string& k) {
      dst = rd.integer(n, k);
      if (dst <= 0) rd.bad(k, "must be positive");
      if (dst > max)
        rd.bad(k, "must be at most " + bound_text(max) + " (got " + std::to_string(dst) + ")");
    };
  };
  auto opt_int = [&](std::optional<int64_t>& dst) {
    return [&rd, &dst](const toml::node& n, const std::string& k) { dst = rd.integer(n, k); };
  };
  auto opt_str = [&](std::optional<std::string>& dst) {
    return [&rd, &dst](const toml::node& n, const std::string& k) { dst = rd.string(n, k); };
  };
  auto num = [&](double& dst) {
    return [&rd, &dst](const toml::node& n, const std::string& k) { dst = rd.number(n, k); };
  };
  const std::map<std::string, std::map<std::string, Setter>> schema = {
      {"model",
       {{"arch", opt_str(m.arch)},
        {"pattern", opt_str(m.pattern)},
        {"size", opt_str(m.size)},
        {"d_model", opt_int(m.d_model)},
        {"n_layers", opt_int(m.n_layers)},
        {"n_heads", opt_int(m.n_heads)},
        {"vocab_size", opt_int(m.vocab_size)},
        {"d_mlp", opt_int(m.d_mlp)},
        {"gdn_key_dim", opt_int(m.dk)},
        {"gdn_value_dim", opt_int(m.dv)}}},
      {"train",
       {{"seq_len", pos_int(c.seq_len, kMaxBatchOrSeq)},
        {"batch_size", pos_int(c.batch_size, kMaxBatchOrSeq)},
        {"tokens", pos_int(c.tokens, kMaxTokens)},
        {"budgets",
         [&](const toml::node& n, const std::string& k) {
           const toml::array* a = n.as_array();
           if (!a)
             rd.bad(k, std::string("must be an array of token counts (got ") + type_name(n) + ")");
           c.budgets.clear();
           for (size_t i = 0; i < a->size(); ++i) {
             const std::string ki = k + "[" + std::to_string(i) + "]";
             const int64_t b = rd.integer(*a->get(i), ki);
             if (b <= 0) rd.bad(ki, "must be positive");
             if (b > kMaxTokens)
               rd.bad(ki, "must be at most 10^15 (got " + std::to_string(b) + ")");
             if (!c.budgets.empty() && b <= c.budgets.back())
               rd.bad(ki, "must be larger than the budget before it (sorted, distinct)");
             c.budgets.push_back(b);
           }
         }},
        {"lr", num(c.lr)},
        {"schedule",
         [&](const toml::node& n, const std::string& k) {
           c.schedule = rd.string(n, k);
           if (c.schedule != "cosine" && c.schedule != "wsd" && c.schedule != "constant")
             rd.bad(k, "must be \"cosine\", \"wsd\" or \"constant\" (got \"" + c.schedule + "\")");
         }},
        {"warmup_tokens",
         [&](const toml::node& n, const std::string& k) {
           c.warmup_tokens = rd.integer(n, k);
           if (c.warmup_tokens < 0) rd.bad(k, "must be >= 0");
           if (c.warmup_tokens > kMaxTokens) rd.bad(k, "must be at most 10^15");
         }},
        {"min_lr_ratio", num(c.min_lr_ratio)},
        {"decay_fraction", num(c.decay_fraction)},
        {"weight_decay", num(c.weight_decay)},
        {"beta1", num(c.beta1)},
        {"beta2", num(c.beta2)},
        {"adam_eps", num(c.adam_eps)},
        {"grad_clip", num(c.grad_clip)},
        {"seed",
         [&](const toml::node& n, const std::string& k) {
           int64_t s = rd.integer(n, k);
           if (s < 0) rd.bad(k, "must be >= 0");
           c.seed = static_cast<uint64_t>(s);
         }},
        {"eval_every", pos_int(c.eval_every)},
        {"eval_tokens", pos_int(c.eval_tokens, kMaxTokens)},
        {"checkpoint_every", pos_int(c.checkpoint_every)},
        {"inject_nan_step", [&](const toml::node& n,
                                const std::string& k) { c.inject_nan_step = rd.integer(n, k); }}}},
      {"data",
       {{"train", [&](const toml::node& n, const std::string& k) { c.train_data = rd.path(n, k); }},
        {"val", [&](const toml::node& n, const std::string& k) { c.val_data = rd.path(n, k); }}}},
  };
  for (const auto& [sec_key, sec_node] : root) {
    const std::string sec(sec_key.str());
    auto it = schema.find(sec);
    if (it == schema.end()) fail(rd.origin + ": unknown section '" + sec + "'");
    const toml::table* tbl = sec_node.as_table();
    if (!tbl) fail(rd.origin + ": '" + sec + "' must be a table ([" + sec + "])");
    for (const auto& [key, node] : *tbl) {
      const std::string full = sec + "." + std::string(key.str());
      auto kt = it->second.find(std::string(key.str()));
      if (kt == it->second.end()) fail(rd.origin + ": unknown key '" + full + "'");
      kt->second(node, full);
    }
  }
  // Cross-key checks that can be made as soon as the values are known.
  if (c.lr <= 0 || !std::isfinite(c.lr)) rd.bad("train.lr", "must be a positive number");
  if (c.decay_fraction < 0 || c.decay_fraction > 1)
    rd.bad("train.decay_fraction", "must be in [0, 1]");
}

void resolve_model(const RawModel& m, const std::string& origin, TrainConfig& c) {
  ModelSpec s;
  c.size.clear();
  int64_t d = 128, L = 4, H = 2;
  if (m.size) {
    const LadderSize* ls = find_ladder(*m.size);
    if (!ls) fail(origin + ": key 'model.size' names no ladder preset: '" + *m.size + "'");
    d = ls->d_model, L = ls->n_layers, H = ls->n_heads;
    c.size = *m.size;
  }
  if (m.d_model) d = *m.d_model;
  if (m.n_heads) H = *m.n_heads;
  if (m.n_layers)
    L = *m.n_layers;
  else if (m.pattern && !m.size)
    L = static_cast<int64_t>(m.pattern->size());
  if (L <= 0) fail(origin + ": key 'model.n_layers' must be positive");
  s.arch = m.arch.value_or(m.pattern ? "custom" : "hybrid");
  if (m.pattern) {
    const std::string& p = *m.pattern;
    if (p.empty() || static_cast<int64_t>(p.size()) > L || L % static_cast<int64_t>(p.size()) != 0)
      fail(origin + ": key 'model.pattern' ('" + p +
           "') must tile n_layers = " + std::to_string(L));
    for (int64_t i = 0; i < L; ++i) s.pattern += p[i % p.size()];
  } else if (s.arch == "dense") {
    s.pattern = std::string(L, block_letter(BlockKind::attention));
  } else if (s.arch == "hybrid") {
    s.pattern = hybrid_pattern(L);
  } else {
    fail(origin +
         ": key 'model.arch' must be \"dense\" or \"hybrid\" (or give model.pattern), got \"" +
         s.arch + "\"");
  }
  s.d_model = d;
  s.n_heads = H;
  s.vocab_size = m.vocab_size.value_or(256);
  s.d_mlp = m.d_mlp.value_or(0);
  s.gdn_key_dim = m.dk.value_or(0);
  s.gdn_value_dim = m.dv.value_or(0);
  try {
    s.finalize();
  } catch (const Error& e) {
    fail(origin + ": " + e.what());
  }
  c.model = s;
}

}  // namespace

TrainConfig parse_config(const std::string& text, const std::string& origin,
                         const std::string& base_dir, const std::vector<std::string>& overrides) {
  TrainConfig c;
  RawModel m;
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    fail(origin + ":" + std::to_string(src.begin.line) + ": " + std::string(e.description()));
  }
  apply_table(root, Reader{origin, base_dir}, c, m);
  // Overrides: `section.key=value`, value parsed as TOML, falling back to a bare string.
  toml::table over;
  for (const std::string& o : overrides) {
    auto eq = o.find('=');
    auto dot = o.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      fail("--set '" + o + "': expected section.key=value");
    std::string sec = o.substr(0, dot), key = o.substr(dot + 1, eq - dot - 1),
                val = o.substr(eq + 1);
    toml::table one;
    try {
      one = toml::parse("v = " + val);
    } catch (const toml::parse_error&) {
      one.insert_or_assign("v", val);
    }
    if (!over.contains(sec)) over.insert_or_assign(sec, toml::table{});
    over[sec].as_table()->insert_or_assign(key, *one.get("v"));
  }
  apply_table(over, Reader{"--set", fs::current_path().string()}, c, m);
  resolve_model(m, origin, c);
  if (!c.budgets.empty()) {
    if (c.schedule != "wsd")
      fail(origin + ": key 'train.budgets' needs schedule = \"wsd\" (got \"" + c.schedule + "\")");
    for (size_t i = 0; i < c.budgets.size(); ++i) {
      const std::string ki = "train.budgets[" + std::to_string(i) + "]";
      if (c.budgets[i] <= c.warmup_tokens)
        fail(origin + ": key '" + ki + "' (" + std::to_string(c.budgets[i]) +
             " tokens) must exceed train.warmup_tokens (" + std::to_string(c.warmup_tokens) + ")");
      if (i > 0 && c.steps_for(c.budgets[i]) == c.steps_for(c.budgets[i - 1]))
        fail(origin + ": key '" + ki + "' falls on the same optimizer step as the budget before " +
             "it (" + std::to_string(c.tokens_per_step()) + " tokens per step)");
    }
    // The run ends at the last budget's cooldown.
    c.tokens = c.budgets.back();
  }
  // AdamW's constants: outside these ranges the moments or the step are meaningless (beta = 1
  // divides by zero in the bias correction, beta > 1 grows without bound).
  auto in_range = [&](const char* key, double v, bool ok, const char* what) {
    if (!ok)
      fail(origin + ": key 'train." + key + "' must be " + what + " (got " + std::to_string(v) +
           ")");
  };
  in_range("beta1", c.beta1, c.beta1 >= 0 && c.beta1 < 1, "in [0, 1)");
  in_range("beta2", c.beta2, c.beta2 >= 0 && c.beta2 < 1, "in [0, 1)");
  in_range("adam_eps", c.adam_eps, c.adam_eps > 0, "> 0");
  in_range("weight_decay", c.weight_decay, c.weight_decay >= 0, ">= 0");
  in_range("min_lr_ratio", c.min_lr_ratio, c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1, "in [0, 1]");
  if (c.train_data.empty()) fail(origin + ": key 'data.train' is required");
  if (c.val_data.empty()) fail(origin + ": key 'data.val' is required");
  return c;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_config("", "--set", fs::current_path().string(), overrides);
  // A FIFO or device would block in open() or never end; only regular files are configs.
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!ec && fs::exists(st) && !fs::is_regular_file(st))
    fail("config '" + path + "': not a regular file");
  std::ifstream f(path);
  if (!f) fail("config '" + path + "': cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string base = fs::absolute(fs::path(path)).parent_path().string();
  return parse_config(ss.str(), path, base, overrides);
}

std::string to_toml(const TrainConfig& c) {
  // Written by hand (not toml++'s formatter) so the key order and comments are stable and readable;
  // strings go through toml++'s quoting via a one-value table.
  auto q = [](const std::string& s) {
    std::ostringstream o;
    o << toml::value<std::string>(s);
    return o.str();
  };
  auto f = [](double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    std::string s = buf;
    if (s.find_first_of(".eE") == std::string::npos && s.find("inf") == std::string::npos &&
        s.find("nan") == std::string::npos)
      s += ".0";
    return s;
  };
  const ModelSpec& s = c.model;
  std::ostringstream o;
  o << "# scalinglab run config (fully resolved)\n[model]\n";
  o << "arch = " << q(s.arch) << "\n";
  o << "pattern = " << q(s.pattern) << "\n";
  if (!c.size.empty()) o << "size = " << q(c.size) << "\n";
  o << "d_model = " << s.d_model << "\nn_layers = " << s.n_layers() << "\nn_heads = " << s.n_heads
    << "\nvocab_size = " << s.vocab_size << "\nd_mlp = " << s.d_mlp
    << "\ngdn_key_dim = " << s.gdn_key_dim << "\ngdn_value_dim = " << s.gdn_value_dim << "\n";
  o << "\n[train]\nseq_len = " << c.seq_len << "\nbatch_size = " << c.batch_size
    << "\ntokens = " << c.tokens;
  if (!c.budgets.empty()) {
    o << "\nbudgets = [";
    for (size_t i = 0; i < c.budgets.size(); ++i) o << (i ? ", " : "") << c.budgets[i];
    o << "]";
  }
  o << "\nlr = " << f(c.lr) << "\nschedule = " << q(c.schedule)
    << "\nwarmup_tokens = " << c.warmup_tokens << "\nmin_lr_ratio = " << f(c.min_lr_ratio)
    << "\ndecay_fraction = " << f(c.decay_fraction) << "\nweight_decay = " << f(c.weight_decay)
    << "\nbeta1 = " << f(c.beta1) << "\nbeta2 = " << f(c.beta2) << "\nadam_eps = " << f(c.adam_eps)
    << "\ngrad_clip = " << f(c.grad_clip) << "\nseed = " << c.seed
    << "\neval_every = " << c.eval_every << "\neval_tokens = " << c.eval_tokens
    << "\ncheckpoint_every = " << c.checkpoint_every << "\n";
  if (c.inject_nan_step >= 0) o << "inject_nan_step = " << c.inject_nan_step << "\n";
  o << "\n[data]\ntrain = " << q(c.train_data) << "\nval = " << q(c.val_data) << "\n";
  return o.str();
}

std::string identity_toml(const TrainConfig& c) {
  if (c.schedule != "wsd") return to_toml(c);
  // A WSD run's budgets are branches off one stable trunk and may grow (docs/DESIGN.md "Sweep
  // file"): they, and the tokens they set, are not part of what the run is.
  TrainConfig t = c;
  t.budgets.clear();
  t.tokens = 0;
  return to_toml(t);
}

std::string run_id_of(const TrainConfig& c) {
  const std::string text = identity_toml(c);
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

}  // namespace sl
