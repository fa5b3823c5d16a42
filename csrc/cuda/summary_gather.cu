// Gathers the hidden state at each row's summary position: out[b, :] = hidden[b, positions[b], :].
//
// The copy is done in raw bytes so one kernel serves every dtype. It moves the widest unit
// (16, 8, 4, 2 or 1 bytes) that every address it touches is aligned to, which the host can
// decide up front: every source row starts at hidden + b * stride_b + p * stride_t, every
// destination row at out + b * row_bytes.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "launch.h"

namespace eager_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond this; more blocks buy nothing here

// Each thread copies units of the flattened [batch, units_per_row] output; a unit's row is
// found by division, which is cheap next to the memory traffic of the copy.
template <typename Unit>
__global__ void __launch_bounds__(kThreads)
    summary_gather_kernel(const unsigned char* hidden, int64_t stride_b_bytes,
                          int64_t stride_t_bytes, const int64_t* positions, int64_t batch,
                          int64_t units_per_row, Unit* out) {
  const int64_t total = batch * units_per_row;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const int64_t b = i / units_per_row;
    const int64_t u = i - b * units_per_row;
    const unsigned char* row = hidden + b * stride_b_bytes + positions[b] * stride_t_bytes;
    out[i] = reinterpret_cast<const Unit*>(row)[u];
  }
}

// Largest power of two <= 16 dividing every value (0 is divisible by everything).
int64_t common_alignment(const int64_t* values, int count) {
  int64_t unit = 16;
  for (int i = 0; i < count; ++i) {
    while (values[i] % unit != 0) unit /= 2;
  }
  return unit;
}

template <typename Unit>
void launch(const void* hidden, int64_t stride_b_bytes, int64_t stride_t_bytes,
            const int64_t* positions, int64_t batch, int64_t row_bytes, void* out,
            cudaStream_t stream) {
  const int64_t units_per_row = row_bytes / static_cast<int64_t>(sizeof(Unit));
  const int64_t total = batch * units_per_row;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
  summary_gather_kernel<Unit><<<grid, kThreads, 0, stream>>>(
      static_cast<const unsigned char*>(hidden), stride_b_bytes, stride_t_bytes, positions,
      batch, units_per_row, static_cast<Unit*>(out));
}

}  // namespace

void summary_gather(const void* hidden, int64_t stride_b, int64_t stride_t, int64_t element_size,
                    const int64_t* positions, int64_t batch, int64_t h, void* out, void* stream) {
  if (element_size < 1) {
    throw std::invalid_argument("summary_gather: element_size must be >= 1, got " +
                                std::to_string(element_size));
  }
  if (batch <= 0 || h <= 0) return;

  const int64_t stride_b_bytes = stride_b * element_size;
  const int64_t stride_t_bytes = stride_t * element_size;
  const int64_t row_bytes = h * element_size;
  const int64_t byte_offsets[] = {  // everything a copied address is built from
      static_cast<int64_t>(reinterpret_cast<uintptr_t>(hidden)),
      static_cast<int64_t>(reinterpret_cast<uintptr_t>(out)),
      stride_b_bytes,
      stride_t_bytes,
      row_bytes,
  };
  const auto copy_in_units_of = [&](auto unit_tag) {
    launch<decltype(unit_tag)>(hidden, stride_b_bytes, stride_t_bytes, positions, batch,
                               row_bytes, out, static_cast<cudaStream_t>(stream));
  };
  switch (common_alignment(byte_offsets, 5)) {
    case 16: return copy_in_units_of(uint4{});
    case 8: return copy_in_units_of(uint2{});
    case 4: return copy_in_units_of(uint32_t{});
    case 2: return copy_in_units_of(uint16_t{});
    default: return copy_in_units_of(uint8_t{});
  }
}

}  // namespace eager_ext::cuda
