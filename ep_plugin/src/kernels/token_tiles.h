// Token tiles of the block-sparse kernels (tokens as SIMD lanes): activations repacked as
// [ceil(M / T)][units][T tokens][4 bytes], one 4-byte unit being 4 K of u8 (INT8 family) or a bf16 K pair (FP8
// family). Plain C++: the size rule is shared by the kernels and their references.
#pragma once
#include <cstdint>

namespace onnxq::kernels {

constexpr int64_t kSpmmTokens = 128;  // the widest token tile (8 zmm accumulators per column)

// 16, 32 or 64 tokens when M fits in one such tile (a decode step or a short sequence would otherwise pay for 128
// tokens of work), else 128.
inline int64_t SpmmTokenTile(int64_t M) { return M <= 16 ? 16 : M <= 32 ? 32 : M <= 64 ? 64 : kSpmmTokens; }

}  // namespace onnxq::kernels
