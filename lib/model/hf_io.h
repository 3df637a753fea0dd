// HuggingFace interchange: safetensors files, the config.json of Olmo3ForCausalLM /
// OlmoHybridForCausalLM (transformers 5.17), and the mapping between HF tensors and our parameter
// table. An exported directory loads with AutoModelForCausalLM.from_pretrained(DIR); an HF
// directory of either architecture initialises a run (`scalinglab train --init-from DIR`).
//
// safetensors layout (https://github.com/huggingface/safetensors):
//   [8 bytes: N, little-endian uint64][N bytes: JSON header][data bytes]
//   header = {"<name>": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
//             "__metadata__": {"format": "pt"}}
//   offsets are relative to the start of the data bytes; tensors tile the data with no gaps;
//   values are little-endian, row-major.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/spec.h"

namespace sl {

// One named host tensor of a safetensors file.
struct HfTensor {
  std::string dtype = "F32";   // on disk: F32 F64 F16 BF16 (-> data) or I32 I64 (-> ints)
  std::vector<int64_t> shape;  // row-major
  std::vector<float> data;     // floating-point dtypes, converted to float
  std::vector<int64_t> ints;   // integer dtypes
  int64_t numel() const;
};
using HfTensors = std::map<std::string, HfTensor>;

// "[256, 32]"
std::string shape_str(const std::vector<int64_t>& shape);

// Reads every tensor; F64/F16/BF16 are converted to float. Throws sl::Error naming the file (and
// the tensor) on a malformed file or an unsupported dtype.
HfTensors read_safetensors(const std::string& path);
// Writes atomically (tmp + fsync + rename). Float tensors are stored as F32 (dtype "F32") and
// integer ones as I64 (dtype "I64"); the metadata gets "format": "pt", which transformers requires.
void write_safetensors(const std::string& path, const HfTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// config.json for `spec`: Olmo3ForCausalLM when every layer is attention, OlmoHybridForCausalLM
// when there are both kinds (HF's class refuses a model without an attention layer). pad and eos
// ids are 0 (the HF defaults point outside a small vocabulary), dtype float32. Throws sl::Error
// when HF cannot express the spec (GDN-only pattern, eps values HF hard-codes differently).
std::string hf_config_json(const ModelSpec& spec, int64_t max_position_embeddings);
// The inverse: the ModelSpec of an HF config.json (model_type olmo3 or olmo_hybrid). Throws
// sl::Error "<where>: key '<key>' ..." for anything our model cannot represent (sliding-window
// layers, grouped-query attention, biases, tied embeddings, NoPE, non-default RoPE, ...).
ModelSpec spec_from_hf_config(const std::string& json_text, const std::string& where);

// HF tensors <-> host parameters in table order.
// params_from_hf: every table entry must be present with its exact shape and nothing else may be
// (HF's ignored multi-token-prediction heads "mtp.*" excepted). Throws on the first mismatch, in
// table order, e.g. "<where>: tensor 'model.layers.0.mlp.up_proj.weight' has shape [128, 32],
// the config expects [256, 32]" or "<where>: missing tensor '...' (the config expects [32])".
std::vector<float> params_from_hf(const std::vector<ParamInfo>& table, const HfTensors& tensors,
                                  const std::string& where);
HfTensors params_to_hf(const std::vector<ParamInfo>& table, const std::vector<float>& params);

// Two spellings of OlmoHybrid tensor names. "module" names are the parameters of the transformers
// modules (model.state_dict(), our table, the fixtures). The "hub" layout is that of the released
// OLMo Hybrid checkpoints, which transformers 5.17 converts on load and writes on save_pretrained:
//   layers.i.input_layernorm           <-> layers.i.attention_layer_norm
//   layers.i.post_attention_layernorm  <-> layers.i.feedforward_layer_norm   (A and G layers)
//   linear_attn.conv1d [2Hk+Hv, 1, K]  <-> linear_attn.{q,k,v}_conv1d [Hk | Hk | Hv, 1, K]
// Note: HF's save_pretrained splits conv1d into three equal thirds instead (its own loader
// concatenates them back, so only the concatenation is meaningful); we read either.
HfTensors hub_to_module_names(HfTensors tensors, const std::string& where);
HfTensors module_to_hub_names(HfTensors tensors, const ModelSpec& spec);

// DIR/model.safetensors + DIR/config.json (DIR is created). hub_names: OlmoHybrid tensors in the
// hub layout above (Olmo3 has one spelling).
void save_hf_dir(const std::string& dir, const ModelSpec& spec, const std::vector<float>& params,
                 int64_t max_position_embeddings, bool hub_names = false);
// Parameters for `spec` from DIR/model.safetensors (either spelling). The tensors are checked
// first (names and shapes, as params_from_hf, in module names); then, if DIR/config.json exists,
// its model settings must equal spec's (the layer pattern, rope_theta, rms_norm_eps, ...), else
// sl::Error naming the key.
std::vector<float> load_hf_params(const std::string& dir, const ModelSpec& spec);

}  // namespace sl
