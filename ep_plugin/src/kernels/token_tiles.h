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

}  // namespace onnxq::kernels
