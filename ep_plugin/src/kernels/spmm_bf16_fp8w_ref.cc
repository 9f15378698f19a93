// Packing, validation and the scalar reference of the block-sparse FP8-weight family.
#include <stdexcept>

#include "kernels/spmm_bf16_fp8w.h"
#include "kernels/spmm_u8s8.h"

namespace onnxq::kernels {

BlockSparseBf16 MakeBlockSparseBf16(const uint8_t* values, int64_t values_count, Fp8Format format,
                                    const int16_t* block_rows, int64_t nnzb, const int32_t* col_ptr,
                                    int64_t col_ptr_count, int64_t K, int64_t N) {
  ValidateBlockSparse(values_count, block_rows, nnzb, col_ptr, col_ptr_count, K, N, 4, 1);
  BlockSparseBf16 s;
  s.K = K;
  s.N = N;
  s.pairs.resize(static_cast<size_t>(nnzb * 2));
  for (int64_t i = 0; i < nnzb; ++i)
    for (int p = 0; p < 2; ++p) {
      const uint32_t lo = FloatToBf16(Fp8ToFloat(values[i * 4 + 2 * p], format));
      const uint32_t hi = FloatToBf16(Fp8ToFloat(values[i * 4 + 2 * p + 1], format));
      s.pairs[i * 2 + p] = lo | (hi << 16);
    }
  s.block_rows.assign(block_rows, block_rows + nnzb);
  s.col_ptr.assign(col_ptr, col_ptr + col_ptr_count);
  const int64_t kb = K / 4;
  s.chunks = (kb + kSpmmBf16ChunkGroups - 1) / kSpmmBf16ChunkGroups;
  s.chunk_ptr.assign(static_cast<size_t>((s.chunks + 1) * (N + 1)), 0);
  for (int64_t j = 0; j < N; ++j) {
    int32_t i = s.col_ptr[j];
    for (int64_t c = 0; c <= s.chunks; ++c) {
      while (i < s.col_ptr[j + 1] && s.block_rows[i] < c * kSpmmBf16ChunkGroups) ++i;
      s.chunk_ptr[c * (N + 1) + j] = i;
    }
  }
  return s;
}

void SpmmBf16Ref(const SpmmBf16Args& a, int64_t n_begin, int64_t n_end) {
  const BlockSparseBf16& B = *a.B;
  for (int64_t m = 0; m < a.M; ++m) {
    const uint16_t* row = a.A + m * B.K;
    for (int64_t n = n_begin; n < n_end; ++n) {
      float acc = 0.0f;
      for (int32_t i = B.col_ptr[n]; i < B.col_ptr[n + 1]; ++i) {
        const int64_t k0 = static_cast<int64_t>(B.block_rows[i]) * 4;
        for (int p = 0; p < 2; ++p) {
          const uint32_t w = B.pairs[i * 2 + p];
          acc += Bf16ToFloat(row[k0 + 2 * p]) * Bf16ToFloat(static_cast<uint16_t>(w & 0xFFFF));
          acc += Bf16ToFloat(row[k0 + 2 * p + 1]) * Bf16ToFloat(static_cast<uint16_t>(w >> 16));
        }
      }
      float v = acc * a.scale[n];
      if (a.bias != nullptr) v += a.bias[n];
      a.C[m * a.ldc + n] = v;
    }
  }
}

size_t PackedTokensBf16Size(int64_t M, int64_t K) {
  const int64_t T = SpmmTokenTile(M, kSpmmBf16TokenTile);
  return static_cast<size_t>((M + T - 1) / T * (K / 2) * T * 2);
}

}  // namespace onnxq::kernels
