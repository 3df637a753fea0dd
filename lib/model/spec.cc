#include "model/spec.h"

#include "core/error.h"

namespace sl {

int64_t ModelSpec::n_attention_layers() const {
  int64_t n = 0;
  for (char c : pattern) n += c == 'A';
  return n;
}
int64_t ModelSpec::n_gdn_layers() const { return n_layers() - n_attention_layers(); }

std::string hybrid_pattern(int64_t n_layers) {
  // OLMo-core's hybrid ladder: layer i (0-based) is attention iff (i + 1) % 4 == 0 or i == L - 1.
  // For L a multiple of 4 this is "GGGA" repeated; otherwise the last layer is attention too
  // (L = 6: GGGAGA, L = 5: GGGAA), so the model always ends on an attention block.
  std::string p;
  for (int64_t i = 0; i < n_layers; ++i) p += (i % 4 == 3 || i == n_layers - 1) ? 'A' : 'G';
  return p;
}

std::string hf_default_hybrid_pattern(int64_t n_layers) {
  // OlmoHybridConfig without layer_types: layer i is attention iff (i + 1) % 4 == 0, and the last
  // layer when that leaves none (L < 4). Differs from hybrid_pattern() when L % 4 != 0.
  std::string p;
  for (int64_t i = 0; i < n_layers; ++i) p += (i % 4 == 3) ? 'A' : 'G';
  if (n_layers > 0 && p.find('A') == std::string::npos) p.back() = 'A';
  return p;
}

void ModelSpec::finalize() {
  if (pattern.empty()) fail("model.pattern: empty layer pattern");
  for (char c : pattern)
    if (c != 'A' && c != 'G') fail("model.pattern: '" + pattern + "' may only contain 'A' and 'G'");
  if (d_model <= 0) fail("model.d_model: must be positive");
  if (n_heads <= 0 || d_model % n_heads != 0)
    fail("model.n_heads: " + std::to_string(n_heads) + " must divide d_model " +
         std::to_string(d_model));
  if (head_dim() % 2 != 0) fail("model.n_heads: head dim d_model/n_heads must be even for RoPE");
  if (vocab_size <= 1) fail("model.vocab_size: must be > 1");
  if (d_mlp == 0) d_mlp = ((8 * d_model / 3 + 127) / 128) * 128;
  if (gdn_key_dim == 0) {
    int64_t raw = (3 * d_model / 4 + n_heads - 1) / n_heads;  // ceil(0.75 d / H)
    gdn_key_dim = ((raw + 15) / 16) * 16;
  }
  if (gdn_value_dim == 0) gdn_value_dim = 2 * gdn_key_dim;
  if (d_mlp <= 0 || gdn_key_dim <= 0 || gdn_value_dim <= 0 || conv_kernel <= 0)
    fail("model: d_mlp, gdn_key_dim, gdn_value_dim and conv_kernel must be positive");
}

double ModelSpec::flops_per_token(int64_t seq_len) const {
  auto table = build_param_table(*this);
  double n_nonemb = static_cast<double>(count_params(table, false));
  double d = static_cast<double>(d_model), V = static_cast<double>(vocab_size);
  return 6.0 * (n_nonemb + V * d) + 6.0 * n_attention_layers() * seq_len * d +
         18.0 * n_gdn_layers() * n_heads * gdn_key_dim * gdn_value_dim;
}

const std::vector<LadderSize>& ladder() {
  static const std::vector<LadderSize> sizes = {
      {"L0", 128, 4, 2}, {"L1", 192, 6, 3},  {"L2", 256, 8, 4},
      {"L3", 384, 8, 6}, {"L4", 512, 12, 8}, {"L5", 768, 12, 12},
      {"S1", 256, 4, 4}, {"S3", 512, 8, 8},  {"S4", 768, 12, 12}};
  return sizes;
}

const LadderSize* find_ladder(const std::string& name) {
  for (const auto& s : ladder())
    if (name == s.name) return &s;
  return nullptr;
}

std::vector<ParamInfo> build_param_table(const ModelSpec& s) {
  std::vector<ParamInfo> t;
  int64_t off = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamKind kind) {
    int64_t n = 1;
    for (int64_t x : shape) n *= x;
    t.push_back({std::move(name), std::move(shape), off, n, kind});
    off += n;
  };
  const int64_t d = s.d_model, H = s.n_heads, m = s.d_mlp, dk = s.gdn_key_dim, dv = s.gdn_value_dim,
                V = s.vocab_size;
  add("model.embed_tokens.weight", {V, d}, ParamKind::embedding);
  for (int64_t i = 0; i < s.n_layers(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (s.pattern[i] == 'A') {
      add(p + "self_attn.q_proj.weight", {d, d}, ParamKind::linear);
      add(p + "self_attn.k_proj.weight", {d, d}, ParamKind::linear);
      add(p + "self_attn.v_proj.weight", {d, d}, ParamKind::linear);
      add(p + "self_attn.q_norm.weight", {d}, ParamKind::norm);
      add(p + "self_attn.k_norm.weight", {d}, ParamKind::norm);
      add(p + "self_attn.o_proj.weight", {d, d}, ParamKind::linear);
      add(p + "post_attention_layernorm.weight", {d}, ParamKind::norm);
    } else {
      add(p + "input_layernorm.weight", {d}, ParamKind::norm);
      add(p + "linear_attn.q_proj.weight", {H * dk, d}, ParamKind::linear);
      add(p + "linear_attn.k_proj.weight", {H * dk, d}, ParamKind::linear);
      add(p + "linear_attn.v_proj.weight", {H * dv, d}, ParamKind::linear);
      add(p + "linear_attn.b_proj.weight", {H, d}, ParamKind::linear);
      add(p + "linear_attn.a_proj.weight", {H, d}, ParamKind::linear);
      add(p + "linear_attn.g_proj.weight", {H * dv, d}, ParamKind::linear);
      add(p + "linear_attn.conv1d.weight", {2 * H * dk + H * dv, 1, s.conv_kernel},
          ParamKind::conv);
      add(p + "linear_attn.A_log", {H}, ParamKind::a_log);
      add(p + "linear_attn.dt_bias", {H}, ParamKind::dt_bias);
      add(p + "linear_attn.o_norm.weight", {dv}, ParamKind::norm);
      add(p + "linear_attn.o_proj.weight", {d, H * dv}, ParamKind::linear);
      add(p + "post_attention_layernorm.weight", {d}, ParamKind::norm);
    }
    add(p + "mlp.gate_proj.weight", {m, d}, ParamKind::linear);
    add(p + "mlp.up_proj.weight", {m, d}, ParamKind::linear);
    add(p + "mlp.down_proj.weight", {d, m}, ParamKind::linear);
    if (s.pattern[i] == 'A') add(p + "post_feedforward_layernorm.weight", {d}, ParamKind::norm);
  }
  add("model.norm.weight", {d}, ParamKind::norm);
  add("lm_head.weight", {V, d}, ParamKind::embedding);
  return t;
}

int64_t count_params(const std::vector<ParamInfo>& table, bool include_embedding) {
  int64_t n = 0;
  for (const auto& p : table)
    if (include_embedding || !p.embedding()) n += p.numel;
  return n;
}

}  // namespace sl
