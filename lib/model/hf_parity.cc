#include "model/hf_parity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "runlog/h5.h"

namespace sl {

namespace {

using h5::Id;

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

std::vector<int64_t> dataset_shape(hid_t ds, const std::string& what) {
  Id space(h5::check(H5Dget_space(ds), what), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) h5::fail(what);
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return std::vector<int64_t>(d.begin(), d.end());
}

Id open_dataset(hid_t loc, const std::string& name, const std::string& where) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0)
    fail(where + ": missing dataset '" + name + "'");
  return Id(h5::check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT),
                      where + ": cannot open dataset '" + name + "'"),
            H5Dclose);
}

// A float dataset of any stored float type, converted to float by HDF5.
HfTensor read_float(hid_t loc, const std::string& name, const std::string& where) {
  Id ds = open_dataset(loc, name, where);
  HfTensor t;
  t.shape = dataset_shape(ds, where + ": dataset '" + name + "'");
  t.data.resize(static_cast<size_t>(t.numel()));
  if (!t.data.empty())
    h5::check_status(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data.data()),
                     where + ": cannot read dataset '" + name + "' as float");
  return t;
}

std::vector<int32_t> read_int32(hid_t loc, const std::string& name, const std::string& where,
                                std::vector<int64_t>& shape) {
  Id ds = open_dataset(loc, name, where);
  shape = dataset_shape(ds, where + ": dataset '" + name + "'");
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<int32_t> v(static_cast<size_t>(n));
  if (n > 0)
    h5::check_status(H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                     where + ": cannot read dataset '" + name + "' as int32");
  return v;
}

HfTensors read_group(hid_t file, const char* group, const std::string& where) {
  if (H5Lexists(file, group, H5P_DEFAULT) <= 0) fail(where + ": missing group /" + group);
  Id g(h5::check(H5Gopen2(file, group, H5P_DEFAULT), where + ": cannot open /" + group), H5Gclose);
  std::vector<std::string> names;
  h5::check_status(H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_link, &names),
                   where + ": cannot list /" + group);
  HfTensors out;
  for (const auto& n : names) out.emplace(n, read_float(g, n, where + " /" + group));
  return out;
}

}  // namespace

HfFixture read_hf_fixture(const std::string& path) {
  h5::quiet();
  HfFixture f;
  f.path = path;
  const std::string where = "fixture " + path;
  Id fapl = h5::file_access(false);
  Id file(h5::check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), where + ": cannot open"),
          H5Fclose);
  const std::string schema = h5::read_string_attr(file, "schema", where);
  if (schema != "scalinglab.hf_fixture/1")
    fail(where + ": schema '" + schema + "', expected scalinglab.hf_fixture/1");
  f.model_type = h5::read_string_attr(file, "model_type", where);
  f.transformers_version = h5::read_string_attr(file, "transformers_version", where);
  f.torch_version = h5::read_string_attr(file, "torch_version", where);
  f.spec = spec_from_hf_config(h5::read_string_attr(file, "config_json", where),
                               where + " attribute config_json");

  std::vector<int64_t> shape;
  f.ids = read_int32(file, "input_ids", where, shape);
  if (shape.size() != 2) fail(where + ": input_ids must be [B, T], is " + shape_str(shape));
  f.B = shape[0];
  f.T = shape[1];
  f.targets = read_int32(file, "targets", where, shape);
  if (shape != std::vector<int64_t>{f.B, f.T})
    fail(where + ": targets has shape " + shape_str(shape) + ", input_ids " +
         shape_str({f.B, f.T}));
  for (size_t i = 0; i < f.ids.size(); ++i)
    if (f.ids[i] < 0 || f.ids[i] >= f.spec.vocab_size || f.targets[i] >= f.spec.vocab_size)
      fail(where + ": token id out of range [0, " + std::to_string(f.spec.vocab_size) + ")");
  HfTensor logits = read_float(file, "logits", where);
  if (logits.shape != std::vector<int64_t>{f.B, f.T, f.spec.vocab_size})
    fail(where + ": logits has shape " + shape_str(logits.shape) + ", expected " +
         shape_str({f.B, f.T, f.spec.vocab_size}));
  f.logits = std::move(logits.data);
  {
    Id ds = open_dataset(file, "loss", where);
    if (!dataset_shape(ds, where + ": loss").empty()) fail(where + ": loss must be a scalar");
    h5::check_status(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &f.loss),
                     where + ": cannot read loss");
  }
  f.weights = read_group(file, "weights", where);
  f.grads = read_group(file, "grads", where);
  // Names and shapes against the config: the first mismatch is named with both shapes.
  const auto table = build_param_table(f.spec);
  params_from_hf(table, f.weights, where + " /weights");
  params_from_hf(table, f.grads, where + " /grads");
  return f;
}

TensorError tensor_error(const std::string& name, const float* ours, const float* ref, int64_t n) {
  double num = 0, den = 0, ss_diff = 0, ss_ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = static_cast<double>(ref[i]);
    const double d = std::abs(static_cast<double>(ours[i]) - r);
    // NaN in ours must not hide behind max(): count it as an infinite error.
    num = std::isnan(d) ? INFINITY : std::max(num, d);
    den = std::max(den, std::abs(r));
    ss_diff += d * d;
    ss_ref += r * r;
  }
  TensorError e;
  e.name = name;
  e.abs = num;
  e.rel = num == 0 ? 0 : num / std::max(den, 1e-300);
  e.l2_abs = std::isnan(ss_diff) ? INFINITY : std::sqrt(ss_diff);
  e.l2_ref = std::sqrt(ss_ref);
  return e;
}

double ParityReport::max_rel() const { return std::max({logits.rel, loss.rel, worst_grad.rel}); }

ParityReport check_hf_parity(const HfFixture& f, Backend& be) {
  Model model(f.spec, be, f.B, f.T);
  model.set_params(params_from_hf(model.params(), f.weights, f.path + " /weights"));
  // Logits first: logits_host() recomputes them from the forward's final hidden states (the LM
  // head runs in chunks, and a training forward writes each chunk's gradient over its logits).
  ParityReport r;
  const int64_t n_logits = f.B * f.T * f.spec.vocab_size;
  model.forward(f.ids.data(), f.targets.data(), 0.f);
  const std::vector<float> logits = model.logits_host();
  model.zero_grad();
  const double loss = model.forward(f.ids.data(), f.targets.data(), 1.f);
  model.backward();

  r.logits = tensor_error("logits", logits.data(), f.logits.data(), n_logits);
  r.loss.name = "loss";
  r.loss.abs = std::abs(loss - f.loss);
  r.loss.rel = std::isnan(loss) ? INFINITY : r.loss.abs / std::abs(f.loss);

  std::vector<float> grads(static_cast<size_t>(model.buffer_size()));
  be.download(grads.data(), model.grad_buffer());
  for (const ParamInfo& p : model.params()) {
    const HfTensor& ref = f.grads.at(p.name);
    r.grads.push_back(tensor_error(p.name, grads.data() + p.offset, ref.data.data(), p.numel));
    if (r.grads.back().rel >= r.worst_grad.rel) r.worst_grad = r.grads.back();
  }
  return r;
}

}  // namespace sl
