// Op schemas, argument validation, backend registration and the pybind11 module.
//
// This is the only translation unit that includes <torch/extension.h> (it dominates compile
// time). Every argument is checked here, once for all backends, so that bad input raises a
// Python exception naming the argument and no kernel ever sees an index it could misuse.
#include <torch/extension.h>

#include "backends.h"

namespace eager_ext {
namespace {

// ---------------------------------------------------------------------------------------------
// Checks shared by the ops.

bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(is_supported_float(t.scalar_type()), op, ": ", name,
                   " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must have shape ", layout, " (", dim,
                    " dimensions), got shape ", t.sizes());
}

void check_long(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
                   t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& reference, const char* op,
                       const char* name, const char* reference_name) {
  TORCH_CHECK_VALUE(t.device() == reference.device(), op, ": ", name, " is on ", t.device(),
                    " but ", reference_name, " is on ", reference.device());
}

// Every id must lie in [0, limit). On CUDA this reads the ids back to the host (one sync);
// the training ops accept that cost to report the exact offending entry.
void check_index_range(const at::Tensor& ids, int64_t limit, const char* op, const char* name,
                       const char* limit_name) {
  if (ids.numel() == 0) return;
  const at::Tensor bad = ((ids < 0) | (ids >= limit)).nonzero();
  if (bad.size(0) == 0) return;
  const int64_t where = bad[0][0].item<int64_t>();
  TORCH_CHECK_INDEX(false, op, ": ", name, "[", where, "] = ", ids[where].item<int64_t>(),
                    " is out of range for ", limit_name, " (valid: 0 to ", limit - 1, "); ",
                    bad.size(0), " of ", ids.numel(), " entries are out of range");
}

// ---------------------------------------------------------------------------------------------
// rq_encode

void check_rq_encode(const at::Tensor& x, const at::Tensor& codebooks) {
  constexpr const char* op = "rq_encode";
  check_dim(x, 2, op, "x", "[N, D]");
  check_dim(codebooks, 3, op, "codebooks", "[L, K, D]");
  check_float(x, op, "x");
  TORCH_CHECK_TYPE(codebooks.scalar_type() == x.scalar_type(), op,
                   ": codebooks must have the dtype of x (", x.scalar_type(), "), got ",
                   codebooks.scalar_type());
  check_same_device(codebooks, x, op, "codebooks", "x");
  TORCH_CHECK_VALUE(codebooks.size(2) == x.size(1), op, ": codebooks [L, K, D] has D = ",
                    codebooks.size(2), " but x [N, D] has D = ", x.size(1));
  TORCH_CHECK_VALUE(codebooks.size(0) >= 1 && codebooks.size(1) >= 1 && codebooks.size(2) >= 1,
                    op, ": codebooks must have L >= 1 levels, K >= 1 centroids and D >= 1, got "
                    "shape ", codebooks.sizes());
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> rq_encode_impl(const at::Tensor& x, const at::Tensor& codebooks) {
  check_rq_encode(x, codebooks);
  return Kernel(x.contiguous(), codebooks.contiguous());
}

// ---------------------------------------------------------------------------------------------
// summary_gather

template <auto Kernel>
at::Tensor summary_gather_impl(const at::Tensor& hidden, const at::Tensor& positions) {
  constexpr const char* op = "summary_gather";
  check_dim(hidden, 3, op, "hidden", "[B, T, H]");
  check_dim(positions, 1, op, "positions", "[B]");
  check_long(positions, op, "positions");
  check_same_device(positions, hidden, op, "positions", "hidden");
  TORCH_CHECK_VALUE(positions.size(0) == hidden.size(0), op, ": positions has ",
                    positions.size(0), " entries but hidden has B = ", hidden.size(0));
  check_index_range(positions, hidden.size(1), op, "positions", "hidden's T dimension");
  // Row copies need unit stride along H only; the batch and time strides can be anything, so a
  // slice of a larger activation is read in place instead of copied.
  const at::Tensor rows = hidden.stride(2) == 1 ? hidden : hidden.contiguous();
  return Kernel(rows, positions.contiguous());
}

// ---------------------------------------------------------------------------------------------
// gathered_infonce

struct InfonceArgs {
  at::Tensor query, table, positive_ids, negative_ids, valid;
};

InfonceArgs check_gathered_infonce(const at::Tensor& query, const at::Tensor& table,
                                   const at::Tensor& positive_ids, const at::Tensor& negative_ids,
                                   double temperature, const std::optional<at::Tensor>& valid) {
  constexpr const char* op = "gathered_infonce";
  check_dim(query, 2, op, "query", "[B, E]");
  check_dim(table, 2, op, "table", "[N, E]");
  check_dim(positive_ids, 1, op, "positive_ids", "[B]");
  check_dim(negative_ids, 1, op, "negative_ids", "[M]");
  check_float(query, op, "query");
  TORCH_CHECK_TYPE(table.scalar_type() == query.scalar_type(), op,
                   ": table must have the dtype of query (", query.scalar_type(), "), got ",
                   table.scalar_type());
  check_long(positive_ids, op, "positive_ids");
  check_long(negative_ids, op, "negative_ids");
  for (const auto& [t, name] : {std::pair{table, "table"}, {positive_ids, "positive_ids"},
                                {negative_ids, "negative_ids"}})
    check_same_device(t, query, op, name, "query");
  TORCH_CHECK_VALUE(table.size(1) == query.size(1), op, ": table [N, E] has E = ", table.size(1),
                    " but query [B, E] has E = ", query.size(1));
  TORCH_CHECK_VALUE(positive_ids.size(0) == query.size(0), op, ": positive_ids has ",
                    positive_ids.size(0), " entries but query has B = ", query.size(0));
  TORCH_CHECK_VALUE(std::isfinite(temperature) && temperature > 0, op,
                    ": temperature must be a positive finite number, got ", temperature);
  check_index_range(positive_ids, table.size(0), op, "positive_ids", "table's rows");
  check_index_range(negative_ids, table.size(0), op, "negative_ids", "table's rows");
  at::Tensor row_mask;
  if (valid.has_value()) {
    check_dim(*valid, 1, op, "valid", "[B]");
    TORCH_CHECK_TYPE(valid->scalar_type() == at::kBool, op, ": valid must be bool, got ",
                     valid->scalar_type());
    check_same_device(*valid, query, op, "valid", "query");
    TORCH_CHECK_VALUE(valid->size(0) == query.size(0), op, ": valid has ", valid->size(0),
                      " entries but query has B = ", query.size(0));
    row_mask = valid->contiguous();
  } else {
    row_mask = at::ones({query.size(0)}, query.options().dtype(at::kBool));
  }
  const at::Tensor rows = table.stride(1) == 1 ? table : table.contiguous();
  return {query.contiguous(), rows, positive_ids.contiguous(), negative_ids.contiguous(), row_mask};
}

template <auto Forward>
at::Tensor gathered_infonce_impl(const at::Tensor& query, const at::Tensor& table,
                                 const at::Tensor& positive_ids, const at::Tensor& negative_ids,
                                 double temperature, const std::optional<at::Tensor>& valid) {
  const InfonceArgs a =
      check_gathered_infonce(query, table, positive_ids, negative_ids, temperature, valid);
  return std::get<0>(Forward(a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid));
}

// The backward recomputes the [B, 1 + M] logits instead of saving them, like FlashAttention:
// one more pass over the negative rows buys a loss whose autograd state is only its inputs.
template <auto Forward, auto Backward>
at::Tensor gathered_infonce_backward_impl(const at::Tensor& grad_loss, const at::Tensor& query,
                                          const at::Tensor& table, const at::Tensor& positive_ids,
                                          const at::Tensor& negative_ids, double temperature,
                                          const std::optional<at::Tensor>& valid) {
  const InfonceArgs a =
      check_gathered_infonce(query, table, positive_ids, negative_ids, temperature, valid);
  TORCH_CHECK_VALUE(grad_loss.numel() == 1, "gathered_infonce_backward: grad_loss must be a "
                    "scalar, got shape ", grad_loss.sizes());
  const at::Tensor logits =
      std::get<1>(Forward(a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid));
  const at::Tensor grad = grad_loss.to(query.device(), at::kFloat).reshape({});
  return Backward(grad, a.query, a.table, a.positive_ids, a.negative_ids, temperature, a.valid,
                  logits);
}

}  // namespace

TORCH_LIBRARY(eager_ext, m) {
  m.def("rq_encode(Tensor x, Tensor codebooks) -> (Tensor codes, Tensor residual_norm)");
  m.def("summary_gather(Tensor hidden, Tensor positions) -> Tensor");
  m.def("gathered_infonce(Tensor query, Tensor table, Tensor positive_ids, Tensor negative_ids, "
        "float temperature, Tensor? valid=None) -> Tensor");
  m.def("gathered_infonce_backward(Tensor grad_loss, Tensor query, Tensor table, "
        "Tensor positive_ids, Tensor negative_ids, float temperature, Tensor? valid=None) -> "
        "Tensor");
}

TORCH_LIBRARY_IMPL(eager_ext, CPU, m) {
  m.impl("rq_encode", &rq_encode_impl<cpu::rq_encode>);
  m.impl("summary_gather", &summary_gather_impl<cpu::summary_gather>);
  m.impl("gathered_infonce", &gathered_infonce_impl<cpu::gathered_infonce_forward>);
  m.impl("gathered_infonce_backward",
         &gathered_infonce_backward_impl<cpu::gathered_infonce_forward,
                                         cpu::gathered_infonce_backward>);
}

#ifdef EAGER_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(eager_ext, CUDA, m) {
  m.impl("rq_encode", &rq_encode_impl<cuda::rq_encode>);
  m.impl("summary_gather", &summary_gather_impl<cuda::summary_gather>);
  m.impl("gathered_infonce", &gathered_infonce_impl<cuda::gathered_infonce_forward>);
  m.impl("gathered_infonce_backward",
         &gathered_infonce_backward_impl<cuda::gathered_infonce_forward,
                                         cuda::gathered_infonce_backward>);
}
#endif

}  // namespace eager_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "C++/CUDA kernels of eager_ext; use them through the eager_ext package.";
  m.def("cuda_kernels_built", [] {
#ifdef EAGER_EXT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether this build of the extension contains the CUDA kernels.");
}
