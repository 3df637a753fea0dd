// `scalinglab export RUN --format hf --out DIR [--names module|hub] [--with-logits]`
// The latest checkpoint of a run as a HuggingFace model directory: DIR/model.safetensors (float32)
// and DIR/config.json (Olmo3ForCausalLM or OlmoHybridForCausalLM), which
// AutoModelForCausalLM.from_pretrained(DIR) loads. --with-logits also writes
// DIR/scalinglab_logits.safetensors: input_ids (I64 [2, T], T = min(seq_len, 128)) and our CPU
// fp32 logits (F32 [2, T, V]) for a fixed input, so tests/reference/check_export.py can compare
// transformers' logits with ours.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "model/hf_io.h"
#include "model/model.h"
#include "runlog/checkpoint.h"
#include "train/config.h"

namespace sl::cli {
namespace {

// Parameters in table order from RUN/ckpt/state.h5 (arrays "param:<HF name>", flat float32).
// Flat arrays carry no shape, so a mismatch is reported as the config's shape and both sizes.
std::vector<float> checkpoint_params(const Checkpoint& c, const std::vector<ParamInfo>& table) {
  std::vector<float> p(static_cast<size_t>(buffer_size(table)));
  for (const ParamInfo& info : table) {
    auto it = c.arrays.find("param:" + info.name);
    if (it == c.arrays.end())
      fail("checkpoint " + c.source + ": missing tensor '" + info.name + "' (the config expects " +
           shape_str(info.shape) + ")");
    if (static_cast<int64_t>(it->second.size()) != info.numel)
      fail("checkpoint " + c.source + ": tensor '" + info.name + "' has shape [" +
           std::to_string(it->second.size()) + "] (flat), the config expects " +
           shape_str(info.shape) + " = " + std::to_string(info.numel) + " elements");
    std::copy(it->second.begin(), it->second.end(), p.begin() + info.offset);
  }
  for (const auto& [name, a] : c.arrays)
    if (name.rfind("param:", 0) == 0) {
      bool known = false;
      for (const ParamInfo& info : table) known = known || name == "param:" + info.name;
      if (!known)
        fail("checkpoint " + c.source + ": unexpected tensor '" + name.substr(6) + "' [" +
             std::to_string(a.size()) + "] (not in the model the config describes)");
    }
  return p;
}

// Logits of a fixed input: 2 sequences of min(seq_len, 128) tokens drawn from Rng(20240611)
// (longer than 64 when the run allows, so the GDN crosses a chunk boundary).
void write_reference_logits(const std::string& path, const ModelSpec& spec, int64_t seq_len,
                            const std::vector<float>& params) {
  const int64_t B = 2, T = std::min<int64_t>(seq_len, 128), V = spec.vocab_size;
  auto be = make_backend("cpu");
  Model model(spec, *be, B, T);
  model.set_params(params);
  std::vector<int32_t> ids(B * T);
  Rng rng(20240611, 0);
  for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  model.forward(ids.data(), nullptr);
  HfTensors t;
  t["input_ids"].dtype = "I64";
  t["input_ids"].shape = {B, T};
  t["input_ids"].ints.assign(ids.begin(), ids.end());
  t["logits"].shape = {B, T, V};
  t["logits"].data = model.logits_host();
  write_safetensors(path, t, {{"producer", "scalinglab export --with-logits (CPU fp32)"}});
}

}  // namespace

void register_export(CLI::App& app) {
  struct Args {
    std::string run, format, out, names = "module";
    bool with_logits = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("export", "Export a run's checkpoint (HuggingFace format)");
  cmd->add_option("RUN", a->run, "Run directory (config.toml, ckpt/state.h5)")->required();
  cmd->add_option("--format", a->format, "Output format: hf")->required();
  cmd->add_option("--out", a->out, "Output directory (created)")->required();
  cmd->add_option("--names", a->names,
                  "OlmoHybrid tensor names: module (as in model.state_dict()) or hub (the "
                  "released OLMo Hybrid checkpoints' layout); both load in transformers");
  cmd->add_flag("--with-logits", a->with_logits,
                "Also write scalinglab_logits.safetensors (our logits of a fixed input)");
  cmd->callback([a]() {
    if (a->format != "hf") fail("export --format '" + a->format + "': only 'hf' is supported");
    if (a->names != "module" && a->names != "hub")
      fail("export --names '" + a->names + "': expected module or hub");
    const std::string cfg_path = a->run + "/config.toml";
    if (!path_exists(cfg_path)) fail("export: '" + cfg_path + "' does not exist (not a run?)");
    TrainConfig cfg = load_config(cfg_path, {});
    cfg.model.finalize();
    const std::string ckpt_dir = a->run + "/ckpt";
    if (!checkpoint_exists(ckpt_dir))
      fail("export: '" + checkpoint_path(ckpt_dir) + "' does not exist (no checkpoint yet)");
    const Checkpoint c = read_checkpoint(ckpt_dir);
    const std::vector<float> params = checkpoint_params(c, build_param_table(cfg.model));
    save_hf_dir(a->out, cfg.model, params, cfg.seq_len, a->names == "hub");
    if (a->with_logits)
      write_reference_logits(a->out + "/scalinglab_logits.safetensors", cfg.model, cfg.seq_len,
                             params);
    std::printf("export: %s %s d%lld, step %lld -> %s (%s)\n",
                cfg.model.n_gdn_layers() ? "OlmoHybridForCausalLM" : "Olmo3ForCausalLM",
                cfg.model.pattern.c_str(), static_cast<long long>(cfg.model.d_model),
                static_cast<long long>(c.int_value("step")), a->out.c_str(),
                a->with_logits ? "model.safetensors, config.json, scalinglab_logits.safetensors"
                               : "model.safetensors, config.json");
  });
}

}  // namespace sl::cli
