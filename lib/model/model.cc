#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/blocks/block.h"

namespace sl {

Tensor Model::act(int64_t n) { return env_->act(n); }
Tensor Model::stat(int64_t n) { return env_->stat(n); }

int64_t logits_chunk_rows(int64_t BT, int64_t V) {
  if (BT * V <= kLogitsChunkElems) return BT;
  const int64_t chunks = (BT * V + kLogitsChunkElems - 1) / kLogitsChunkElems;
  // At least 64 rows, at most the batch's (the buffer never exceeds [B*T, V]).
  return std::min(BT, std::max<int64_t>(64, ((BT + chunks - 1) / chunks + 63) / 64 * 64));
}

Model::Model(const ModelSpec& spec, Backend& backend, int64_t B, int64_t T, int64_t chunk_rows)
    : spec_(spec), be_(backend), B_(B), T_(T) {
  spec_.finalize();
  chunk_rows_ =
      std::min(B * T, chunk_rows > 0 ? chunk_rows : logits_chunk_rows(B * T, spec_.vocab_size));
  table_ = build_param_table(spec_);
  layer_params_.assign(static_cast<size_t>(spec_.n_layers()), {});
  for (size_t i = 0; i < table_.size(); ++i) {
    const std::string& n = table_[i].name;
    if (n.rfind("model.layers.", 0) == 0)
      layer_params_[std::stoul(n.substr(13))].push_back(static_cast<int>(i));
  }
  n_params_ = count_params(table_, true);
  buffer_n_ = sl::buffer_size(table_);
  params_ = be_.alloc(buffer_n_, be_.param_dtype());
  grads_ = be_.alloc(buffer_n_, be_.param_dtype());
  params_c_ =
      be_.act_dtype() == be_.param_dtype() ? params_ : be_.alloc(buffer_n_, be_.act_dtype());

  env_ = std::make_unique<BlockEnv>(spec_, be_, B, T, arena_);
  const int64_t BT = B * T, d = spec_.d_model, n_layers = spec_.n_layers();
  for (int64_t l = 0; l < n_layers; ++l)
    blocks_.push_back(
        block_type(spec_.kind(l))
            .make(*env_, l, ParamViews(table_, l, params_c_), ParamViews(table_, l, grads_)));
  // The residual stream. A block's input is read in the backward only where the block says so
  // (a GDN block's input_layernorm; with fp32 activations an attention block's GEMM, which reads
  // it as its input copy); the final output by the final norm. Every other res_[l] is dead once
  // block l has read it, so those take turns in two buffers (res_[l] and res_[l + 1] never share
  // one).
  res_.resize(static_cast<size_t>(n_layers + 1));
  Tensor turn[2];
  for (int64_t l = 0; l <= n_layers; ++l) {
    if (l == n_layers || blocks_[l]->reads_input_in_backward()) {
      res_[l] = stat(BT * d);
      continue;
    }
    Tensor& t = turn[l % 2];
    if (!t) t = stat(BT * d);
    res_[l] = t;
  }
  int64_t scratch = 0, stat_scratch = 0;
  for (int64_t l = 0; l < n_layers; ++l) {
    blocks_[l]->allocate(*env_, res_[l]);
    scratch = std::max(scratch, blocks_[l]->scratch_size());
    stat_scratch = std::max(stat_scratch, blocks_[l]->stat_scratch_size());
  }
  // The input copies (bf16 activations): block l reads its act-dtype input copy from where block
  // l - 1's last op wrote it beside the fp32 residual, when both sides can (two attention blocks).
  auto copied = [&](int64_t l) {
    return env_->split_residual() && l > 0 && l < n_layers && blocks_[l]->input_copy() &&
           blocks_[l - 1]->writes_output_copy();
  };
  for (int64_t l = 0; l < n_layers; ++l)
    blocks_[l]->link(copied(l), copied(l + 1) ? blocks_[l + 1]->input_copy() : Tensor{});
  xf_ = act(BT * d);
  xf_rstd_ = stat(BT);
  logits_ = act(chunk_rows_ * spec_.vocab_size);
  losses_ = stat(BT);
  if (stat_scratch > 0) env_->stat_scratch = stat(stat_scratch);
  dres_ = stat(BT * d);
  dxf_ = stat(BT * d);
  env_->gcopy = env_->split_residual() ? act(BT * d) : Tensor{};
  // One scratch region for the per-layer activation gradients, which each block carves up in its
  // backward; sized for the largest. (The residual gradient is dres_, fp32.)
  env_->scratch = act(scratch);
  batch_ = be_.alloc(embedding_index_size(BT) + BT, DType::i32);
  step_ = be_.alloc(kStepSlots + 1, DType::f64);
  arena_.push_back(batch_);
  arena_.push_back(step_);
  for (Stage& st : stage_) {
    st.batch = static_cast<int32_t*>(be_.alloc_host(static_cast<size_t>(batch_.n) * 4));
    st.scalars = static_cast<double*>(be_.alloc_host(3 * sizeof(double)));
  }
  results_ = static_cast<double*>(be_.alloc_host(2 * kResultSlots * sizeof(double)));
}

// Mirrors the constructor above (the blocks' part: BlockType::memory beside each allocate()).
ModelMemory model_memory(const ModelSpec& spec_in, int64_t B, int64_t T, DType act, DType param) {
  ModelSpec spec = spec_in;
  spec.finalize();
  const int64_t BT = B * T, d = spec.d_model, V = spec.vocab_size, L = spec.n_layers();
  const DType stat = act == DType::f64 ? DType::f64 : DType::f32;  // BlockEnv's stat dtype
  const bool split = act != stat;
  auto size = [](DType t) { return static_cast<int64_t>(dtype_size(t)); };
  const int64_t n = buffer_size(build_param_table(spec));
  ModelMemory m;
  m.params = n * (2 * size(param) + (act == param ? 0 : size(act)));
  int64_t acts = 0, stats = 0, scratch = 0, stat_scratch = 0;
  std::map<std::string, int64_t> shared;
  std::vector<bool> reads_input;
  for (int64_t l = 0; l < L; ++l) {
    const BlockMemory b = block_type(spec.kind(l)).memory(spec, B, T, split);
    acts += b.act;
    stats += b.stat;
    shared.insert(b.shared_stat.begin(), b.shared_stat.end());
    scratch = std::max(scratch, b.scratch);
    stat_scratch = std::max(stat_scratch, b.stat_scratch);
    reads_input.push_back(b.reads_input_in_backward);
  }
  for (const auto& kv : shared) stats += kv.second;
  // The residual stream: res_[L] and every input a block reads in its backward have their own
  // buffer; the others take turns in two (each allocated once it is first used).
  bool turn[2] = {false, false};
  for (int64_t l = 0; l <= L; ++l) {
    if (l == L || reads_input[l]) {
      stats += BT * d;
    } else if (!turn[l % 2]) {
      turn[l % 2] = true;
      stats += BT * d;
    }
  }
  // xf_, logits_, scratch, gcopy
  acts += BT * d + logits_chunk_rows(BT, V) * V + scratch + (split ? BT * d : 0);
  stats += BT + BT + stat_scratch + 2 * BT * d;  // xf_rstd_, losses_, dres_, dxf_
  m.activations = acts * size(act) + stats * size(stat) +
                  (embedding_index_size(BT) + BT) * size(DType::i32) +  // batch_
                  (kStepSlots + 1) * size(DType::f64);                  // step_
  return m;
}

Model::~Model() {
  be_.synchronize();  // no copy may still target the staging memory
  for (Stage& st : stage_) {
    be_.free_host(st.batch);
    be_.free_host(st.scalars);
  }
  be_.free_host(results_);
  for (Tensor t : arena_) be_.free(t);
  if (params_c_.data != params_.data) be_.free(params_c_);
  be_.free(params_);
  be_.free(grads_);
}

void Model::init(uint64_t seed) {
  std::vector<float> host(buffer_n_);  // the gaps stay zero
  for (size_t i = 0; i < table_.size(); ++i) {
    const ParamInfo& p = table_[i];
    // One stream per parameter: adding a layer does not change the others' initial values.
    Rng rng(seed, i);
    float* w = host.data() + p.offset;
    switch (p.kind) {
      case ParamKind::linear:
      case ParamKind::embedding:
        for (int64_t j = 0; j < p.numel; ++j) w[j] = static_cast<float>(0.02 * rng.normal());
        break;
      case ParamKind::norm:
        for (int64_t j = 0; j < p.numel; ++j) w[j] = 1.f;
        break;
      case ParamKind::conv: {
        // torch Conv1d default (kaiming_uniform_, a = sqrt(5)): bound = 1/sqrt(fan_in), fan_in = K.
        const double bound = 1.0 / std::sqrt(static_cast<double>(spec_.conv_kernel));
        for (int64_t j = 0; j < p.numel; ++j)
          w[j] = static_cast<float>(bound * (2.0 * rng.uniform() - 1.0));
        break;
      }
      case ParamKind::a_log:
        // A ~ Uniform(0, 16), kept away from 0 so log(A) is finite.
        for (int64_t j = 0; j < p.numel; ++j)
          w[j] = static_cast<float>(std::log(std::max(16.0 * rng.uniform(), 1e-4)));
        break;
      case ParamKind::dt_bias:
        // dt ~ logUniform(1e-3, 0.1), clamped >= 1e-4; dt_bias = softplus^{-1}(dt).
        for (int64_t j = 0; j < p.numel; ++j) {
          double dt = std::exp(std::log(1e-3) + rng.uniform() * (std::log(0.1) - std::log(1e-3)));
          dt = std::max(dt, 1e-4);
          w[j] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
        }
        break;
    }
  }
  set_params(host);
}

std::vector<float> Model::get_params() const {
  std::vector<float> host;
  get_params(host);
  return host;
}
void Model::get_params(std::vector<float>& host) const {
  host.resize(static_cast<size_t>(buffer_n_));
  be_.download(host.data(), params_);
}
void Model::set_params(const std::vector<float>& host) {
  SL_ASSERT(static_cast<int64_t>(host.size()) == buffer_n_);
  be_.upload(params_, host.data());
  sync_compute_params();
}
void Model::sync_compute_params() {
  if (params_c_.data != params_.data) be_.convert(params_c_, params_);
}
void Model::zero_grad() { be_.zero(grads_); }
std::vector<float> Model::logits_host() {
  const Dims D = dims_of(spec_);
  const int64_t BT = B_ * T_;
  const ParamInfo& head = table_.back();
  std::vector<float> out(static_cast<size_t>(BT * D.V));
  for (int64_t r0 = 0; r0 < BT; r0 += chunk_rows_) {
    const int64_t n = std::min(chunk_rows_, BT - r0);
    be_.matmul_forward(logits_, xf_.at(r0 * D.d, n * D.d), params_c_.at(head.offset, head.numel),
                       {.M = n, .K = D.d, .N = D.V, .ldx = D.d}, false);
    be_.download(out.data() + r0 * D.V, logits_.at(0, n * D.V));
  }
  return out;
}

void Model::backward() {
  if (!have_dlogits_) fail("backward: call forward() with targets and dloss != 0 first");
  const Dims D = dims_of(spec_);
  const int64_t BT = B_ * T_;
  const ParamInfo& fnorm = table_[table_.size() - 2];
  const ParamInfo& emb = table_.front();
  // Tail: logits = rms(x_L) W_head^T, whose backward ran chunk by chunk in run_forward (d xf_
  // written, the head's gradient accumulated). One residual gradient buffer, written here and
  // updated in place by every block.
  be_.rmsnorm_backward(dres_, grads_.at(fnorm.offset, fnorm.numel), dxf_, res_.back(),
                       params_c_.at(fnorm.offset, fnorm.numel), xf_rstd_,
                       {.R = BT, .C = D.d, .ldx = D.d}, false);
  grads_ready(table_.size() - 2, table_.size() - 1);
  for (int64_t l = spec_.n_layers() - 1; l >= 0; --l) {
    blocks_[l]->backward(res_[l], dres_);
    const std::vector<int>& ps = layer_params_[static_cast<size_t>(l)];
    grads_ready(static_cast<size_t>(*std::min_element(ps.begin(), ps.end())),
                static_cast<size_t>(*std::max_element(ps.begin(), ps.end())));
  }
  be_.embedding_backward(grads_.at(emb.offset, emb.numel), batch_, dres_, {.R = BT, .C = D.d});
  grads_ready(0, 0);
}

// The table is laid out in order (embedding, block 0..L-1, final norm, LM head) with each block's
// parameters adjacent, so parameters first..last span one contiguous gradient range.
void Model::grads_ready(size_t first, size_t last) {
  if (!grads_ready_) return;
  const int64_t begin = table_[first].offset, end = table_[last].offset + table_[last].numel;
  grads_ready_(grads_.at(begin, end - begin));
}

void Model::stage_batch(const int32_t* ids, const int32_t* targets, float dloss, double lr,
                        int64_t t) {
  const Dims D = dims_of(spec_);
  const int64_t BT = B_ * T_;
  Stage& st = stage_[next_stage_];
  next_stage_ = (next_stage_ + 1) % 2;
  if (st.used) be_.wait(st.fence);  // the device has copied what this slot held two batches ago
  embedding_index(ids, BT, D.V, st.batch);  // checks the ids
  int32_t* tg = st.batch + embedding_index_size(BT);
  n_valid_ = 0;
  if (targets) {
    for (int64_t i = 0; i < BT; ++i) {
      if (targets[i] >= D.V)
        fail("cross_entropy: target " + std::to_string(targets[i]) + " at position " +
             std::to_string(i) + " out of range for vocab " + std::to_string(D.V));
      n_valid_ += targets[i] >= 0;
      tg[i] = targets[i];
    }
    if (n_valid_ == 0) fail("forward: no valid targets in the batch");
  } else {
    std::fill_n(tg, BT, -1);
  }
  staged_targets_ = targets != nullptr;
  staged_dloss_ = targets ? dloss : 0.f;
  st.scalars[0] = lr;
  st.scalars[1] = static_cast<double>(t);
  st.scalars[2] = n_valid_ > 0 ? static_cast<double>(dloss / static_cast<float>(n_valid_)) : 0.0;
  be_.copy_to_device(batch_, st.batch);
  be_.copy_to_device(step_.at(kStepLr, 3), st.scalars);
  st.fence = be_.fence();
  st.used = true;
}

void Model::run_forward() {
  const Dims D = dims_of(spec_);
  const int64_t BT = B_ * T_;
  const ParamInfo& emb = table_.front();
  be_.embedding_forward(res_[0], batch_, params_c_.at(emb.offset, emb.numel), {.R = BT, .C = D.d});
  for (int64_t l = 0; l < spec_.n_layers(); ++l) blocks_[l]->forward(res_[l], res_[l + 1]);
  const ParamInfo& fnorm = table_[table_.size() - 2];
  const ParamInfo& head = table_.back();
  be_.rmsnorm_forward(xf_, xf_rstd_, res_.back(), params_c_.at(fnorm.offset, fnorm.numel),
                      {.R = BT, .C = D.d, .ldx = D.d}, static_cast<float>(spec_.norm_eps), Tensor{},
                      Tensor{});
  have_dlogits_ = false;
  // Without targets the head has nothing to do here: logits_host() computes the logits from xf_.
  if (!staged_targets_) return;
  be_.zero(step_.at(kStepLossSum, 1));
  const bool grad = staged_dloss_ != 0.f;
  const Tensor w = params_c_.at(head.offset, head.numel), dw = grads_.at(head.offset, head.numel);
  for (int64_t r0 = 0; r0 < BT; r0 += chunk_rows_) {
    const int64_t n = std::min(chunk_rows_, BT - r0);
    const MatmulShape s = {.M = n, .K = D.d, .N = D.V, .ldx = D.d};
    const Tensor x = xf_.at(r0 * D.d, n * D.d), lg = logits_.at(0, n * D.V);
    be_.matmul_forward(lg, x, w, s, false);
    // The gradient overwrites the logits row by row (the CE op allows dlogits == logits).
    be_.cross_entropy(step_.at(kStepLossSum, 1), losses_.at(r0, n), grad ? lg : Tensor{}, lg,
                      batch_.at(embedding_index_size(BT) + r0, n), {.R = n, .C = D.V},
                      step_.at(kDScale, 1));
    if (grad) be_.matmul_backward(dxf_.at(r0 * D.d, n * D.d), dw, lg, x, w, s, false);
  }
  have_dlogits_ = grad;
}

double Model::forward(const int32_t* ids, const int32_t* targets, float dloss) {
  stage_batch(ids, targets, dloss);
  run_forward();
  if (!targets) return 0.0;
  return step_result(request_result()).loss;
}

uint64_t Model::request_result() {
  const uint64_t ticket = next_result_++;
  const int k = static_cast<int>(ticket % kResultSlots);
  be_.copy_to_host(results_ + 2 * k, step_.at(kStepLossSum, 2));
  result_fence_[k] = be_.fence();
  result_nvalid_[k] = n_valid_;
  return ticket;
}

Model::StepResult Model::step_result(uint64_t ticket) {
  SL_ASSERT(ticket < next_result_ && next_result_ - ticket <= kResultSlots);
  const int k = static_cast<int>(ticket % kResultSlots);
  be_.wait(result_fence_[k]);
  StepResult r;
  r.loss = result_nvalid_[k] > 0 ? results_[2 * k] / static_cast<double>(result_nvalid_[k]) : 0.0;
  r.grad_norm = std::sqrt(results_[2 * k + 1]);
  return r;
}

}  // namespace sl
