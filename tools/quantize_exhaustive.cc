// Exhaustive check of the divide-free activation quantizers (AVX-512 and AVX2): every float32 bit pattern x (2^32
// values), for a set of scales and zero points, against the scalar reference (a true division). Run by hand after
// touching kernels/quantize_avx512.cc or kernels/quantize_avx2.cc; it is too slow for the test suite (about 2 s per
// scale and zero point). Each ISA file is compiled with its own flags, as in the library:
//
//   g++ -O2 -std=c++17 -Iep_plugin/src -c ep_plugin/src/kernels/quantize_avx2.cc -mavx2 -mfma -o /tmp/q_avx2.o
//   g++ -O2 -std=c++17 -Iep_plugin/src -c ep_plugin/src/kernels/quantize_avx512.cc \
//       -mavx512f -mavx512bw -mavx512vl -mfma -o /tmp/q_avx512.o
//   g++ -O2 -std=c++17 -Iep_plugin/src tools/quantize_exhaustive.cc ep_plugin/src/kernels/quantize_ref.cc \
//       ep_plugin/src/kernels/cpu_features.cc /tmp/q_avx2.o /tmp/q_avx512.o -o /tmp/quantize_exhaustive
//   nice /tmp/quantize_exhaustive avx512        # or avx2; an optional count keeps only the first N scales
//   nice /tmp/quantize_exhaustive avx2 divide   # the always-dividing variant instead
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/quantize.h"

using namespace onnxq::kernels;

int main(int argc, char** argv) {
  QuantizeLinearU8Fn fn = nullptr;
  const char* isa = argc > 1 ? argv[1] : "";
  int arg = 2;
  const bool divide = argc > arg && std::strcmp(argv[arg], "divide") == 0;
  if (divide) ++arg;
  const CpuFeatures f = DetectedCpuFeatures();
  if (std::strcmp(isa, "avx512") == 0 && f.avx512f && f.avx512bw && f.avx512vl)
    fn = divide ? QuantizeLinearU8Avx512Divide : QuantizeLinearU8Avx512;
  else if (std::strcmp(isa, "avx2") == 0 && f.avx2 && f.fma)
    fn = divide ? QuantizeLinearU8Avx2Divide : QuantizeLinearU8Avx2;
  if (fn == nullptr) {
    std::printf("usage: %s avx512|avx2 [divide] [number of scales] (the ISA must be on this CPU)\n", argv[0]);
    return 2;
  }
  std::printf("checking QuantizeLinearU8%s%s\n", std::strcmp(isa, "avx2") == 0 ? "Avx2" : "Avx512", divide ? "Divide" : "");
  std::vector<float> scales = {0.02f, 1.0f / 3.0f, 0.1f, 7.3e-3f, 3.0f, 1.0f, 0.5f, 255.0f, 1e-6f, 1e6f,
                               0x1.fffffep-1f, 0x1.000002p0f, 0x1.fffffep-8f, 0x1p-96f, 0x1.fffffep95f, 0.0117647f,
                               0.0235294f, 6.1e-5f, 1.7014118e38f / 1e20f, 0x1.555556p-2f, 0x1.99999ap-4f};
  if (argc > arg) scales.resize(static_cast<size_t>(std::atoi(argv[arg])));
  const int32_t zps[] = {0, 128, 255};
  constexpr size_t kChunk = 1 << 20;
  std::vector<float> x(kChunk);
  std::vector<uint8_t> fast(kChunk), ref(kChunk);
  uint64_t mismatches = 0;
  for (float s : scales) {
    for (int32_t zp : zps) {
      if (!divide && !QuantizeReciprocalIsExact(s, zp)) {
        std::printf("scale %a zp %d: takes the divide, skipped\n", s, zp);
        continue;
      }
      uint64_t bad = 0;
      for (uint64_t base = 0; base < (1ull << 32); base += kChunk) {
        for (size_t i = 0; i < kChunk; ++i) {
          const uint32_t bits = static_cast<uint32_t>(base + i);
          std::memcpy(&x[i], &bits, 4);
        }
        fn(x.data(), kChunk, s, zp, fast.data());
        QuantizeLinearU8Ref(x.data(), kChunk, s, zp, ref.data());
        for (size_t i = 0; i < kChunk; ++i) {
          if (fast[i] != ref[i] && bad++ < 5)
            std::printf("  MISMATCH scale %a zp %d x %a: fast %u ref %u\n", s, zp, x[i], fast[i], ref[i]);
        }
      }
      std::printf("scale %a zp %d: %llu mismatches over 2^32 inputs\n", s, zp, static_cast<unsigned long long>(bad));
      std::fflush(stdout);
      mismatches += bad;
    }
  }
  std::printf(mismatches == 0 ? "OK\n" : "FAILED\n");
  return mismatches == 0 ? 0 : 1;
}
