// Block-sparse FP8-weight family: C = (sum over kept 4 x 1 blocks of A_bf16 * W) * scale[n] + bias[n].
//
// Same compact format and tokens-as-lanes scheme as spmm_u8s8.h: each kept 4 x 1 FP8 block is widened (exactly)
// to two bf16 pairs at pack time; a block is then two 32-bit broadcasts multiplied with vdpbf16ps into 8 fp32
// accumulators (128 tokens) against the activations repacked as [K/2][128 tokens][2] bf16.
//
//   spmm_bf16_fp8w_ref.cc              scalar reference (fp32 sums in block order)
//   spmm_bf16_4x1_avx512bf16.cc        AVX512-BF16, 128-token tiles, L1-sized K chunks
//   spmm_f32_fp8w_4x1_avx2.cc          AVX2 + FMA (no BF16 dot product): activations widened to fp32 token tiles,
//                                      a block's bf16 pairs widened in registers, 4 vfmadd231ps per block and 8
//                                      tokens, 64-token tiles; tiny M: per column, 2 blocks per FMA
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/fp8.h"
#include "kernels/token_tiles.h"

namespace onnxq::kernels {

constexpr int64_t kSpmmBf16ChunkGroups = 48;  // 48 block rows x 2 pairs x 512 bytes: chunking measured neutral-to-better

struct BlockSparseBf16 {
  int64_t K = 0, N = 0;
  std::vector<uint32_t> pairs;      // 2 per block: bf16(w[k0]) | bf16(w[k0 + 1]) << 16, then k0 + 2, k0 + 3
                                    // (PrepareBlockSparseBf16Avx2 appends 4 zeros: its small-M kernel reads ahead)
  std::vector<int32_t> block_rows;  // nnzb
  std::vector<int32_t> col_ptr;     // N + 1
  std::vector<int32_t> chunk_ptr;   // per K chunk and column, first block at or after the chunk
  int64_t chunks = 0;
  int64_t chunk_groups = 0;
};

// 4 x 1 blocks only; validated like the integer family (ValidateBlockSparse).
BlockSparseBf16 MakeBlockSparseBf16(const uint8_t* values, int64_t values_count, Fp8Format format,
                                    const int16_t* block_rows, int64_t nnzb, const int32_t* col_ptr,
                                    int64_t col_ptr_count, int64_t K, int64_t N);

struct SpmmBf16Args {
  int64_t M = 0;
  const uint16_t* A = nullptr;  // M x K bf16, leading dimension K
  const BlockSparseBf16* B = nullptr;
  const float* scale = nullptr;  // N
  const float* bias = nullptr;   // N or null
  float* C = nullptr;
  int64_t ldc = 0;
};

void SpmmBf16Ref(const SpmmBf16Args& args, int64_t n_begin, int64_t n_end);

size_t PackedTokensBf16Size(int64_t M, int64_t K);
void PackTokensBf16Avx512(const uint16_t* A, int64_t M, int64_t K, uint16_t* out);
void SpmmBf16_4x1_Avx512(const SpmmBf16Args& args, const uint16_t* a_packed, int64_t n_begin, int64_t n_end);

// ---- AVX2 + FMA. Activations (bf16, exact in fp32) are widened and packed by PackTokensF32Avx2 into token tiles
// [ceil(M / T)][K][T tokens] fp32 (T = SpmmTokenTileAvx2(M, kSpmmAvx2TokenTile), pad tokens 0), or, for
// M <= kSpmmF32GemvMaxM, into M rows of K + 4 fp32 (the last 4 zero) read by the per-column small-M kernel.
// The weight must have been through PrepareBlockSparseBf16Avx2 (K chunks sized for AVX2 CPUs, padded pairs).
// Measured as kSpmmS16GemvMaxM: per column 64 us at M = 3 against 75 us for the 8-token tile, 84 against 75 at 4.
constexpr int64_t kSpmmF32GemvMaxM = 3;
constexpr int64_t kSpmmF32ChunkGroups = kSpmmAvx2ChunkBytes / (64 * 16);  // 64 tokens x 4 fp32 per group
void PrepareBlockSparseBf16Avx2(BlockSparseBf16* b);
size_t PackedTokensF32Size(int64_t M, int64_t K);
void PackTokensF32Avx2(const uint16_t* A, int64_t M, int64_t K, float* a_packed);
void SpmmF32_4x1_Avx2(const SpmmBf16Args& args, const float* a_packed, int64_t n_begin, int64_t n_end);

}  // namespace onnxq::kernels
