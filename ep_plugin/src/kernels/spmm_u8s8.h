// Block-sparse u8 x s8 GEMM family: C = float(sum over kept blocks (A - a_zp) * W) * scale[n] + bias[n].
//
// The weight is block-column major (see onnxq/sparse/format.py): for block column j, blocks col_ptr[j] ..
// col_ptr[j+1]-1 with block rows block_rows[i] and bk x bn values. Weight zero points are zero (pruned blocks must
// dequantize to exactly 0). Integer sums are exact, so every variant equals the reference bit for bit.
//
//   spmm_u8s8_ref.cc               scalar reference, any block shape
//   spmm_u8s8_4x1_avx512vnni.cc    4 x 1 blocks, tokens as SIMD lanes (C^T = W^T A^T): a block is one 32-bit
//                                  broadcast against 64 tokens x 4 K of repacked activations, 4 vpdpbusd per block
//   spmm_u8s8_4x1_gemv_avx512vnni.cc  4 x 1, tiny M: blocks as lanes, activations gathered
//   spmm_u8s8_4x1_avx2.cc          4 x 1 blocks, AVX2 (no VNNI, exact: no vpmaddubsw): tokens as lanes over
//                                  activations widened to s16 K pairs, a block = two broadcast s16 weight pairs,
//                                  vpmaddwd + vpaddd; tiny M: per column, 4 blocks (widened) per vpmaddwd
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/qgemm_u8s8.h"
#include "kernels/token_tiles.h"

namespace onnxq::kernels {

struct BlockSparseS8 {
  int64_t K = 0, N = 0, bk = 0, bn = 0;
  std::vector<int8_t> values;      // nnzb x bk x bn
  std::vector<int32_t> block_rows;  // nnzb
  std::vector<int32_t> col_ptr;     // N / bn + 1
  std::vector<int32_t> col_sum;     // per output column n: sum of its kept weights (activation zero point)
  // K is walked in chunks of chunk_groups 4-K groups (see SpmmChunkGroups):
  // chunk_ptr[c * (N/bn + 1) + j] = first block of column j whose block row is in chunk c or later.
  std::vector<int32_t> chunk_ptr;
  int64_t chunks = 0;
  int64_t chunk_groups = 0;
  // 4 x 1 only: the blocks again, per group of 16 columns, as steps of 16 lanes (lane j = column 16g + j, its s-th
  // block), padded with zero blocks to the group's longest column: ell_w = 4 weights as one int32, ell_off = byte
  // offset of the block's 4 K in an activation row. ell_ptr[g] = first step of group g. Small-M kernel only.
  std::vector<int32_t> ell_w, ell_off, ell_ptr;
  // 4 x 1 AVX2 kernel only (PrepareBlockSparseS8Avx2, which also appends 16 zeros to `values`: its small-M kernel
  // reads 4 blocks at a time): each block's weights as two s16 pairs, w0 | w1 << 16 and w2 | w3 << 16.
  std::vector<int32_t> w16;
  int64_t nnzb() const { return static_cast<int64_t>(block_rows.size()); }
};

// Checks the compact indices against K, N and each other (throws std::invalid_argument with the reason); every
// block-sparse weight passes through this before anything indexes with it, whatever its value type.
void ValidateBlockSparse(int64_t values_count, const int16_t* block_rows, int64_t nnzb, const int32_t* col_ptr,
                         int64_t col_ptr_count, int64_t K, int64_t N, int64_t bk, int64_t bn);

// Validates (as above, plus the int32-exact K limit of the integer kernels) and copies.
BlockSparseS8 MakeBlockSparseS8(const int8_t* values, int64_t values_count, const int16_t* block_rows, int64_t nnzb,
                                const int32_t* col_ptr, int64_t col_ptr_count, int64_t K, int64_t N, int64_t bk,
                                int64_t bn);

struct SpmmU8S8Args {
  int64_t M = 0;
  const uint8_t* A = nullptr;  // M x K, leading dimension lda
  int64_t lda = 0;
  int32_t a_zero_point = 0;
  const BlockSparseS8* B = nullptr;
  QGemmEpilogue epilogue;
  float* C = nullptr;
  int64_t ldc = 0;
};

// Columns [n_begin, n_end) of C for all rows; n_begin / n_end are multiples of bn.
void SpmmU8S8Ref(const SpmmU8S8Args& args, int64_t n_begin, int64_t n_end);

// 4 x 1 blocks with AVX512-VNNI. `a_packed` is A repacked by PackTokensU8 (shared by all column ranges):
// token tiles [ceil(M / T)][K/4][T][4 K], pad tokens zero, T = SpmmTokenTile(M, kSpmmU8TokenTile).
// K groups per chunk for a weight with K/4 block rows. ONNXQ_SPMM_CHUNK_GROUPS overrides it (benchmarks).
int64_t SpmmChunkGroups(int64_t block_rows, int64_t preferred = 192);
// chunk_ptr of a weight with `ncol` block columns (see BlockSparseS8::chunk_ptr); returns the chunk count.
int64_t SpmmChunkPointers(const std::vector<int32_t>& col_ptr, const std::vector<int32_t>& block_rows, int64_t ncol,
                          int64_t block_row_count, int64_t chunk_groups, std::vector<int32_t>* chunk_ptr);
// M <= kSpmmGemvMaxM: SpmmU8S8_4x1_Avx512Vnni reads A directly (blocks as lanes, activations gathered), nothing is
// packed and PackedTokensSize is 0.
constexpr int64_t kSpmmGemvMaxM = 1;  // measured: at M = 2 the 16-token tile is as fast
size_t PackedTokensSize(int64_t M, int64_t K);
void PackTokensU8(const uint8_t* A, int64_t M, int64_t K, int64_t lda, uint8_t* a_packed);
void PackTokensU8Avx512(const uint8_t* A, int64_t M, int64_t K, int64_t lda, uint8_t* a_packed);  // same bytes
// Float activations quantized straight into the token tiles: the bytes PackTokensU8 would make of
// QuantizeLinearU8Ref's rows. Only where QuantizeReciprocalIsExact(scale, zero_point) and M > kSpmmGemvMaxM.
// Token tiles [tile_begin, tile_end) only (tile_end -1: to the last), so threads can share the work.
int64_t PackedTokenTiles(int64_t M);
void QuantizePackTokensU8Avx512(const float* x, int64_t M, int64_t K, int64_t ldx, float scale, int32_t zero_point,
                                uint8_t* a_packed, int64_t tile_begin = 0, int64_t tile_end = -1);
void SpmmU8S8_4x1_Avx512Vnni(const SpmmU8S8Args& args, const uint8_t* a_packed, int64_t n_begin, int64_t n_end);
void SpmmU8S8_4x1_Gemv_Avx512Vnni(const SpmmU8S8Args& args, int64_t n_begin, int64_t n_end);  // any M; fast for tiny M

// ---- AVX2 (4 x 1). Activations are widened to s16 and packed by PackTokensS16Avx2 into token tiles
// [ceil(M / T)][K/2 pairs][T tokens][2 x s16] (T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile), pad tokens 0), or,
// for M <= kSpmmS16GemvMaxM, into M rows of K + 4 s16 (the last 4 zero) read by the per-column small-M kernel.
// The weight must have been through PrepareBlockSparseS8Avx2 (s16 weight pairs, K chunks sized for AVX2 CPUs;
// it drops the VNNI small-M layout, so the VNNI kernels must not run that weight afterwards).
// Measured (Zen 5 at ONNXQ_MAX_ISA=avx2, 768 x 3072, 90%): per column 44 us at M = 2 against 48 us for the
// 8-token tile, 61 against 48 at M = 3.
constexpr int64_t kSpmmS16GemvMaxM = 2;
constexpr int64_t kSpmmAvx2ChunkGroups = kSpmmAvx2ChunkBytes / (64 * 8);  // 64 tokens x 4 s16 per group
void PrepareBlockSparseS8Avx2(BlockSparseS8* b);
size_t PackedTokensS16Size(int64_t M, int64_t K);
void PackTokensS16Ref(const uint8_t* A, int64_t M, int64_t K, int64_t lda, int16_t* a_packed);  // the same values
void PackTokensS16Avx2(const uint8_t* A, int64_t M, int64_t K, int64_t lda, int16_t* a_packed);
void SpmmU8S8_4x1_Avx2(const SpmmU8S8Args& args, const int16_t* a_packed, int64_t n_begin, int64_t n_end);

}  // namespace onnxq::kernels
