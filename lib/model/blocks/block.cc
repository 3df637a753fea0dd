#include "model/blocks/block.h"

#include "core/error.h"
#include "model/blocks/attention.h"
#include "model/blocks/gdn.h"

namespace sl {

// ---- the registry: the one place that lists the kinds (and so their letters) ------------------

const std::vector<const BlockType*>& block_types() {
  static const std::vector<const BlockType*> types = [] {
    std::vector<const BlockType*> t = {&attention_block_type(), &gdn_block_type()};
    for (size_t i = 0; i < t.size(); ++i) SL_ASSERT(static_cast<size_t>(t[i]->kind) == i);
    return t;
  }();
  return types;
}

const BlockType& block_type(BlockKind kind) {
  const auto& t = block_types();
  SL_ASSERT(static_cast<size_t>(kind) < t.size());
  return *t[static_cast<size_t>(kind)];
}

char block_letter(BlockKind kind) { return block_type(kind).letter; }

BlockKind block_kind(const std::string& pattern, size_t i) {
  SL_ASSERT(i < pattern.size());
  for (const BlockType* t : block_types())
    if (t->letter == pattern[i]) return t->kind;
  std::string known;
  for (const BlockType* t : block_types())
    known += std::string(known.empty() ? "" : ", ") + t->letter + " " + t->name;
  fail("model.pattern: '" + pattern + "' has the unknown block letter '" + pattern[i] +
       "' at layer " + std::to_string(i) + " (known: " + known + ")");
}

std::vector<BlockKind> block_kinds(const std::string& pattern) {
  std::vector<BlockKind> k;
  for (size_t i = 0; i < pattern.size(); ++i) k.push_back(block_kind(pattern, i));
  return k;
}

int64_t count_blocks(const std::string& pattern, BlockKind kind) {
  const char c = block_letter(kind);
  int64_t n = 0;
  for (char x : pattern) n += x == c;
  return n;
}

// ---- shared pieces -----------------------------------------------------------------------------

Dims dims_of(const ModelSpec& s) {
  Dims D;
  D.d = s.d_model;
  D.H = s.n_heads;
  D.hd = s.head_dim();
  D.m = s.d_mlp;
  D.dk = s.gdn_key_dim;
  D.dv = s.gdn_value_dim;
  D.Cc = 2 * D.H * D.dk + D.H * D.dv;  // conv channels q | k | v
  D.P = D.Cc + 2 * D.H + D.H * D.dv;   // fused GDN input projection width
  D.ldp = (D.P + 7) / 8 * 8;
  D.K = s.conv_kernel;
  D.V = s.vocab_size;
  return D;
}

namespace {
DType stat_dtype(const Backend& be) {
  return be.act_dtype() == DType::f64 ? DType::f64 : DType::f32;
}
}  // namespace

BlockEnv::BlockEnv(const ModelSpec& spec_in, Backend& be_in, int64_t B_in, int64_t T_in,
                   std::vector<Tensor>& arena)
    : spec(spec_in),
      be(be_in),
      B(B_in),
      T(T_in),
      BT(B_in * T_in),
      D(dims_of(spec_in)),
      arena_(arena),
      // The residual stream and its gradient are stat (fp32) tensors: with bf16 activations every
      // block adds its output into them, and a bf16 sum loses the small updates (what
      // torch.autocast does too: the residual adds run in fp32). A GEMM reads them through a
      // compute-dtype copy.
      split_(be_in.act_dtype() != stat_dtype(be_in)) {}

Tensor BlockEnv::act(int64_t n) {
  Tensor t = be.alloc(n, be.act_dtype());
  arena_.push_back(t);
  return t;
}
Tensor BlockEnv::stat(int64_t n) {
  Tensor t = be.alloc(n, stat_dtype(be));
  arena_.push_back(t);
  return t;
}
Tensor BlockEnv::shared_stat(const std::string& key, int64_t n) {
  auto it = shared_.find(key);
  if (it == shared_.end()) it = shared_.emplace(key, stat(n)).first;
  SL_ASSERT(it->second.n == n);
  return it->second;
}
Tensor BlockEnv::as_act(Tensor src, Tensor buf, int64_t rows, int64_t cols) const {
  if (!split_) return src;
  be.copy2d(buf, src, {.R = rows, .C = cols, .ld_dst = cols, .ld_src = cols}, false);
  return buf;
}

Tensor ParamViews::operator()(const char* suffix, int64_t n) const {
  // A linear scan, once per view at construction.
  const std::string name = prefix_ + suffix;
  for (size_t i = 0; i < table_.size(); ++i) {
    const ParamInfo& p = table_[i];
    if (p.name != name) continue;
    // A view over a fused projection (n > numel) spans rows added with add_fused: no gap inside.
    for (int64_t end = p.offset + p.numel; end < p.offset + n; end += table_[i].numel)
      if (++i == table_.size() || table_[i].offset != end)
        fail("internal error: the rows after " + name + " are not contiguous");
    return buffer_.at(p.offset, n < 0 ? p.numel : n);
  }
  fail("internal error: no parameter " + name);
}

}  // namespace sl
