// Scalar reference for the block-sparse u8 x s8 family, validation, and the token repacking (plain C++).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/spmm_u8s8.h"

namespace onnxq::kernels {

void ValidateBlockSparse(int64_t values_count, const int16_t* block_rows, int64_t nnzb, const int32_t* col_ptr,
                         int64_t col_ptr_count, int64_t K, int64_t N, int64_t bk, int64_t bn) {
  auto fail = [](const std::string& why) { throw std::invalid_argument("block-sparse weight: " + why); };
  if (K <= 0 || N <= 0 || bk <= 0 || bn <= 0) fail("non-positive dimension");
  if (K % bk != 0 || N % bn != 0) fail("block shape does not tile the weight");
  if (nnzb < 0 || values_count != nnzb * bk * bn) fail("values size does not match the block count");
  if (col_ptr_count != N / bn + 1) fail("col_ptr length is not N / bn + 1");
  if (col_ptr[0] != 0 || col_ptr[col_ptr_count - 1] != nnzb) fail("col_ptr must start at 0 and end at the block count");
  for (int64_t j = 0; j + 1 < col_ptr_count; ++j)  // all pointers first: then every range below is in [0, nnzb)
    if (col_ptr[j + 1] < col_ptr[j] || col_ptr[j + 1] > nnzb) fail("col_ptr decreases or exceeds the block count");
  for (int64_t j = 0; j + 1 < col_ptr_count; ++j) {
    for (int32_t i = col_ptr[j]; i < col_ptr[j + 1]; ++i) {
      if (block_rows[i] < 0 || block_rows[i] >= K / bk) fail("block row index out of range");
      if (i > col_ptr[j] && block_rows[i] <= block_rows[i - 1]) fail("block rows of a column are not ascending");
    }
  }
}

BlockSparseS8 MakeBlockSparseS8(const int8_t* values, int64_t values_count, const int16_t* block_rows, int64_t nnzb,
                                const int32_t* col_ptr, int64_t col_ptr_count, int64_t K, int64_t N, int64_t bk,
                                int64_t bn) {
  ValidateBlockSparse(values_count, block_rows, nnzb, col_ptr, col_ptr_count, K, N, bk, bn);
  if (K > kQGemmMaxK) throw std::invalid_argument("block-sparse weight: K exceeds the int32-exact limit");
  const int64_t kb = K / bk;
  BlockSparseS8 s;
  s.K = K;
  s.N = N;
  s.bk = bk;
  s.bn = bn;
  s.values.assign(values, values + values_count);
  s.block_rows.resize(static_cast<size_t>(nnzb));
  for (int64_t i = 0; i < nnzb; ++i) s.block_rows[i] = block_rows[i];
  s.col_ptr.assign(col_ptr, col_ptr + col_ptr_count);
  s.chunk_groups = SpmmChunkGroups(kb);
  s.chunks = SpmmChunkPointers(s.col_ptr, s.block_rows, N / bn, kb, s.chunk_groups, &s.chunk_ptr);
  if (bk == 4 && bn == 1) {  // the small-M layout (see BlockSparseS8::ell_w)
    const int64_t groups = (N + 15) / 16;
    s.ell_ptr.assign(static_cast<size_t>(groups + 1), 0);
    for (int64_t g = 0; g < groups; ++g) {
      int32_t steps = 0;
      for (int64_t j = 16 * g; j < std::min<int64_t>(N, 16 * g + 16); ++j)
        steps = std::max(steps, s.col_ptr[j + 1] - s.col_ptr[j]);
      s.ell_ptr[g + 1] = s.ell_ptr[g] + steps;
    }
    s.ell_w.assign(static_cast<size_t>(s.ell_ptr[groups]) * 16, 0);
    s.ell_off.assign(static_cast<size_t>(s.ell_ptr[groups]) * 16, 0);
    for (int64_t j = 0; j < N; ++j) {
      const int64_t g = j / 16, lane = j % 16;
      for (int32_t i = s.col_ptr[j]; i < s.col_ptr[j + 1]; ++i) {
        const size_t at = static_cast<size_t>((s.ell_ptr[g] + (i - s.col_ptr[j])) * 16 + lane);
        std::memcpy(&s.ell_w[at], s.values.data() + 4 * static_cast<size_t>(i), 4);
        s.ell_off[at] = s.block_rows[i] * 4;
      }
    }
  }
  s.col_sum.assign(static_cast<size_t>(N), 0);
  for (int64_t j = 0; j < N / bn; ++j)
    for (int32_t i = s.col_ptr[j]; i < s.col_ptr[j + 1]; ++i)
      for (int64_t r = 0; r < bk; ++r)
        for (int64_t c = 0; c < bn; ++c) s.col_sum[j * bn + c] += s.values[(i * bk + r) * bn + c];
  return s;
}

int64_t SpmmChunkGroups(int64_t block_rows, int64_t preferred) {
  if (const char* env = std::getenv("ONNXQ_SPMM_CHUNK_GROUPS")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0) return v;
  }
  // Per chunk, a column costs a fixed overhead (its partial sums in and out, a mispredicted loop exit), against
  // which a chunk's activations should stay near L1. VNNI, 64-token tiles: 192 groups (48 KiB) was best or within
  // noise of it at 70, 90 and 95% for every benchmark shape (Zen 4, 1 thread; 64..128 groups lose 5-15% at 90% and
  // more, 256+ lose at 70% with K = 3072); the density no longer moves the optimum. AVX2: kSpmmAvx2ChunkGroups.
  return std::max<int64_t>(1, std::min<int64_t>(block_rows, preferred));
}

int64_t SpmmChunkPointers(const std::vector<int32_t>& col_ptr, const std::vector<int32_t>& block_rows, int64_t ncol,
                          int64_t block_row_count, int64_t chunk_groups, std::vector<int32_t>* chunk_ptr) {
  // per-chunk starting block of every column (block rows ascend within a column: validated)
  const int64_t chunks = (block_row_count + chunk_groups - 1) / chunk_groups;
  chunk_ptr->assign(static_cast<size_t>((chunks + 1) * (ncol + 1)), 0);
  for (int64_t j = 0; j < ncol; ++j) {
    int32_t i = col_ptr[j];
    for (int64_t c = 0; c <= chunks; ++c) {
      while (i < col_ptr[j + 1] && block_rows[i] < c * chunk_groups) ++i;
      (*chunk_ptr)[c * (ncol + 1) + j] = i;
    }
  }
  return chunks;
}

void PrepareBlockSparseS8Avx2(BlockSparseS8* b) {
  if (b->bk != 4 || b->bn != 1) throw std::invalid_argument("the AVX2 sparse kernel takes 4x1 blocks");
  const int64_t nnzb = b->nnzb();
  b->values.resize(static_cast<size_t>(4 * nnzb + 16), 0);  // the small-M kernel reads 4 blocks at a time
  b->w16.assign(static_cast<size_t>(2 * nnzb), 0);
  for (int64_t i = 0; i < nnzb; ++i)
    for (int p = 0; p < 2; ++p) {
      const uint32_t lo = static_cast<uint16_t>(static_cast<int16_t>(b->values[4 * i + 2 * p]));
      const uint32_t hi = static_cast<uint16_t>(static_cast<int16_t>(b->values[4 * i + 2 * p + 1]));
      b->w16[2 * i + p] = static_cast<int32_t>(lo | (hi << 16));
    }
  std::vector<int32_t>().swap(b->ell_w);  // the AVX2 kernels never read the VNNI small-M layout
  std::vector<int32_t>().swap(b->ell_off);
  std::vector<int32_t>().swap(b->ell_ptr);
  b->chunk_groups = SpmmChunkGroups(b->K / 4, kSpmmAvx2ChunkGroups);
  b->chunks = SpmmChunkPointers(b->col_ptr, b->block_rows, b->N, b->K / 4, b->chunk_groups, &b->chunk_ptr);
}

size_t PackedTokensS16Size(int64_t M, int64_t K) {
  if (M <= kSpmmS16GemvMaxM) return static_cast<size_t>(M * (K + 4));
  const int64_t T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile);
  return static_cast<size_t>((M + T - 1) / T * (K / 2) * T * 2);
}

void PackTokensS16Ref(const uint8_t* A, int64_t M, int64_t K, int64_t lda, int16_t* out) {
  if (M <= kSpmmS16GemvMaxM) {  // rows, each followed by 4 zeros
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) out[m * (K + 4) + k] = A[m * lda + k];
      for (int64_t k = K; k < K + 4; ++k) out[m * (K + 4) + k] = 0;
    }
    return;
  }
  const int64_t T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile), tiles = (M + T - 1) / T, pairs = K / 2;
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t p = 0; p < pairs; ++p)
      for (int64_t i = 0; i < T; ++i) {
        const int64_t m = t * T + i;
        int16_t* dst = out + ((t * pairs + p) * T + i) * 2;
        dst[0] = m < M ? A[m * lda + 2 * p] : 0;
        dst[1] = m < M ? A[m * lda + 2 * p + 1] : 0;
      }
}

void SpmmU8S8Ref(const SpmmU8S8Args& a, int64_t n_begin, int64_t n_end) {
  const BlockSparseS8& B = *a.B;
  std::vector<int32_t> acc(static_cast<size_t>(B.bn));
  for (int64_t m = 0; m < a.M; ++m) {
    const uint8_t* row = a.A + m * a.lda;
    for (int64_t j = n_begin / B.bn; j < n_end / B.bn; ++j) {
      for (int64_t c = 0; c < B.bn; ++c) acc[c] = 0;
      for (int32_t i = B.col_ptr[j]; i < B.col_ptr[j + 1]; ++i) {
        const int64_t k0 = static_cast<int64_t>(B.block_rows[i]) * B.bk;
        for (int64_t r = 0; r < B.bk; ++r) {
          const int32_t av = static_cast<int32_t>(row[k0 + r]) - a.a_zero_point;
          for (int64_t c = 0; c < B.bn; ++c) acc[c] += av * B.values[(i * B.bk + r) * B.bn + c];
        }
      }
      for (int64_t c = 0; c < B.bn; ++c) {
        const int64_t n = j * B.bn + c;
        float v = static_cast<float>(acc[c]) * a.epilogue.scale[n];
        if (a.epilogue.bias != nullptr) v += a.epilogue.bias[n];
        a.C[m * a.ldc + n] = v;
      }
    }
  }
}

int64_t PackedTokenTiles(int64_t M) {
  const int64_t T = SpmmTokenTile(M, kSpmmU8TokenTile);
  return M <= kSpmmGemvMaxM ? 0 : (M + T - 1) / T;
}

size_t PackedTokensSize(int64_t M, int64_t K) {
  return static_cast<size_t>(PackedTokenTiles(M) * (K / 4) * SpmmTokenTile(M, kSpmmU8TokenTile) * 4);
}

void PackTokensU8(const uint8_t* A, int64_t M, int64_t K, int64_t lda, uint8_t* out) {
  if (M <= kSpmmGemvMaxM) return;  // read directly by the small-M kernel
  const int64_t T = SpmmTokenTile(M, kSpmmU8TokenTile), tiles = (M + T - 1) / T, groups = K / 4;
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* dst = out + (t * groups + g) * T * 4;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t m = t * T + i;
        for (int j = 0; j < 4; ++j) dst[i * 4 + j] = m < M ? A[m * lda + g * 4 + j] : 0;
      }
    }
}

}  // namespace onnxq::kernels
