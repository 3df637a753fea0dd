// ModelSpec: the shape of one model of the docs/MODEL.md family (OLMo 3 dense, OLMo Hybrid, or any
// pattern of `A` and `G` blocks), the ladder presets, and the parameter table with HF names.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/block_kind.h"

namespace sl {

struct ModelSpec {
  std::string arch = "hybrid";  // "dense" | "hybrid" | "custom" (explicit pattern)
  std::string pattern;          // one letter per layer (model/block_kind.h): A attention, G GDN
  int64_t d_model = 128;
  int64_t n_heads = 2;  // attention heads = GDN heads (docs/MODEL.md "Notation")
  int64_t vocab_size = 256;
  int64_t d_mlp = 0;          // SwiGLU hidden size m; 0 -> ceil(8d/3 / 128) * 128
  int64_t gdn_key_dim = 0;    // k_h; 0 -> round_up(0.75 d / H, 16)
  int64_t gdn_value_dim = 0;  // v_h; 0 -> 2 k_h
  int64_t conv_kernel = 4;    // GDN causal depthwise conv width K
  double rope_theta = 5e5;
  double norm_eps = 1e-6;        // RMSNorm (blocks, QK-norm, final)
  double gdn_norm_eps = 1e-5;    // gated RMSNorm of the GDN output
  double l2norm_eps = 1e-6;      // GDN q/k L2 norm
  bool allow_neg_eigval = true;  // beta = 2 sigmoid(.) so the transition can have eigenvalue < 0

  int64_t n_layers() const { return static_cast<int64_t>(pattern.size()); }
  int64_t head_dim() const { return d_model / n_heads; }
  BlockKind kind(int64_t layer) const { return block_kind(pattern, static_cast<size_t>(layer)); }
  int64_t n_attention_layers() const { return count_blocks(pattern, BlockKind::attention); }
  int64_t n_gdn_layers() const { return count_blocks(pattern, BlockKind::gdn); }
  // Fill the derived defaults (d_mlp, k_h, v_h) and validate; throws sl::Error naming the field.
  void finalize();
  // Per-token training FLOPs (forward + backward), docs/MODEL.md "Counting":
  //   6 (N_nonemb + V d) + the sum over blocks of their BlockType::flops_per_token
  // (6 T d per attention block; 18 H k_h v_h per GDN block, the recurrence itself: forward
  // decay+S^T k, rank-1 update and S^T q are 2 k_h v_h FLOPs each = 6 k_h v_h per head; backward
  // twice that).
  double flops_per_token(int64_t seq_len) const;
};

// The pattern of `arch = "hybrid"`, OLMo-core's hybrid ladder rule: every fourth layer and the
// last layer are attention, the rest Gated DeltaNet ("GGGA" repeated when n_layers % 4 == 0;
// 6 layers: "GGGAGA", 5 layers: "GGGAA").
std::string hybrid_pattern(int64_t n_layers);
// transformers' OlmoHybridConfig default when a config.json has no layer_types: every fourth
// layer attention, the last one if that gives none (6 layers: "GGGAGG"). Only for reading HF
// configs; our exports always write layer_types.
std::string hf_default_hybrid_pattern(int64_t n_layers);

// Ladder preset (docs/MODEL.md "Ladder"): L0..L5 and the peer benchmark sizes S1, S3, S4.
struct LadderSize {
  const char* name;
  int64_t d_model, n_layers, n_heads;
};
const std::vector<LadderSize>& ladder();
const LadderSize* find_ladder(const std::string& name);

// What a parameter is for the initialiser and the optimiser.
enum class ParamKind : uint8_t {
  linear,     // Normal(0, 0.02), weight decay
  embedding,  // Normal(0, 0.02), weight decay
  norm,       // ones, no decay
  conv,       // Kaiming-uniform bound 1/sqrt(K) (torch Conv1d default), weight decay
  a_log,      // log(Uniform(1e-4... 16)), no decay
  dt_bias,    // inverse softplus of dt ~ logUniform(1e-3, 0.1), no decay
};

struct ParamInfo {
  std::string name;            // HF transformers name
  std::vector<int64_t> shape;  // HF shape
  int64_t offset = 0;          // in elements, in the flat parameter buffer
  int64_t numel = 0;
  ParamKind kind = ParamKind::linear;
  bool decay() const {
    return kind == ParamKind::linear || kind == ParamKind::embedding || kind == ParamKind::conv;
  }
  bool embedding() const { return kind == ParamKind::embedding; }
};

// The parameter table while it is built: build_param_table adds the embedding, then each block's
// rows under its layer's prefix (BlockType::param_rows), then the tail.
//
// add() starts a row on a multiple of kParamAlign elements (16 bytes in bf16, 32 in fp32): the
// GEMMs read weights straight from the flat buffer, and cuBLASLt picks its kernels by the
// operands' alignment, so one short row (GDN's A_log and dt_bias are [H]: 6 elements at L3) would
// otherwise leave every later weight on a 4- or 8-byte boundary and its GEMMs on slower kernels.
// The gaps are zeros that no parameter owns (see buffer_size). add_fused() appends a row right
// after the previous one: the rows of a fused projection must be one contiguous [sum rows, d].
struct ParamRows {
  static constexpr int64_t kParamAlign = 8;
  std::vector<ParamInfo> table;
  int64_t offset = 0;  // elements so far, gaps included
  std::string prefix;  // "model.layers.{i}." while block i adds its rows
  void add(const std::string& name, std::vector<int64_t> shape, ParamKind kind);
  void add_fused(const std::string& name, std::vector<int64_t> shape, ParamKind kind);
};

// The parameter table in buffer order. Within a block, projections that read the same input sit
// next to each other so the model runs them as one fused GEMM:
//   A: q,k,v -> [3d, d];   G: q,k,v,b,a,g -> [2 H k_h + 2 H v_h + 2 H, d];   MLP: gate,up -> [2m,
//   d]
std::vector<ParamInfo> build_param_table(const ModelSpec& spec);
int64_t count_params(const std::vector<ParamInfo>& table, bool include_embedding);
// Elements of the flat parameter (and gradient, moment) buffer: the parameters and the alignment
// gaps between them; >= count_params(table, true).
int64_t buffer_size(const std::vector<ParamInfo>& table);

}  // namespace sl
