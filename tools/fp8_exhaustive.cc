// Exhaustive check of the vector FP8 / bf16 conversions (kernels/fp8.h) against their scalar references: every
// float32 bit pattern through ConvertToBf16, and through QuantizeFp8ToBf16 and QuantizeFp8 for both formats and a
// set of scales (odd ones too); DequantizeFp8 for every code and scale. Each variant the CPU offers under the ISA
// ceiling (ONNXQ_MAX_ISA) is checked; the arrays' lengths vary so the tails are covered as well. Run by hand after
// touching kernels/fp8_*.cc; it is too slow for the test suite (about a minute per scale, format and function):
//
//   g++ -O2 -std=c++17 -Iep_plugin/src tools/fp8_exhaustive.cc build-dev/libonnxq_kernels.a -lpthread -o /tmp/fp8x
//   /tmp/fp8x [number of scales]     (link the library the build made: it is what ships)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/fp8.h"

using namespace onnxq::kernels;

namespace {

constexpr size_t kChunk = 1 << 20;

template <typename T>
uint64_t Compare(const char* what, const char* variant, uint64_t base, const T* ref, const T* got, size_t n) {
  uint64_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (ref[i] != got[i] && bad++ < 5)
      std::printf("  %s %s: x bits %08llx: ref %llx, got %llx\n", what, variant,
                  static_cast<unsigned long long>(base + i), static_cast<unsigned long long>(ref[i]),
                  static_cast<unsigned long long>(got[i]));
  return bad;
}

// Calls check(x, n, base) over all 2^32 float bit patterns in chunks (the length varies by up to 15 to move the
// tail).
template <typename Check>
uint64_t EveryFloat(Check check) {
  std::vector<float> x(kChunk);
  uint64_t bad = 0;
  for (uint64_t base = 0; base < (1ull << 32); base += kChunk) {
    for (size_t i = 0; i < kChunk; ++i) {
      const uint32_t b = static_cast<uint32_t>(base + i);
      std::memcpy(&x[i], &b, 4);
    }
    bad += check(x.data(), kChunk - (base / kChunk) % 16, base);
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<float> scales = {1.0f, 0.037f, 1.0f / 3.0f, 3.0f, 0x1p-12f, 1e-30f, 7.5e37f, 0x1.fffffep-1f};
  if (argc > 1) scales.resize(static_cast<size_t>(std::atoi(argv[1])));
  std::printf("CPU features in use: %s\n", CpuFeaturesString(GetCpuFeatures()).c_str());
  std::vector<uint16_t> r16(kChunk), g16(kChunk);
  std::vector<uint8_t> r8(kChunk), g8(kChunk);
  uint64_t total = 0;

  for (const auto& v : ConvertToBf16Variants()) {
    if (std::strcmp(v.name, "ref") == 0) continue;
    const uint64_t bad = EveryFloat([&](const float* x, size_t n, uint64_t base) {
      ConvertToBf16Ref(x, n, r16.data());
      v.fn(x, n, g16.data());
      return Compare("to_bf16", v.name, base, r16.data(), g16.data(), n);
    });
    std::printf("to_bf16 %s: %llu mismatches\n", v.name, static_cast<unsigned long long>(bad));
    std::fflush(stdout);
    total += bad;
  }

  for (Fp8Format f : {Fp8Format::kE4M3FN, Fp8Format::kE5M2}) {
    const char* fname = f == Fp8Format::kE4M3FN ? "e4m3fn" : "e5m2";
    for (float s : scales) {
      for (const auto& v : QuantizeFp8ToBf16Variants()) {
        if (std::strcmp(v.name, "ref") == 0) continue;
        const uint64_t bad = EveryFloat([&](const float* x, size_t n, uint64_t base) {
          QuantizeFp8ToBf16Ref(x, n, s, f, r16.data());
          v.fn(x, n, s, f, g16.data());
          return Compare("quantize_fp8_to_bf16", v.name, base, r16.data(), g16.data(), n);
        });
        std::printf("quantize_fp8_to_bf16 %s %s scale %a: %llu mismatches\n", v.name, fname, s,
                    static_cast<unsigned long long>(bad));
        std::fflush(stdout);
        total += bad;
      }
      for (const auto& v : QuantizeFp8Variants()) {
        if (std::strcmp(v.name, "ref") == 0) continue;
        const uint64_t bad = EveryFloat([&](const float* x, size_t n, uint64_t base) {
          QuantizeFp8Ref(x, n, s, f, r8.data());
          v.fn(x, n, s, f, g8.data());
          return Compare("quantize_fp8", v.name, base, r8.data(), g8.data(), n);
        });
        std::printf("quantize_fp8 %s %s scale %a: %llu mismatches\n", v.name, fname, s,
                    static_cast<unsigned long long>(bad));
        std::fflush(stdout);
        total += bad;
      }
      // every code at every lane position and tail length, compared as bit patterns
      uint8_t codes[256 + 16];
      for (int i = 0; i < 256 + 16; ++i) codes[i] = static_cast<uint8_t>(i * 7 + 3);
      for (const auto& v : DequantizeFp8Variants()) {
        uint64_t bad = 0;
        for (size_t n = 1; n <= 256 + 16; ++n) {
          float ref[256 + 16], got[256 + 16];
          DequantizeFp8Ref(codes, n, s, f, ref);
          v.fn(codes, n, s, f, got);
          bad += std::memcmp(ref, got, n * sizeof(float)) != 0;
        }
        if (bad != 0) std::printf("dequantize_fp8 %s %s scale %a: %llu mismatching lengths\n", v.name, fname, s,
                                  static_cast<unsigned long long>(bad));
        total += bad;
      }
    }
  }
  std::printf("%s: %llu mismatches in all\n", total == 0 ? "OK" : "FAILED", static_cast<unsigned long long>(total));
  return total == 0 ? 0 : 1;
}
