// Runtime CPU feature detection, used to pick kernels (the library itself is built for baseline x86-64).
#pragma once
#include <string>

namespace onnxq::kernels {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_vbmi = false;
  bool amx_tile = false;
  bool amx_int8 = false;
  bool amx_bf16 = false;
};

// Detected once (cpuid + xgetbv, so OS support for the register state counts), then cached.
const CpuFeatures& GetCpuFeatures();

// "avx512_vnni avx512_bf16 ..." — for logs, `onnxq --version` and tests.
std::string CpuFeaturesString(const CpuFeatures& f);

}  // namespace onnxq::kernels
