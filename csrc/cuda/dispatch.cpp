// Tensor-level CUDA backends: allocate outputs and hand raw pointers to the launchers in
// launch.h. ops.cpp has already validated every argument and made the inputs contiguous (except
// where a stride is passed on), so this file only maps tensors to pointers, dtypes and streams.
// Nothing here waits for the device: a beam step must not cost a host synchronisation.
//
// Only light ATen headers: this translation unit is compiled by the host compiler, and
// torch/extension.h would multiply its compile time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <tuple>

#include "../backends.h"
#include "launch.h"

namespace eager_ext::cuda {
namespace {

Float float_type(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return Float::f32;
    case at::kHalf: return Float::f16;
    case at::kBFloat16: return Float::bf16;
    default: TORCH_CHECK(false, op, ": unsupported dtype ", t.scalar_type());
  }
}

void* current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// valid is one byte per row (bool or uint8).
const uint8_t* valid_bytes(const at::Tensor& valid) {
  TORCH_CHECK(valid.element_size() == 1, "gathered_infonce: valid must hold one byte per row");
  return static_cast<const uint8_t*>(valid.data_ptr());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0);
  const int64_t d = x.size(1);
  const int64_t levels = codebooks.size(0);
  const int64_t k = codebooks.size(1);
  TORCH_CHECK(codebooks.scalar_type() == x.scalar_type(), "rq_encode: dtype mismatch");
  at::Tensor codes = at::empty({n, levels}, x.options().dtype(at::kLong));
  at::Tensor residual_norm = at::empty({n}, x.options().dtype(at::kFloat));
  if (n > 0) {
    cuda::rq_encode(x.data_ptr(), x.stride(0), codebooks.data_ptr(), float_type(x, "rq_encode"),
                    n, d, levels, k, codes.data_ptr<int64_t>(), residual_norm.data_ptr<float>(),
                    current_stream(x));
    check_launch("rq_encode");
  }
  return {codes, residual_norm};
}

at::Tensor summary_gather(const at::Tensor& hidden, const at::Tensor& positions) {
  const c10::cuda::CUDAGuard guard(hidden.device());
  const int64_t batch = hidden.size(0);
  const int64_t h = hidden.size(2);
  at::Tensor out = at::empty({batch, h}, hidden.options());
  if (batch > 0 && h > 0) {
    cuda::summary_gather(hidden.data_ptr(), hidden.stride(0), hidden.stride(1),
                         static_cast<int64_t>(hidden.element_size()),
                         positions.data_ptr<int64_t>(), batch, h, out.data_ptr(),
                         current_stream(hidden));
    check_launch("summary_gather");
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> gathered_infonce_forward(
    const at::Tensor& query, const at::Tensor& table, const at::Tensor& positive_ids,
    const at::Tensor& negative_ids, double temperature, const at::Tensor& valid) {
  const c10::cuda::CUDAGuard guard(query.device());
  TORCH_CHECK(table.scalar_type() == query.scalar_type(), "gathered_infonce: dtype mismatch");
  const int64_t batch = query.size(0);
  const int64_t dim = query.size(1);
  const int64_t num_negatives = negative_ids.size(0);
  at::Tensor logits = at::empty({batch, 1 + num_negatives}, query.options().dtype(at::kFloat));
  at::Tensor loss = at::empty({}, query.options().dtype(at::kFloat));
  cuda::gathered_infonce_forward(
      query.data_ptr(), table.data_ptr(), table.stride(0),
      float_type(query, "gathered_infonce_forward"), positive_ids.data_ptr<int64_t>(),
      negative_ids.data_ptr<int64_t>(), valid_bytes(valid), batch, num_negatives, dim,
      static_cast<float>(temperature), logits.data_ptr<float>(), loss.data_ptr<float>(),
      current_stream(query));
  check_launch("gathered_infonce_forward");
  return {loss, logits};
}

at::Tensor gathered_infonce_backward(const at::Tensor& grad_loss, const at::Tensor& query,
                                     const at::Tensor& table, const at::Tensor& positive_ids,
                                     const at::Tensor& negative_ids, double temperature,
                                     const at::Tensor& valid, const at::Tensor& logits) {
  const c10::cuda::CUDAGuard guard(query.device());
  TORCH_CHECK(table.scalar_type() == query.scalar_type(), "gathered_infonce: dtype mismatch");
  TORCH_CHECK(grad_loss.scalar_type() == at::kFloat && logits.scalar_type() == at::kFloat,
              "gathered_infonce_backward: grad_loss and logits must be float32");
  const int64_t batch = query.size(0);
  const int64_t dim = query.size(1);
  const int64_t num_negatives = negative_ids.size(0);
  at::Tensor grad_query = at::empty(query.sizes(), query.options());
  cuda::gathered_infonce_backward(
      grad_loss.data_ptr<float>(), query.data_ptr(), table.data_ptr(), table.stride(0),
      float_type(query, "gathered_infonce_backward"), positive_ids.data_ptr<int64_t>(),
      negative_ids.data_ptr<int64_t>(), valid_bytes(valid), batch, num_negatives, dim,
      static_cast<float>(temperature), logits.data_ptr<float>(), grad_query.data_ptr(),
      current_stream(query));
  check_launch("gathered_infonce_backward");
  return grad_query;
}

BeamStep trie_beam_step(const at::Tensor& logits, const at::Tensor& beam_scores,
                        const at::Tensor& nodes, const TrieTensors& trie, int64_t num_beams,
                        int64_t vocab_offset, bool log_normalize) {
  constexpr const char* op = "trie_beam_step";
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t batch = logits.size(0) / num_beams;
  at::Tensor scores = at::empty({batch, num_beams}, beam_scores.options());
  at::Tensor parents = at::empty({batch, num_beams}, nodes.options());
  at::Tensor tokens = at::empty({batch, num_beams}, nodes.options());
  at::Tensor next_nodes = at::empty({batch, num_beams}, nodes.options());
  if (batch == 0) return {scores, parents, tokens, next_nodes};

  // Freed on return, which is safe: the caching allocator hands it out again only to work
  // queued behind these kernels on the same stream.
  const int64_t bytes = trie_beam_step_workspace_bytes(batch, num_beams, trie.max_children);
  at::Tensor workspace = at::empty({bytes}, logits.options().dtype(at::kByte));
  cuda::trie_beam_step(logits.const_data_ptr(), logits.stride(0), float_type(logits, op), batch,
                       num_beams, logits.size(1), beam_scores.const_data_ptr<float>(),
                       nodes.const_data_ptr<int64_t>(),
                       trie.child_offsets.const_data_ptr<int64_t>(),
                       trie.child_tokens.const_data_ptr<int64_t>(),
                       trie.child_nodes.const_data_ptr<int64_t>(), trie.child_offsets.size(0) - 1,
                       trie.max_children, vocab_offset, log_normalize, workspace.data_ptr(),
                       scores.data_ptr<float>(), parents.data_ptr<int64_t>(),
                       tokens.data_ptr<int64_t>(), next_nodes.data_ptr<int64_t>(),
                       current_stream(logits));
  check_launch(op);
  return {scores, parents, tokens, next_nodes};
}

void trie_mask_(const at::Tensor& logits, const at::Tensor& nodes, const TrieTensors& trie,
                int64_t vocab_offset) {
  constexpr const char* op = "trie_mask_";
  const c10::cuda::CUDAGuard guard(logits.device());
  if (logits.size(0) == 0 || logits.size(1) == 0) return;
  cuda::trie_mask(logits.data_ptr(), logits.stride(0), float_type(logits, op), logits.size(0),
                  logits.size(1), nodes.const_data_ptr<int64_t>(),
                  trie.child_offsets.const_data_ptr<int64_t>(),
                  trie.child_tokens.const_data_ptr<int64_t>(), vocab_offset,
                  current_stream(logits));
  check_launch(op);
}

}  // namespace eager_ext::cuda
