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
  s.chunk_groups = kSpmmBf16ChunkGroups;
  s.chunks = SpmmChunkPointers(s.col_ptr, s.block_rows, N, K / 4, s.chunk_groups, &s.chunk_ptr);
  return s;
}

void PrepareBlockSparseBf16Avx2(BlockSparseBf16* b) {
  b->pairs.resize(2 * b->block_rows.size() + 4, 0);  // the small-M kernel reads 2 blocks at a time
  b->chunk_groups = SpmmChunkGroups(b->K / 4, kSpmmF32ChunkGroups);
  b->chunks = SpmmChunkPointers(b->col_ptr, b->block_rows, b->N, b->K / 4, b->chunk_groups, &b->chunk_ptr);
}

size_t PackedTokensF32Size(int64_t M, int64_t K) {
  if (M <= kSpmmF32GemvMaxM) return static_cast<size_t>(M * (K + 4));
  const int64_t T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile);
  return static_cast<size_t>((M + T - 1) / T * K * T);
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
