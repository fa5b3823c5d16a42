// Raw-pointer entry points of the CUDA kernels.
//
// Deliberately free of torch and CUDA headers: the .cu files that implement these compile in
// about a second with plain nvcc, and the C++ side that calls them (dispatch.cpp) never needs
// nvcc. Every pointer is device memory, every tensor is contiguous unless a stride is passed,
// and `stream` is a cudaStream_t.
#pragma once

#include <cstdint>

namespace eager_ext::cuda {

// Element type of the floating-point inputs. f16 and bf16 are bit-compatible with __half and
// __nv_bfloat16 (and with c10::Half and c10::BFloat16).
enum class Float { f32, f16, bf16 };

// Throws std::runtime_error naming `what` if the last CUDA call or launch failed.
void check_launch(const char* what);

// x [n, d] (row stride x_row_stride elements, unit column stride), codebooks [levels, k, d].
// codes [n, levels], residual_norm [n]. Nearest centroid per level by squared Euclidean
// distance (ties to the smaller index), float32 accumulation, deterministic.
void rq_encode(const void* x, int64_t x_row_stride, const void* codebooks, Float dtype, int64_t n,
               int64_t d, int64_t levels, int64_t k, int64_t* codes, float* residual_norm,
               void* stream);

// out[b, :] = hidden[b * stride_b + positions[b] * stride_t + (0 .. h-1)], elements of
// `element_size` bytes. positions are already validated to lie in [0, t).
void summary_gather(const void* hidden, int64_t stride_b, int64_t stride_t, int64_t element_size,
                    const int64_t* positions, int64_t batch, int64_t h, void* out, void* stream);

// Forward of the InfoNCE of normalised queries against the normalised positive row and the
// shared negative rows of `table` (rows of `table_row_stride` elements, unit column stride).
// logits [batch, 1 + num_negatives] float32 receives cos(q, row) / temperature (column 0 is the
// positive); loss [1] float32 receives the mean of (logsumexp(row) - row[0]) over rows where
// valid[b] != 0, or 0 when no row is valid. valid [batch] is one byte per row.
void gathered_infonce_forward(const void* query, const void* table, int64_t table_row_stride,
                              Float dtype, const int64_t* positive_ids,
                              const int64_t* negative_ids, const uint8_t* valid, int64_t batch,
                              int64_t num_negatives, int64_t dim, float temperature, float* logits,
                              float* loss, void* stream);

// Gradient of that loss with respect to the (unnormalised) query, given d(loss) in
// grad_loss [1] float32 (device) and the forward's logits. grad_query [batch, dim] in `dtype`.
void gathered_infonce_backward(const float* grad_loss, const void* query, const void* table,
                               int64_t table_row_stride, Float dtype, const int64_t* positive_ids,
                               const int64_t* negative_ids, const uint8_t* valid, int64_t batch,
                               int64_t num_negatives, int64_t dim, float temperature,
                               const float* logits, void* grad_query, void* stream);

// One step of trie-constrained beam search; the semantics are those of the CPU kernel
// (csrc/cpu/trie_beam_step.cpp) and of eager_ext.reference.trie_beam_step. logits [rows, v]
// with rows = batch * num_beams (row stride row_stride elements, unit column stride). A live
// beam (score > -inf) on an out-of-range node has no candidates (the host cannot be told
// without a sync); a child column outside [0, v) is skipped; neither is ever read.
// workspace: trie_beam_step_workspace_bytes(...) bytes of device memory.
int64_t trie_beam_step_workspace_bytes(int64_t batch, int64_t num_beams, int64_t max_children);
void trie_beam_step(const void* logits, int64_t row_stride, Float dtype, int64_t batch,
                    int64_t num_beams, int64_t v, const float* beam_scores, const int64_t* nodes,
                    const int64_t* child_offsets, const int64_t* child_tokens,
                    const int64_t* child_nodes, int64_t num_nodes, int64_t max_children,
                    int64_t vocab_offset, bool log_normalize, void* workspace, float* scores,
                    int64_t* parents, int64_t* tokens, int64_t* next_nodes, void* stream);

// In place: every column of row r that is not a child token of nodes[r] becomes -inf. nodes
// are already validated; logits [rows, v] with row stride row_stride and unit column stride.
void trie_mask(void* logits, int64_t row_stride, Float dtype, int64_t rows, int64_t v,
               const int64_t* nodes, const int64_t* child_offsets, const int64_t* child_tokens,
               int64_t vocab_offset, void* stream);

}  // namespace eager_ext::cuda
