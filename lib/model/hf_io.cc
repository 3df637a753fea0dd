#include "model/hf_io.h"

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "model/blocks/block.h"

namespace sl {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader/writer copies bytes as they are");

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

int64_t HfTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// IEEE half -> float (exact: every half is a float).
float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal: mant * 2^-24
  else if (exp == 31)
    v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

// bfloat16 is the top half of a float.
float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

int64_t dtype_bytes(const std::string& dt) {
  if (dt == "F32" || dt == "I32") return 4;
  if (dt == "F64" || dt == "I64") return 8;
  if (dt == "F16" || dt == "BF16") return 2;
  return 0;
}

}  // namespace

HfTensors read_safetensors(const std::string& path) {
  const std::string bytes = read_file(path);
  const std::string where = "safetensors " + path;
  if (bytes.size() < 8) fail(where + ": shorter than its 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    fail(where + ": header length " + std::to_string(n) + " runs past the end of the file (" +
         std::to_string(bytes.size()) + " bytes)");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<int64_t>(n));
  } catch (const json::exception& e) {
    fail(where + ": header is not valid JSON (" + e.what() + ")");
  }
  if (!header.is_object()) fail(where + ": header is not a JSON object");
  const char* data = bytes.data() + 8 + n;
  const uint64_t data_size = bytes.size() - 8 - n;
  HfTensors out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string tw = where + ": tensor '" + name + "'";
    HfTensor t;
    try {
      t.dtype = info.at("dtype").get<std::string>();
      t.shape = info.at("shape").get<std::vector<int64_t>>();
      const auto off = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[1] < off[0] || off[1] > data_size)
        fail(tw + ": data_offsets out of range of the " + std::to_string(data_size) +
             " data bytes");
      const int64_t eb = dtype_bytes(t.dtype);
      if (eb == 0) fail(tw + ": unsupported dtype " + t.dtype + " (F32 F64 F16 BF16 I32 I64)");
      for (int64_t s : t.shape)
        if (s < 0) fail(tw + ": negative dimension in shape " + shape_str(t.shape));
      const int64_t numel = t.numel();
      if (static_cast<uint64_t>(numel * eb) != off[1] - off[0])
        fail(tw + ": shape " + shape_str(t.shape) + " of " + t.dtype + " needs " +
             std::to_string(numel * eb) + " bytes, data_offsets span " +
             std::to_string(off[1] - off[0]));
      const char* p = data + off[0];
      if (t.dtype[0] == 'I') {
        t.ints.resize(numel);
        for (int64_t i = 0; i < numel; ++i) {
          if (eb == 8) {
            std::memcpy(&t.ints[i], p + 8 * i, 8);
          } else {
            int32_t v;
            std::memcpy(&v, p + 4 * i, 4);
            t.ints[i] = v;
          }
        }
      } else {
        t.data.resize(numel);
        if (t.dtype == "F32") {
          std::memcpy(t.data.data(), p, numel * 4);
        } else if (t.dtype == "F64") {
          for (int64_t i = 0; i < numel; ++i) {
            double v;
            std::memcpy(&v, p + 8 * i, 8);
            t.data[i] = static_cast<float>(v);
          }
        } else {
          for (int64_t i = 0; i < numel; ++i) {
            uint16_t v;
            std::memcpy(&v, p + 2 * i, 2);
            t.data[i] = t.dtype == "F16" ? half_to_float(v) : bf16_to_float(v);
          }
        }
      }
    } catch (const json::exception& e) {
      fail(tw + ": malformed entry (" + e.what() + ")");
    }
    out.emplace(name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path, const HfTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  ojson header;
  ojson meta = {{"format", "pt"}};
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  uint64_t off = 0;
  for (const auto& [name, t] : tensors) {
    const bool is_int = !t.ints.empty() || (t.data.empty() && t.dtype[0] == 'I');
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * (is_int ? 8 : 4);
    if (static_cast<int64_t>(is_int ? t.ints.size() : t.data.size()) != t.numel())
      fail("safetensors " + path + ": tensor '" + name + "' holds " +
           std::to_string(is_int ? t.ints.size() : t.data.size()) + " values for shape " +
           shape_str(t.shape));
    header[name] = {{"dtype", is_int ? "I64" : "F32"},
                    {"shape", t.shape},
                    {"data_offsets", {off, off + nbytes}}};
    off += nbytes;
  }
  std::string h = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += h;
  bytes.reserve(bytes.size() + off);
  for (const auto& [name, t] : tensors) {
    if (!t.ints.empty())
      bytes.append(reinterpret_cast<const char*>(t.ints.data()), t.ints.size() * 8);
    else
      bytes.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
  }
  atomic_write_file(path, bytes);
}

// ---- config.json ------------------------------------------------------------------------------

namespace {

// HF hard-codes these in OlmoHybridGatedDeltaNet (o_norm eps 1e-5, l2norm eps 1e-6).
constexpr double kHfGdnNormEps = 1e-5, kHfL2normEps = 1e-6;

std::vector<std::string> layer_types(const ModelSpec& s) {
  std::vector<std::string> t;
  for (BlockKind k : block_kinds(s.pattern)) t.push_back(block_type(k).hf_layer_type);
  return t;
}

}  // namespace

std::string hf_config_json(const ModelSpec& spec_in, int64_t max_position_embeddings) {
  ModelSpec s = spec_in;
  s.finalize();
  const bool dense = s.n_gdn_layers() == 0;
  if (!dense && s.n_attention_layers() == 0)
    fail("export: pattern '" + s.pattern +
         "' has no attention layer; OlmoHybridForCausalLM requires at least one");
  if (!dense && (s.gdn_norm_eps != kHfGdnNormEps || s.l2norm_eps != kHfL2normEps))
    fail(
        "export: gdn_norm_eps/l2norm_eps differ from the values OlmoHybrid hard-codes (1e-5, "
        "1e-6)");
  const ojson rope = {{"rope_theta", s.rope_theta}, {"rope_type", "default"}};
  ojson c;
  c["architectures"] = {dense ? "Olmo3ForCausalLM" : "OlmoHybridForCausalLM"};
  c["model_type"] = dense ? "olmo3" : "olmo_hybrid";
  c["vocab_size"] = s.vocab_size;
  c["hidden_size"] = s.d_model;
  c["intermediate_size"] = s.d_mlp;
  c["num_hidden_layers"] = s.n_layers();
  c["num_attention_heads"] = s.n_heads;
  c["num_key_value_heads"] = s.n_heads;
  c["layer_types"] = layer_types(s);
  c["hidden_act"] = "silu";
  c["max_position_embeddings"] = max_position_embeddings;
  c["initializer_range"] = 0.02;
  c["rms_norm_eps"] = s.norm_eps;
  // Olmo3 keys RoPE by layer type; OlmoHybrid takes one flat dict (null there would mean NoPE).
  if (dense)
    c["rope_parameters"] = {{"full_attention", rope}, {"sliding_attention", rope}};
  else
    c["rope_parameters"] = rope;
  if (dense) c["sliding_window"] = 4096;  // unused: no layer is sliding_attention
  if (!dense) {
    c["linear_num_key_heads"] = s.n_heads;
    c["linear_num_value_heads"] = s.n_heads;
    c["linear_key_head_dim"] = s.gdn_key_dim;
    c["linear_value_head_dim"] = s.gdn_value_dim;
    c["linear_conv_kernel_dim"] = s.conv_kernel;
    c["linear_allow_neg_eigval"] = s.allow_neg_eigval;
    // Init ranges (docs/MODEL.md "Initialisation"); HF uses them only for missing weights.
    c["linear_a_log_min"] = 0.0;
    c["linear_a_log_max"] = 16.0;
    c["linear_dt_min"] = 0.001;
    c["linear_dt_max"] = 0.1;
    c["linear_dt_init_floor"] = 1e-4;
  }
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["tie_word_embeddings"] = false;
  c["pad_token_id"] = 0;
  c["bos_token_id"] = nullptr;
  c["eos_token_id"] = 0;
  c["use_cache"] = true;
  c["dtype"] = "float32";        // transformers >= 5
  c["torch_dtype"] = "float32";  // transformers 4.x
  c["transformers_version"] = "5.17.0";
  return c.dump(2) + "\n";
}

ModelSpec spec_from_hf_config(const std::string& text, const std::string& where) {
  json c;
  try {
    c = json::parse(text);
  } catch (const json::exception& e) {
    fail(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!c.is_object()) fail(where + ": not a JSON object");
  auto key_fail = [&](const std::string& key, const std::string& why) -> void {
    fail(where + ": key '" + key + "' " + why);
  };
  auto get_int = [&](const char* key, int64_t def, bool required) -> int64_t {
    if (!c.contains(key) || c[key].is_null()) {
      if (required) key_fail(key, "is missing");
      return def;
    }
    if (!c[key].is_number_integer()) key_fail(key, "must be an integer");
    return c[key].get<int64_t>();
  };
  auto get_num = [&](const char* key, double def) -> double {
    if (!c.contains(key) || c[key].is_null()) return def;
    if (!c[key].is_number()) key_fail(key, "must be a number");
    return c[key].get<double>();
  };
  auto get_bool = [&](const char* key, bool def) -> bool {
    if (!c.contains(key) || c[key].is_null()) return def;
    if (!c[key].is_boolean()) key_fail(key, "must be true or false");
    return c[key].get<bool>();
  };
  const std::string type = c.value("model_type", std::string());
  const bool hybrid = type == "olmo_hybrid";
  if (type != "olmo3" && !hybrid)
    key_fail("model_type", "is '" + type + "'; expected olmo3 or olmo_hybrid");

  ModelSpec s;
  s.d_model = get_int("hidden_size", 0, true);
  s.n_heads = get_int("num_attention_heads", 0, true);
  s.vocab_size = get_int("vocab_size", 0, true);
  s.d_mlp = get_int("intermediate_size", 0, true);
  const int64_t L = get_int("num_hidden_layers", 0, true);
  if (get_int("num_key_value_heads", s.n_heads, false) != s.n_heads)
    key_fail("num_key_value_heads",
             "differs from num_attention_heads (grouped-query attention "
             "is not part of our model)");
  if (s.n_heads > 0 && get_int("head_dim", s.d_model / s.n_heads, false) != s.d_model / s.n_heads)
    key_fail("head_dim", "must be hidden_size / num_attention_heads");
  if (c.value("hidden_act", std::string("silu")) != "silu") key_fail("hidden_act", "must be silu");
  if (get_bool("attention_bias", false)) key_fail("attention_bias", "must be false");
  if (get_bool("tie_word_embeddings", false))
    key_fail("tie_word_embeddings", "must be false (our lm_head is untied)");
  // The class defaults, which a config.json that omits the key gets in transformers.
  s.norm_eps = get_num("rms_norm_eps", hybrid ? 1e-6 : 1e-5);

  // Layer pattern.
  if (c.contains("layer_types") && !c["layer_types"].is_null()) {
    if (!c["layer_types"].is_array()) key_fail("layer_types", "must be a list");
    for (const auto& t : c["layer_types"]) {
      const std::string v = t.is_string() ? t.get<std::string>() : "";
      const BlockType* type = nullptr;
      for (const BlockType* b : block_types())
        if (v == b->hf_layer_type) type = b;
      // Olmo3Config knows full_attention only; OlmoHybridConfig both kinds.
      if (type && (hybrid || type->kind == BlockKind::attention))
        s.pattern += type->letter;
      else
        key_fail("layer_types", "holds '" + t.dump() + "'; our model has " +
                                    (hybrid ? "full_attention and linear_attention"
                                            : "full_attention (no sliding window)") +
                                    " layers");
    }
    if (static_cast<int64_t>(s.pattern.size()) != L)
      key_fail("layer_types", "has " + std::to_string(s.pattern.size()) +
                                  " entries, num_hidden_layers is " + std::to_string(L));
  } else if (hybrid) {  // OlmoHybridConfig's default: every 4th layer attention, at least one
    s.pattern = hf_default_hybrid_pattern(L);
  } else {
    key_fail("layer_types", "is missing: Olmo3Config's default makes 3 of 4 layers sliding-window");
  }

  // RoPE: Olmo3 keys it by layer type (or flat in older files), OlmoHybrid is flat.
  json rope = c.contains("rope_parameters") ? c["rope_parameters"] : json();
  if (rope.is_object() && rope.contains("full_attention")) rope = rope["full_attention"];
  if (rope.is_null()) {
    if (hybrid)
      key_fail("rope_parameters",
               "is null: NoPE attention (as in the released OLMo Hybrid "
               "checkpoints) is not part of our model");
    s.rope_theta = get_num("rope_theta", 5e5);  // Olmo3Config.default_theta
  } else {
    if (!rope.is_object()) key_fail("rope_parameters", "must be an object");
    if (rope.value("rope_type", std::string("default")) != "default")
      key_fail("rope_parameters", "has rope_type '" + rope.value("rope_type", std::string()) +
                                      "'; only the default RoPE is supported");
    if (!rope.contains("rope_theta") || !rope["rope_theta"].is_number())
      key_fail("rope_parameters", "has no numeric rope_theta");
    s.rope_theta = rope["rope_theta"].get<double>();
  }

  if (hybrid) {
    if (get_int("linear_num_key_heads", s.n_heads, false) != s.n_heads ||
        get_int("linear_num_value_heads", s.n_heads, false) != s.n_heads)
      key_fail("linear_num_key_heads", "and linear_num_value_heads must equal num_attention_heads");
    const int64_t kh_default =
        s.n_heads > 0 ? static_cast<int64_t>(0.75 * s.d_model / s.n_heads) : 0;
    s.gdn_key_dim = get_int("linear_key_head_dim", kh_default, false);
    s.gdn_value_dim = get_int("linear_value_head_dim", 2 * s.gdn_key_dim, false);
    s.conv_kernel = get_int("linear_conv_kernel_dim", 4, false);
    s.allow_neg_eigval = get_bool("linear_allow_neg_eigval", true);
  }
  s.gdn_norm_eps = kHfGdnNormEps;
  s.l2norm_eps = kHfL2normEps;
  if (s.n_gdn_layers() == 0)
    s.arch = "dense";
  else
    s.arch = s.pattern == hybrid_pattern(L) ? "hybrid" : "custom";
  try {
    s.finalize();
  } catch (const Error& e) {
    fail(where + ": " + e.what());
  }
  return s;
}

// ---- parameters -------------------------------------------------------------------------------

std::vector<float> params_from_hf(const std::vector<ParamInfo>& table, const HfTensors& tensors,
                                  const std::string& where) {
  std::vector<float> p(static_cast<size_t>(buffer_size(table)));
  std::set<std::string> used;
  for (const ParamInfo& info : table) {
    auto it = tensors.find(info.name);
    if (it == tensors.end())
      fail(where + ": missing tensor '" + info.name + "' (the config expects " +
           shape_str(info.shape) + ")");
    const HfTensor& t = it->second;
    if (t.shape != info.shape)
      fail(where + ": tensor '" + info.name + "' has shape " + shape_str(t.shape) +
           ", the config expects " + shape_str(info.shape));
    if (t.data.size() != static_cast<size_t>(info.numel))
      fail(where + ": tensor '" + info.name + "' is " + t.dtype + ", expected a float dtype");
    std::copy(t.data.begin(), t.data.end(), p.begin() + info.offset);
    used.insert(info.name);
  }
  for (const auto& [name, t] : tensors)
    if (!used.count(name) && name.rfind("mtp.", 0) != 0)
      fail(where + ": unexpected tensor '" + name + "' " + shape_str(t.shape) +
           " (not in the model the config describes)");
  return p;
}

HfTensors params_to_hf(const std::vector<ParamInfo>& table, const std::vector<float>& params) {
  HfTensors out;
  for (const ParamInfo& info : table) {
    HfTensor t;
    t.shape = info.shape;
    t.data.assign(params.begin() + info.offset, params.begin() + info.offset + info.numel);
    out.emplace(info.name, std::move(t));
  }
  return out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// Replaces the suffix `from` of `name` by `to` (name must end with from).
std::string swap_suffix(const std::string& name, const std::string& from, const std::string& to) {
  return name.substr(0, name.size() - from.size()) + to;
}

}  // namespace

HfTensors hub_to_module_names(HfTensors in, const std::string& where) {
  HfTensors out;
  std::map<std::string, std::map<char, HfTensor>> conv;  // layer prefix -> q/k/v parts
  for (auto& [name, t] : in) {
    std::string n = name;
    if (ends_with(n, ".attention_layer_norm.weight"))
      n = swap_suffix(n, "attention_layer_norm.weight", "input_layernorm.weight");
    else if (ends_with(n, ".feedforward_layer_norm.weight"))
      n = swap_suffix(n, "feedforward_layer_norm.weight", "post_attention_layernorm.weight");
    bool part = false;
    for (char c : {'q', 'k', 'v'}) {
      const std::string sfx = std::string(".") + c + "_conv1d.weight";
      if (ends_with(n, sfx)) {
        conv[n.substr(0, n.size() - sfx.size())][c] = std::move(t);
        part = true;
      }
    }
    if (part) continue;
    if (out.count(n)) fail(where + ": tensor '" + n + "' appears under both of its names");
    out.emplace(n, std::move(t));
  }
  // [Cq, 1, K] | [Ck, 1, K] | [Cv, 1, K] -> [Cq + Ck + Cv, 1, K]: row-major, so concatenation
  // along dim 0 appends the data.
  for (auto& [prefix, parts] : conv) {
    const std::string name = prefix + ".conv1d.weight";
    HfTensor cat;
    for (char c : {'q', 'k', 'v'}) {
      auto it = parts.find(c);
      if (it == parts.end())
        fail(where + ": tensor '" + prefix + "." + c +
             "_conv1d.weight' is missing (the q, k and "
             "v convolutions come together)");
      const HfTensor& t = it->second;
      if (t.shape.size() != 3 || (c != 'q' && t.shape[2] != cat.shape[2]))
        fail(where + ": tensor '" + prefix + "." + c + "_conv1d.weight' has shape " +
             shape_str(t.shape) + ", expected [channels, 1, K] like its q/k/v siblings");
      if (c == 'q') cat.shape = {0, t.shape[1], t.shape[2]};
      cat.shape[0] += t.shape[0];
      cat.data.insert(cat.data.end(), t.data.begin(), t.data.end());
    }
    if (out.count(name)) fail(where + ": tensor '" + name + "' appears under both of its names");
    out.emplace(name, std::move(cat));
  }
  return out;
}

HfTensors module_to_hub_names(HfTensors in, const ModelSpec& spec) {
  const int64_t qk = spec.n_heads * spec.gdn_key_dim, v = spec.n_heads * spec.gdn_value_dim;
  HfTensors out;
  for (auto& [name, t] : in) {
    if (ends_with(name, ".input_layernorm.weight")) {
      out.emplace(swap_suffix(name, "input_layernorm.weight", "attention_layer_norm.weight"),
                  std::move(t));
    } else if (ends_with(name, ".post_attention_layernorm.weight")) {
      out.emplace(
          swap_suffix(name, "post_attention_layernorm.weight", "feedforward_layer_norm.weight"),
          std::move(t));
    } else if (ends_with(name, ".conv1d.weight")) {
      SL_ASSERT(t.shape.size() == 3 && t.shape[0] == 2 * qk + v);
      const int64_t K = t.shape[2];
      int64_t row = 0;
      for (auto [c, rows] : {std::pair{'q', qk}, {'k', qk}, {'v', v}}) {
        HfTensor part;
        part.shape = {rows, 1, K};
        part.data.assign(t.data.begin() + row * K, t.data.begin() + (row + rows) * K);
        out.emplace(swap_suffix(name, "conv1d.weight", std::string(1, c) + "_conv1d.weight"),
                    std::move(part));
        row += rows;
      }
    } else {
      out.emplace(name, std::move(t));
    }
  }
  return out;
}

void save_hf_dir(const std::string& dir, const ModelSpec& spec, const std::vector<float>& params,
                 int64_t max_position_embeddings, bool hub_names) {
  ModelSpec s = spec;
  s.finalize();
  const std::string cfg = hf_config_json(s, max_position_embeddings);  // validates first
  const auto table = build_param_table(s);
  if (static_cast<int64_t>(params.size()) != buffer_size(table))
    fail("export: " + std::to_string(params.size()) + " parameter buffer elements for a model of " +
         std::to_string(buffer_size(table)));
  make_dirs(dir);
  HfTensors t = params_to_hf(table, params);
  if (hub_names && s.n_gdn_layers() > 0) t = module_to_hub_names(std::move(t), s);
  write_safetensors(dir + "/model.safetensors", t);
  atomic_write_file(dir + "/config.json", cfg);
}

std::vector<float> load_hf_params(const std::string& dir, const ModelSpec& spec) {
  ModelSpec s = spec;
  s.finalize();
  const std::string st = dir + "/model.safetensors";
  if (!path_exists(st))
    fail("HF checkpoint '" + dir + "': no model.safetensors" +
         (path_exists(dir + "/model.safetensors.index.json")
              ? " (sharded checkpoints are not supported)"
              : ""));
  std::vector<float> p =
      params_from_hf(build_param_table(s), hub_to_module_names(read_safetensors(st), st), st);
  const std::string cj = dir + "/config.json";
  if (path_exists(cj)) {
    const ModelSpec h = spec_from_hf_config(read_file(cj), cj);
    auto differ = [&](const std::string& key, const std::string& theirs, const std::string& ours) {
      fail(cj + ": " + key + " is " + theirs + ", the run config has " + ours);
    };
    auto num = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v);
      return std::string(buf);
    };
    if (h.pattern != s.pattern) differ("the layer pattern", h.pattern, s.pattern);
    if (h.rope_theta != s.rope_theta) differ("rope_theta", num(h.rope_theta), num(s.rope_theta));
    if (h.norm_eps != s.norm_eps) differ("rms_norm_eps", num(h.norm_eps), num(s.norm_eps));
    if (h.n_heads != s.n_heads)
      differ("num_attention_heads", std::to_string(h.n_heads), std::to_string(s.n_heads));
    if (s.n_gdn_layers() > 0 && h.allow_neg_eigval != s.allow_neg_eigval)
      differ("linear_allow_neg_eigval", h.allow_neg_eigval ? "true" : "false",
             s.allow_neg_eigval ? "true" : "false");
  }
  return p;
}

}  // namespace sl
