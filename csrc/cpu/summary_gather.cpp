// out[b] = hidden[b, positions[b]]: one row copy per batch element, any row strides.
#include "backends.h"

#include <ATen/ops/empty.h>

#include <cstring>

namespace eager_ext::cpu {

at::Tensor summary_gather(const at::Tensor& hidden, const at::Tensor& positions) {
  const int64_t batch = hidden.size(0), h = hidden.size(2);
  at::Tensor out = at::empty({batch, h}, hidden.options());
  const int64_t element_size = hidden.element_size();
  const auto* src = static_cast<const char*>(hidden.const_data_ptr());
  auto* dst = static_cast<char*>(out.data_ptr());
  const int64_t* pos = positions.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t offset = b * hidden.stride(0) + pos[b] * hidden.stride(1);
    std::memcpy(dst + b * h * element_size, src + offset * element_size, h * element_size);
  }
  return out;
}

}  // namespace eager_ext::cpu
