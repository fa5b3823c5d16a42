// The per-backend implementations behind the op schemas in ops.cpp.
//
// ops.cpp validates every argument (shape, dtype, device, index range) before calling these,
// and hands them contiguous inputs, so the kernels below only compute.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace eager_ext {

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
}  // namespace cuda

}  // namespace eager_ext
