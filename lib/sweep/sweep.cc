#include "sweep/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <toml++/toml.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/tokens.h"
#include "runlog/checkpoint.h"
#include "runlog/h5.h"
#include "runlog/runlog.h"

namespace sl::sweep {
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("'" + path + "': cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string num17(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// One explicit shape of the grid: a ladder preset (overrides = model.size) or [[sweep.shape]].
struct Shape {
  std::string name;
  std::vector<std::string> overrides;
};

struct Grid {
  std::vector<std::string> archs, patterns;
  std::vector<Shape> shapes;
  std::vector<double> ratios;
  std::vector<int64_t> budgets;
  std::vector<int64_t> seeds;
  std::vector<double> lrs;
};

Grid read_grid(const toml::table& root, const std::string& origin, std::string& name) {
  const toml::table* sw = root["sweep"].as_table();
  if (!sw) fail(origin + ": missing section [sweep]");
  auto bad = [&](const std::string& key, const std::string& what) -> void {
    fail(origin + ": key 'sweep." + key + "' " + what);
  };
  auto array = [&](const toml::node& n, const std::string& key) -> const toml::array& {
    const toml::array* a = n.as_array();
    if (!a) bad(key, "must be an array");
    if (a->empty()) bad(key, "is empty (a grid needs at least one value)");
    return *a;
  };
  auto strings = [&](const toml::node& n, const std::string& key) {
    std::vector<std::string> out;
    for (const auto& e : array(n, key)) {
      auto v = e.value_exact<std::string>();
      if (!v || v->empty()) bad(key, "must hold non-empty strings");
      out.push_back(*v);
    }
    return out;
  };
  auto numbers = [&](const toml::node& n, const std::string& key) {
    std::vector<double> out;
    for (const auto& e : array(n, key)) {
      if (!e.is_number()) bad(key, "must hold numbers");
      const double v = *e.value<double>();
      if (!(v > 0) || !std::isfinite(v)) bad(key, "must hold positive numbers");
      out.push_back(v);
    }
    return out;
  };
  Grid g;
  for (const auto& [k, node] : *sw) {
    const std::string key(k.str());
    if (key == "name") {
      auto v = node.value_exact<std::string>();
      if (!v || v->empty()) bad(key, "must be a non-empty string");
      name = *v;
    } else if (key == "archs") {
      g.archs = strings(node, key);
    } else if (key == "patterns") {
      g.patterns = strings(node, key);
    } else if (key == "sizes") {
      for (const std::string& s : strings(node, key)) {
        if (!find_ladder(s)) bad(key, "names no ladder preset: '" + s + "'");
        g.shapes.push_back({s, {"model.size=\"" + s + "\""}});
      }
    } else if (key == "shape") {
      const toml::array* a = node.as_array();
      if (!a || a->empty()) bad(key, "must be one or more [[sweep.shape]] tables");
      for (const auto& e : *a) {
        const toml::table* t = e.as_table();
        if (!t) bad(key, "must be one or more [[sweep.shape]] tables");
        Shape sh;
        int64_t d = 0, L = 0;
        for (const auto& [sk, sv] : *t) {
          const std::string s(sk.str());
          if (s == "name") {
            sh.name = sv.value_or(std::string());
            continue;
          }
          if (s != "d_model" && s != "n_layers" && s != "n_heads")
            bad("shape." + s, "is unknown (name, d_model, n_layers, n_heads)");
          auto v = sv.value_exact<int64_t>();
          if (!v || *v <= 0) bad("shape." + s, "must be a positive integer");
          if (s == "d_model") d = *v;
          if (s == "n_layers") L = *v;
          sh.overrides.push_back("model." + s + "=" + std::to_string(*v));
        }
        if (!d || !L) bad("shape", "needs d_model and n_layers");
        if (sh.name.empty()) sh.name = "d" + std::to_string(d) + "L" + std::to_string(L);
        g.shapes.push_back(sh);
      }
    } else if (key == "budgets_per_param") {
      g.ratios = numbers(node, key);
    } else if (key == "budgets") {
      for (double v : numbers(node, key)) {
        if (std::floor(v) != v) bad(key, "must hold whole token counts");
        g.budgets.push_back(static_cast<int64_t>(v));
      }
    } else if (key == "seeds") {
      for (const auto& e : array(node, key)) {
        auto v = e.value_exact<int64_t>();
        if (!v || *v < 0) bad(key, "must hold integers >= 0");
        g.seeds.push_back(*v);
      }
    } else if (key == "lrs") {
      g.lrs = numbers(node, key);
    } else {
      bad(key,
          "is unknown (name, archs, patterns, sizes, shape, budgets_per_param, budgets, "
          "seeds, lrs)");
    }
  }
  if (name.empty()) bad("name", "is required");
  if (g.archs.empty() == g.patterns.empty()) bad("archs", "or sweep.patterns is required (one)");
  if (g.shapes.empty()) bad("sizes", "or [[sweep.shape]] is required");
  if (g.ratios.empty() == g.budgets.empty())
    bad("budgets_per_param", "or sweep.budgets is required (one)");
  if (g.seeds.empty()) g.seeds = {0};
  return g;
}

}  // namespace

Sweep load_sweep(const std::string& path) {
  Sweep s;
  s.path = path;
  s.text = slurp(path);
  toml::table root;
  try {
    root = toml::parse(s.text, path);
  } catch (const toml::parse_error& e) {
    fail(path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  Grid g = read_grid(root, path, s.name);
  // The grid decides the model's kind and shape: the shared [model] may not set them too.
  if (const toml::table* m = root["model"].as_table()) {
    for (const char* k : {"arch", "pattern", "size", "d_model", "n_layers", "n_heads"})
      if (m->contains(k))
        fail(path + ": key 'model." + std::string(k) + "' is set by the grid ([sweep])");
  }
  if (const toml::table* t = root["train"].as_table()) {
    for (const char* k : {"tokens", "budgets", "seed"})
      if (t->contains(k))
        fail(path + ": key 'train." + std::string(k) + "' is set by the grid ([sweep])");
    if (t->contains("lr") && !g.lrs.empty())
      fail(path + ": key 'train.lr' is set by the grid (sweep.lrs)");
  }
  toml::table base = root;
  base.erase("sweep");
  std::ostringstream bt;
  bt << base;
  const std::string base_text = bt.str();
  const std::string base_dir = fs::absolute(fs::path(path)).parent_path().string();
  const std::vector<double> lrs = g.lrs.empty() ? std::vector<double>{0.0} : g.lrs;

  struct Kind {
    std::string label, set;
  };
  std::vector<Kind> kinds;
  for (const auto& a : g.archs) kinds.push_back({a, "model.arch=\"" + a + "\""});
  // A pattern sweep labels each run's arch with its pattern, so fits can group by it.
  for (const auto& p : g.patterns) kinds.push_back({p, "model.pattern=\"" + p + "\""});

  std::set<std::string> ids;
  for (const Kind& kind : kinds) {
    for (const Shape& shape : g.shapes) {
      for (int64_t seed : g.seeds) {
        for (double lr : lrs) {
          std::vector<std::string> sets = shape.overrides;
          sets.push_back(kind.set);
          if (!g.patterns.empty()) sets.push_back("model.arch=\"" + kind.label + "\"");
          sets.push_back("train.seed=" + std::to_string(seed));
          if (lr > 0) sets.push_back("train.lr=" + num17(lr));
          const std::string what =
              path + ": run " + kind.label + " " + shape.name + " seed " + std::to_string(seed);
          TrainConfig probe;
          try {
            probe = parse_config(base_text, path, base_dir, sets);
          } catch (const Error& e) {
            fail(std::string(e.what()) + " (" + what + ")");
          }
          const int64_t n_ne = count_params(build_param_table(probe.model), false);
          const int64_t tps = probe.tokens_per_step();
          // Budgets fall on whole optimizer steps, so the recorded tokens are the trained tokens.
          std::vector<int64_t> budgets;
          for (double r : g.ratios)
            budgets.push_back(std::max<int64_t>(1, std::llround(r * n_ne / tps)) * tps);
          for (int64_t b : g.budgets) budgets.push_back(probe.steps_for(b) * tps);
          std::sort(budgets.begin(), budgets.end());
          for (size_t i = 0; i < budgets.size(); ++i) {
            if (budgets[i] <= probe.warmup_tokens)
              fail(path + ": budget " + std::to_string(budgets[i]) + " tokens of " + what +
                   " is not above train.warmup_tokens = " + std::to_string(probe.warmup_tokens));
            if (i > 0 && budgets[i] == budgets[i - 1])
              fail(path + ": two budgets of " + what + " round to the same " +
                   std::to_string(budgets[i]) + " tokens (" + std::to_string(tps) +
                   " tokens per step)");
          }
          auto add = [&](const std::vector<int64_t>& run_budgets) {
            std::vector<std::string> rs = sets;
            if (probe.schedule == "wsd") {
              std::string list = "train.budgets=[";
              for (size_t i = 0; i < run_budgets.size(); ++i)
                list += (i ? "," : "") + std::to_string(run_budgets[i]);
              rs.push_back(list + "]");
            } else {
              rs.push_back("train.tokens=" + std::to_string(run_budgets[0]));
            }
            SweepRun r;
            try {
              r.config = parse_config(base_text, path, base_dir, rs);
            } catch (const Error& e) {
              fail(std::string(e.what()) + " (" + what + ")");
            }
            r.index = static_cast<int64_t>(s.runs.size());
            r.run_id = run_id_of(r.config);
            r.arch = r.config.model.arch;
            r.size = shape.name;
            r.budgets = run_budgets;
            r.n_params = count_params(build_param_table(r.config.model), true);
            r.n_params_nonembedding = n_ne;
            // WSD: the stable branch to the last budget plus every other budget's cooldown.
            double tokens = static_cast<double>(run_budgets.back());
            for (size_t i = 0; i + 1 < run_budgets.size(); ++i)
              tokens += r.config.decay_fraction * static_cast<double>(run_budgets[i]);
            r.flops = tokens * r.config.model.flops_per_token(r.config.seq_len);
            if (!ids.insert(r.run_id).second)
              fail(path + ": " + what + " duplicates another run of the grid (same config)");
            s.runs.push_back(std::move(r));
          };
          if (probe.schedule == "wsd") {
            add(budgets);
          } else {
            for (int64_t b : budgets) add({b});
          }
        }
      }
    }
  }
  return s;
}

std::string run_dir(const std::string& dir, const std::string& run_id) {
  return dir + "/runs/" + run_id;
}

std::vector<SweepRun> select_runs(const std::vector<SweepRun>& runs, const std::string& spec) {
  struct Selector {
    std::string text, arch, size;  // arch:size, "*" a wildcard; or size empty: a run id
    bool used = false;
  };
  std::vector<Selector> sel;
  std::stringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t colon = item.find(':');
    Selector s{item, item.substr(0, colon),
               colon == std::string::npos ? "" : item.substr(colon + 1)};
    if (item.empty() || (colon != std::string::npos && (s.arch.empty() || s.size.empty() ||
                                                        s.size.find(':') != std::string::npos)))
      fail("sweep launch --only '" + spec + "': selector '" + item +
           "' is not ARCH:SIZE (either may be *) or a run id");
    sel.push_back(s);
  }
  if (sel.empty()) fail("sweep launch --only '': no selector");
  std::vector<SweepRun> out;
  for (const SweepRun& r : runs) {
    bool keep = false;
    for (Selector& s : sel) {
      const bool hit = s.size.empty() ? r.run_id == s.arch
                                      : (s.arch == "*" || s.arch == r.arch) &&
                                            (s.size == "*" || s.size == r.size);
      s.used = s.used || hit;
      keep = keep || hit;
    }
    if (keep) out.push_back(r);
  }
  for (const Selector& s : sel)
    if (!s.used) fail("sweep launch --only: selector '" + s.text + "' matches no run of the sweep");
  return out;
}

void check_data(const Sweep& s) {
  std::set<std::pair<std::string, int64_t>> seen;
  for (const SweepRun& r : s.runs)
    for (const std::string& spec : {r.config.train_data, r.config.val_data})
      if (seen.insert({spec, r.config.model.vocab_size}).second) {
        try {
          (void)TokenSource::open(spec, r.config.model.vocab_size);
        } catch (const Error& e) {
          fail("sweep '" + s.path + "': " + e.what());
        }
      }
}

namespace {

// The token budgets a run config plans: train.budgets, or its one budget train.tokens.
std::vector<int64_t> planned_budgets(const TrainConfig& c) {
  return c.budgets.empty() ? std::vector<int64_t>{c.tokens} : c.budgets;
}

bool has(const std::vector<int64_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

void prepare_dir(Sweep& s, const std::string& dir) {
  check_data(s);
  const std::string sweep_file = dir + "/sweep.toml";
  if (!path_exists(sweep_file) && path_exists(dir) && !fs::is_empty(dir))
    fail("'" + dir + "' exists, is not empty and holds no sweep.toml: not a sweep directory");
  const bool extend = path_exists(sweep_file) && slurp(sweep_file) != s.text;
  if (path_exists(dir + "/plan.tsv")) {
    // The directory's runs are found in the file by identity_toml, not by run id: a WSD run's id
    // leaves its budgets out (train/config.h), so a WSD run that gains budgets is the same run;
    // and a directory made while WSD ids still hashed the budgets keeps those recorded ids (its
    // runs keep their directories, their logs and checkpoints: no migration). Cosine runs'
    // identity is their whole config, so for them this is matching by id.
    const std::vector<SweepRun> old = load_plan(dir);
    std::map<std::string, size_t> by_identity;
    for (size_t i = 0; i < s.runs.size(); ++i) by_identity[identity_toml(s.runs[i].config)] = i;
    std::vector<SweepRun> runs;
    std::vector<bool> kept(s.runs.size(), false);
    for (const SweepRun& o : old) {
      const auto it = by_identity.find(identity_toml(o.config));
      if (it == by_identity.end() || kept[it->second])
        fail("sweep directory '" + dir + "' holds run " + o.run_id + " (" + o.arch + " " + o.size +
             ") that '" + s.path + "' does not make: a sweep file may gain runs and comments, " +
             "not drop or change them; use another --dir");
      SweepRun r = s.runs[it->second];
      kept[it->second] = true;
      for (int64_t b : o.budgets)
        if (!has(r.budgets, b))
          fail("sweep directory '" + dir + "' holds run " + o.run_id + " (" + o.arch + " " +
               o.size + ") with budget " + std::to_string(b) + " tokens that '" + s.path +
               "' drops: a WSD run may gain budgets, not lose them; use another --dir");
      r.run_id = o.run_id;
      runs.push_back(std::move(r));
    }
    for (size_t i = 0; i < s.runs.size(); ++i)
      if (!kept[i]) runs.push_back(s.runs[i]);
    for (size_t i = 0; i < runs.size(); ++i) runs[i].index = static_cast<int64_t>(i);
    s.runs = std::move(runs);
  }
  // An existing config.toml must be the plan's, or the plan's WSD run with fewer budgets (it is
  // rewritten with the new list; the run then reads "extended" until a launch trains the new
  // budgets).
  for (const SweepRun& r : s.runs) {
    const std::string cfg = run_dir(dir, r.run_id) + "/config.toml";
    if (!path_exists(cfg) || slurp(cfg) == to_toml(r.config)) continue;
    TrainConfig have;
    try {
      have = load_config(cfg, {});
    } catch (const Error&) {
      fail("'" + cfg + "' differs from the plan's config for this run id");
    }
    if (identity_toml(have) != identity_toml(r.config))
      fail("'" + cfg + "' differs from the plan's config for this run id");
    for (int64_t b : planned_budgets(have))
      if (!has(planned_budgets(r.config), b))
        fail("'" + cfg + "': run " + r.run_id + " (" + r.arch + " " + r.size + ") has budget " +
             std::to_string(b) + " tokens that '" + s.path +
             "' drops: a WSD run may gain budgets, not lose them; use another --dir");
  }
  // Every check passed: write.
  make_dirs(dir + "/runs");
  if (!path_exists(sweep_file) || extend) atomic_write_file(sweep_file, s.text);
  std::ostringstream plan;
  plan << "index\trun_id\tarch\tpattern\tsize\td_model\tn_layers\tn_params_nonembedding\tseed"
          "\tlr\tbudgets\n";
  for (const SweepRun& r : s.runs) {
    plan << r.index << "\t" << r.run_id << "\t" << r.arch << "\t" << r.config.model.pattern << "\t"
         << r.size << "\t" << r.config.model.d_model << "\t" << r.config.model.n_layers() << "\t"
         << r.n_params_nonembedding << "\t" << r.config.seed << "\t" << num17(r.config.lr) << "\t";
    for (size_t i = 0; i < r.budgets.size(); ++i) plan << (i ? "," : "") << r.budgets[i];
    plan << "\n";
    const std::string rd = run_dir(dir, r.run_id);
    make_dirs(rd);
    const std::string cfg = rd + "/config.toml", text = to_toml(r.config);
    if (!path_exists(cfg) || slurp(cfg) != text) atomic_write_file(cfg, text);
  }
  atomic_write_file(dir + "/plan.tsv", plan.str());
}

std::vector<SweepRun> load_plan(const std::string& dir) {
  const std::string p = dir + "/plan.tsv";
  if (!path_exists(p)) fail("'" + p + "': no plan (run `scalinglab sweep launch` first)");
  std::istringstream in(slurp(p));
  std::string line;
  std::getline(in, line);  // header
  std::vector<SweepRun> out;
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    std::vector<std::string> cells;
    std::istringstream ls(line);
    for (std::string c; std::getline(ls, c, '\t');) cells.push_back(c);
    if (cells.size() != 11) fail(p + ": line " + std::to_string(lineno) + ": expected 11 cells");
    SweepRun r;
    try {
      r.index = std::stoll(cells[0]);
      for (std::istringstream bs(cells[10]); std::getline(bs, line, ',');)
        r.budgets.push_back(std::stoll(line));
    } catch (const std::exception&) {
      fail(p + ": line " + std::to_string(lineno) + ": malformed number");
    }
    if (r.index != static_cast<int64_t>(out.size()) || r.budgets.empty())
      fail(p + ": line " + std::to_string(lineno) + ": malformed (index or budgets)");
    r.run_id = cells[1];
    r.arch = cells[2];
    r.size = cells[4];
    const std::string cfg = run_dir(dir, r.run_id) + "/config.toml";
    r.config = load_config(cfg, {});
    r.n_params = count_params(build_param_table(r.config.model), true);
    r.n_params_nonembedding = count_params(build_param_table(r.config.model), false);
    out.push_back(std::move(r));
  }
  return out;
}

int try_lock(const std::string& rd) {
  make_dirs(rd);
  // The lock `train` takes too (core/fs.h): the child inherits this descriptor and so holds it.
  return try_lock_file(rd + "/lock", true, nullptr);
}

void unlock(int fd) {
  if (fd >= 0) ::close(fd);  // closing the last descriptor releases the flock
}

RunStatus run_status(const std::string& rd, bool locked_by_me) {
  RunStatus st;
  st.last_loss = st.train_loss = std::numeric_limits<double>::quiet_NaN();
  bool locked = false;
  if (!locked_by_me && path_exists(rd + "/lock")) {
    int fd = ::open((rd + "/lock").c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
      ::close(fd);
    }
  }
  std::string log_status;
  if (path_exists(rd + "/log.h5")) {
    try {
      RunLog log = read_runlog(rd + "/log.h5");
      log_status = log.attrs.status;
      // A completed WSD run whose config.toml gained budgets since (prepare_dir) has more to do.
      if (log_status == "completed" && path_exists(rd + "/config.toml")) {
        try {
          const TrainConfig c = load_config(rd + "/config.toml", {});
          for (int64_t b : planned_budgets(c))
            if (!has(log.budget_tokens, c.steps_for(b) * c.tokens_per_step()))
              log_status = "extended";
        } catch (const Error&) {  // a config a launch would refuse: the log still says what ran
        }
      }
      st.step = log.train.empty() ? 0 : log.train.back().step;
      st.steps_planned =
          log.attrs.batch_tokens ? log.attrs.tokens_planned / log.attrs.batch_tokens : 0;
      st.budgets_done = static_cast<int64_t>(log.budget_tokens.size());
      st.tokens_planned = log.attrs.tokens_planned;
      if (!log.train.empty()) {
        st.tokens = log.train.back().tokens;
        st.train_loss = log.train.back().loss;
        st.tokens_per_s = log.train.back().tokens_per_s;
      }
      if (!log.eval_loss.empty()) st.last_loss = log.eval_loss.back();
    } catch (const Error& e) {
      log_status = "unreadable";
      st.error = e.what();
    }
  }
  if (locked) {
    st.status = "running";
  } else if (log_status == "completed" || log_status == "diverged" || log_status == "preempted" ||
             log_status == "extended") {
    st.status = log_status;
  } else if (path_exists(rd + "/failed") || log_status == "failed") {
    st.status = "failed";
  } else if (log_status == "unreadable") {
    st.status = "unreadable";
  } else if (log_status.empty()) {
    st.status = "pending";
  } else {
    // "running" with nobody holding the lock: the process was killed; it resumes like a
    // preempted run (from its last checkpoint).
    st.status = "preempted";
  }
  return st;
}

double estimate_seconds(const SweepRun& r, double flops_per_s) {
  return flops_per_s > 0 ? r.flops / flops_per_s : 0;
}

int64_t collect(const std::vector<SweepRun>& runs, const std::string& dir) {
  struct Row {
    std::string run_id, arch, pattern, size, status;
    int64_t d_model, n_layers, n_params, n_ne, seed, tokens;
    double lr, loss;
    double unique_tokens = std::numeric_limits<double>::quiet_NaN();
    double epochs = std::numeric_limits<double>::quiet_NaN();
  };
  // Tokens in one epoch of each training source: the sampler draws each of its W training windows
  // of seq_len tokens once per epoch (data/tokens.h), so a run of D tokens sees
  // min(D, W seq_len) distinct ones in D / (W seq_len) epochs (budgets fall on whole steps, so D
  // is whole windows). The fits' data-constrained law reads the unique tokens. A source that
  // cannot be opened any more leaves both NaN, with one warning.
  std::map<std::tuple<std::string, int64_t, int64_t>, double> epoch_tokens;
  auto tokens_per_epoch = [&](const TrainConfig& c) {
    const auto key = std::make_tuple(c.train_data, c.model.vocab_size, c.seq_len);
    auto it = epoch_tokens.find(key);
    if (it != epoch_tokens.end()) return it->second;
    double t = std::numeric_limits<double>::quiet_NaN();
    try {
      const TokenSource src = TokenSource::open(c.train_data, c.model.vocab_size);
      t = static_cast<double>(train_windows(src, c.seq_len) * c.seq_len);
    } catch (const Error& e) {
      std::fprintf(stderr,
                   "scalinglab: sweep collect: warning: %s; unique_tokens and epochs are nan for "
                   "its runs\n",
                   e.what());
    }
    return epoch_tokens[key] = t;
  };
  std::vector<Row> rows;
  for (const SweepRun& r : runs) {
    const std::string rd = run_dir(dir, r.run_id);
    RunStatus st = run_status(rd);
    if (st.status == "unreadable")
      std::fprintf(stderr,
                   "scalinglab: sweep collect: warning: run %s: %s/log.h5 is unreadable (%s); its "
                   "rows say status unreadable, loss nan\n",
                   r.run_id.c_str(), rd.c_str(), st.error.c_str());
    Row base{r.run_id,
             r.arch,
             r.config.model.pattern,
             r.size,
             st.status,
             r.config.model.d_model,
             r.config.model.n_layers(),
             r.n_params,
             r.n_params_nonembedding,
             static_cast<int64_t>(r.config.seed),
             0,
             r.config.lr,
             std::numeric_limits<double>::quiet_NaN()};
    std::vector<std::pair<int64_t, double>> reached;
    if (path_exists(rd + "/log.h5")) {
      try {
        RunLog log = read_runlog(rd + "/log.h5");
        for (size_t i = 0; i < log.budget_tokens.size(); ++i)
          reached.emplace_back(log.budget_tokens[i], log.budget_loss[i]);
      } catch (const Error&) {
      }
    }
    // One row per planned budget: reached ones carry their loss, the rest NaN (the fitter skips
    // NaN losses; the status column says why).
    const double per_epoch = tokens_per_epoch(r.config);
    for (int64_t b : r.budgets) {
      Row row = base;
      row.tokens = b;
      row.unique_tokens =
          std::isnan(per_epoch) ? per_epoch : std::min(static_cast<double>(b), per_epoch);
      row.epochs = static_cast<double>(b) / per_epoch;
      for (const auto& [t, l] : reached)
        if (t == b) row.loss = l;
      rows.push_back(row);
    }
  }
  // CSV
  std::ostringstream csv;
  csv << "run_id,arch,pattern,size,d_model,n_layers,n_params,n_params_nonembedding,seed,lr,tokens,"
         "loss,status,unique_tokens,epochs\n";
  auto cell = [](double v) { return std::isnan(v) ? std::string("nan") : num17(v); };
  for (const Row& r : rows)
    csv << r.run_id << "," << r.arch << "," << r.pattern << "," << r.size << "," << r.d_model << ","
        << r.n_layers << "," << r.n_params << "," << r.n_ne << "," << r.seed << "," << num17(r.lr)
        << "," << r.tokens << "," << cell(r.loss) << "," << r.status << "," << cell(r.unique_tokens)
        << "," << cell(r.epochs) << "\n";
  // HDF5: written to a temporary name and renamed, like everything else that replaces a file.
  h5::quiet();
  const std::string h5p = dir + "/sweep.h5", tmp = h5p + ".tmp";
  {
    h5::Id fapl = h5::file_access(false);
    h5::Id f(h5::check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "create " + tmp),
             H5Fclose);
    const hsize_t n = rows.size();
    auto space = [&]() { return h5::Id(H5Screate_simple(1, &n, nullptr), H5Sclose); };
    auto strings = [&](const char* name, auto get) {
      std::vector<std::string> v;
      std::vector<const char*> p;
      for (const Row& r : rows) v.push_back(get(r));
      for (const auto& x : v) p.push_back(x.c_str());
      h5::Id t(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(t, H5T_VARIABLE);
      H5Tset_cset(t, H5T_CSET_UTF8);
      h5::Id sp = space();
      h5::Id d(h5::check(H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name),
               H5Dclose);
      if (n) h5::check_status(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()), name);
    };
    auto ints = [&](const char* name, auto get) {
      std::vector<int64_t> v;
      for (const Row& r : rows) v.push_back(get(r));
      h5::Id sp = space();
      h5::Id d(h5::check(
                   H5Dcreate2(f, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   name),
               H5Dclose);
      if (n)
        h5::check_status(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                         name);
    };
    auto doubles = [&](const char* name, auto get) {
      std::vector<double> v;
      for (const Row& r : rows) v.push_back(get(r));
      h5::Id sp = space();
      h5::Id d(h5::check(H5Dcreate2(f, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT),
                         name),
               H5Dclose);
      if (n)
        h5::check_status(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                         name);
    };
    strings("run_id", [](const Row& r) { return r.run_id; });
    strings("arch", [](const Row& r) { return r.arch; });
    strings("pattern", [](const Row& r) { return r.pattern; });
    strings("size", [](const Row& r) { return r.size; });
    ints("d_model", [](const Row& r) { return r.d_model; });
    ints("n_layers", [](const Row& r) { return r.n_layers; });
    ints("n_params", [](const Row& r) { return r.n_params; });
    ints("n_params_nonembedding", [](const Row& r) { return r.n_ne; });
    ints("seed", [](const Row& r) { return r.seed; });
    doubles("lr", [](const Row& r) { return r.lr; });
    ints("tokens", [](const Row& r) { return r.tokens; });
    doubles("loss", [](const Row& r) { return r.loss; });
    strings("status", [](const Row& r) { return r.status; });
    doubles("unique_tokens", [](const Row& r) { return r.unique_tokens; });
    doubles("epochs", [](const Row& r) { return r.epochs; });
    if (!f.reset()) h5::fail("close " + tmp);
  }
  fs::rename(tmp, h5p);
  atomic_write_file(dir + "/sweep.csv", csv.str());
  return static_cast<int64_t>(rows.size());
}

}  // namespace sl::sweep
