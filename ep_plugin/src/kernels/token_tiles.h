// Token tiles of the block-sparse kernels (tokens as SIMD lanes): activations repacked as
// [ceil(M / T)][units][T tokens][4 bytes], one 4-byte unit being 4 K of u8 (INT8 family) or a bf16 K pair (FP8
// family). Plain C++: the size rule is shared by the kernels and their references.
#pragma once
#include <cstdint>

namespace onnxq::kernels {

constexpr int64_t kSpmmTokens = 128;  // the widest token tile (8 zmm accumulators per column)

// The smallest of 16, 32, 64 (, 128) tokens that holds M, at most max_tile: a decode step or a short sequence does
// not pay for a wide tile's work. Each family passes the widest tile measured to pay for it (kSpmmU8TokenTile,
// kSpmmBf16TokenTile).
inline int64_t SpmmTokenTile(int64_t M, int64_t max_tile) {
  const int64_t t = M <= 16 ? 16 : M <= 32 ? 32 : M <= 64 ? 64 : kSpmmTokens;
  return t < max_tile ? t : max_tile;
}

// INT8 4 x 1 (Zen 4, 1 thread, 90%, tools/bench_sparse.py shapes; docs/benchmarks.md): 64 tokens with K chunks of
// 192 groups (48 KiB of activations) ran 2.25-2.45 dense-equivalent TOPS against 1.9-2.16 for 128 tokens at any
// chunk size: the smaller tile's activations stay near L1, which outweighs walking each column's blocks twice.
constexpr int64_t kSpmmU8TokenTile = 64;
// FP8 / BF16 4 x 1: 128 (not re-measured since the INT8 change).
constexpr int64_t kSpmmBf16TokenTile = kSpmmTokens;

// AVX2 (8 tokens per ymm): the smallest of 8, 16, 32, 64 tokens that holds M, at most max_tile. The AVX2 tiles
// are 64 tokens at most: 8 accumulators plus the broadcast weights fill the 16 ymm registers.
inline int64_t SpmmTokenTileAvx2(int64_t M, int64_t max_tile) {
  const int64_t t = M <= 8 ? 8 : M <= 16 ? 16 : M <= 32 ? 32 : 64;
  return t < max_tile ? t : max_tile;
}
constexpr int64_t kSpmmAvx2TokenTile = 64;
// Activation bytes of one K chunk of the AVX2 kernels' token tiles. Zen 5 at ONNXQ_MAX_ISA=avx2, 1 thread,
// BERT-base shapes: 48 KiB was best or within noise of it at 70-90% for INT8 (24 KiB lost 15-30% at 90%, 96 KiB
// lost up to 9% at 70%) and FP8; the VNNI kernel's best on Zen 4's 32 KiB L1 is the same 48 KiB. A weight's
// chunks are sized for 64-token tiles; smaller tiles walk as many of them at once as fit (a decode-sized tile is
// not chunked at all: at M = 8 the per-(column, chunk) overhead was most of the time).
constexpr int64_t kSpmmAvx2ChunkBytes = 48 * 1024;
// The AVX2 kernels walk columns in panels of this many bytes of sums per chunk pass (the int32 / fp32 sums of 128
// columns x 64 tokens), so that the sums carried between K chunks stay in L1 / L2 instead of streaming the whole
// column range's through memory at every chunk (3072 columns: 768 KiB each way). Neutral on Zen 5 (1 MiB L2);
// meant for the 512 KiB L2 of Zen 1-3.
constexpr int64_t kSpmmAvx2PanelBytes = 32 * 1024;

}  // namespace onnxq::kernels
