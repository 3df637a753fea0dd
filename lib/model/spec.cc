#include "model/spec.h"

#include "core/error.h"
#include "model/blocks/block.h"

namespace sl {

std::string hybrid_pattern(int64_t n_layers) {
  // OLMo-core's hybrid ladder: layer i (0-based) is attention iff (i + 1) % 4 == 0 or i == L - 1.
  // For L a multiple of 4 this is "GGGA" repeated; otherwise the last layer is attention too
  // (L = 6: GGGAGA, L = 5: GGGAA), so the model always ends on an attention block.
  const char A = block_letter(BlockKind::attention), G = block_letter(BlockKind::gdn);
  std::string p;
  for (int64_t i = 0; i < n_layers; ++i) p += (i % 4 == 3 || i == n_layers - 1) ? A : G;
  return p;
}

std::string hf_default_hybrid_pattern(int64_t n_layers) {
  // OlmoHybridConfig without layer_types: layer i is attention iff (i + 1) % 4 == 0, and the last
  // layer when that leaves none (L < 4). Differs from hybrid_pattern() when L % 4 != 0.
  const char A = block_letter(BlockKind::attention), G = block_letter(BlockKind::gdn);
  std::string p;
  for (int64_t i = 0; i < n_layers; ++i) p += (i % 4 == 3) ? A : G;
  if (n_layers > 0 && p.find(A) == std::string::npos) p.back() = A;
  return p;
}

void ModelSpec::finalize() {
  if (pattern.empty()) fail("model.pattern: empty layer pattern");
  block_kinds(pattern);  // fails on an unknown letter
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
  // Every term is an integer below 2^53, so the per-block sum is exact in any order.
  double blocks = 0;
  for (BlockKind k : block_kinds(pattern)) blocks += block_type(k).flops_per_token(*this, seq_len);
  return 6.0 * (n_nonemb + V * d) + blocks;
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

void ParamRows::add(const std::string& name, std::vector<int64_t> shape, ParamKind kind) {
  offset = (offset + kParamAlign - 1) / kParamAlign * kParamAlign;
  add_fused(name, std::move(shape), kind);
}

void ParamRows::add_fused(const std::string& name, std::vector<int64_t> shape, ParamKind kind) {
  int64_t n = 1;
  for (int64_t x : shape) n *= x;
  table.push_back({prefix + name, std::move(shape), offset, n, kind});
  offset += n;
}

std::vector<ParamInfo> build_param_table(const ModelSpec& s) {
  ParamRows rows;
  const int64_t d = s.d_model, V = s.vocab_size;
  rows.add("model.embed_tokens.weight", {V, d}, ParamKind::embedding);
  for (int64_t i = 0; i < s.n_layers(); ++i) {
    rows.prefix = "model.layers." + std::to_string(i) + ".";
    block_type(s.kind(i)).param_rows(s, rows);
  }
  rows.prefix.clear();
  rows.add("model.norm.weight", {d}, ParamKind::norm);
  rows.add("lm_head.weight", {V, d}, ParamKind::embedding);
  return std::move(rows.table);
}

int64_t buffer_size(const std::vector<ParamInfo>& table) {
  return table.empty() ? 0 : table.back().offset + table.back().numel;
}

int64_t count_params(const std::vector<ParamInfo>& table, bool include_embedding) {
  int64_t n = 0;
  for (const auto& p : table)
    if (include_embedding || !p.embedding()) n += p.numel;
  return n;
}

}  // namespace sl
