// The per-backend implementations behind the op schemas in ops.cpp.
//
// ops.cpp validates every argument (shape, dtype, device, index range) before calling these,
// and hands them contiguous inputs, so the kernels below only compute.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace eager_ext {

// The flat trie arrays (see trie.h), on the device of the logits.
struct TrieTensors {
  at::Tensor child_offsets;  // [num_nodes + 1] int64
  at::Tensor child_tokens;   // [num_edges] int64, sorted within each node
  at::Tensor child_nodes;    // [num_edges] int64
  int64_t max_children;      // the largest number of children of any node
};

// The outputs of one beam step, each [batch, num_beams].
using BeamStep = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

namespace cpu {
std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks);
at::Tensor summary_gather(const at::Tensor& hidden, const at::Tensor& positions);
std::tuple<at::Tensor, at::Tensor> gathered_infonce_forward(
    const at::Tensor& query, const at::Tensor& table, const at::Tensor& positive_ids,
    const at::Tensor& negative_ids, double temperature, const at::Tensor& valid);
at::Tensor gathered_infonce_backward(const at::Tensor& grad_loss, const at::Tensor& query,
                                     const at::Tensor& table, const at::Tensor& positive_ids,
                                     const at::Tensor& negative_ids, double temperature,
                                     const at::Tensor& valid, const at::Tensor& logits);
BeamStep trie_beam_step(const at::Tensor& logits, const at::Tensor& beam_scores,
                        const at::Tensor& nodes, const TrieTensors& trie, int64_t num_beams,
                        int64_t vocab_offset, bool log_normalize);
void trie_mask_(const at::Tensor& logits, const at::Tensor& nodes, const TrieTensors& trie,
                int64_t vocab_offset);
}  // namespace cpu

namespace cuda {
std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks);
at::Tensor summary_gather(const at::Tensor& hidden, const at::Tensor& positions);
std::tuple<at::Tensor, at::Tensor> gathered_infonce_forward(
    const at::Tensor& query, const at::Tensor& table, const at::Tensor& positive_ids,
    const at::Tensor& negative_ids, double temperature, const at::Tensor& valid);
at::Tensor gathered_infonce_backward(const at::Tensor& grad_loss, const at::Tensor& query,
                                     const at::Tensor& table, const at::Tensor& positive_ids,
                                     const at::Tensor& negative_ids, double temperature,
                                     const at::Tensor& valid, const at::Tensor& logits);
BeamStep trie_beam_step(const at::Tensor& logits, const at::Tensor& beam_scores,
                        const at::Tensor& nodes, const TrieTensors& trie, int64_t num_beams,
                        int64_t vocab_offset, bool log_normalize);
void trie_mask_(const at::Tensor& logits, const at::Tensor& nodes, const TrieTensors& trie,
                int64_t vocab_offset);
}  // namespace cuda

}  // namespace eager_ext
