// Exhaustive check of the divide-free AVX-512 activation quantizer: every float32 bit pattern x (2^32 values),
// for a set of scales and zero points, against the scalar reference (a true division). Run by hand after touching
// kernels/quantize_avx512.cc; it is too slow for the test suite (about 2 s per scale and zero point):
//
//   g++ -O2 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mfma -Iep_plugin/src \
//       tools/quantize_exhaustive.cc ep_plugin/src/kernels/quantize_avx512.cc ep_plugin/src/kernels/quantize_ref.cc \
//       ep_plugin/src/kernels/cpu_features.cc -o /tmp/quantize_exhaustive && /tmp/quantize_exhaustive
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/quantize.h"

using namespace onnxq::kernels;

int main(int argc, char** argv) {
  std::vector<float> scales = {0.02f, 1.0f / 3.0f, 0.1f, 7.3e-3f, 3.0f, 1.0f, 0.5f, 255.0f, 1e-6f, 1e6f,
                               0x1.fffffep-1f, 0x1.000002p0f, 0x1.fffffep-8f, 0x1p-96f, 0x1.fffffep95f, 0.0117647f,
                               0.0235294f, 6.1e-5f, 1.7014118e38f / 1e20f, 0x1.555556p-2f, 0x1.99999ap-4f};
  if (argc > 1) scales.resize(static_cast<size_t>(std::atoi(argv[1])));
  const int32_t zps[] = {0, 128, 255};
  constexpr size_t kChunk = 1 << 20;
  std::vector<float> x(kChunk);
  std::vector<uint8_t> fast(kChunk), ref(kChunk);
  uint64_t mismatches = 0;
  for (float s : scales) {
    for (int32_t zp : zps) {
      if (!QuantizeReciprocalIsExact(s, zp)) {
        std::printf("scale %a zp %d: takes the divide, skipped\n", s, zp);
        continue;
      }
      uint64_t bad = 0;
      for (uint64_t base = 0; base < (1ull << 32); base += kChunk) {
        for (size_t i = 0; i < kChunk; ++i) {
          const uint32_t bits = static_cast<uint32_t>(base + i);
          std::memcpy(&x[i], &bits, 4);
        }
        QuantizeLinearU8Avx512(x.data(), kChunk, s, zp, fast.data());
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
