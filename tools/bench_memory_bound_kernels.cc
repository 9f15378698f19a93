// Kernel-level timing of the memory-bound kernels' variants (residual + LayerNorm, the FP8 / bf16 conversions) on
// BERT-base activation shapes, one thread: every variant the CPU offers under the ISA ceiling, in one process,
// interleaved passes with a rotating order, medians. Compiled by hand against the library the build made:
//
//   g++ -O2 -std=c++17 -Iep_plugin/src tools/bench_memory_bound_kernels.cc build-dev/libonnxq_kernels.a -lpthread
//       -o /tmp/bench_mb && taskset -c 0 /tmp/bench_mb [passes]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/fp8.h"
#include "kernels/layer_norm.h"

using namespace onnxq::kernels;
using Clock = std::chrono::steady_clock;

struct V { std::string name; std::function<void()> fn; std::vector<double> t; };

void Run(const char* title, std::vector<V> vs, int reps, int passes, double elems) {
  for (auto& v : vs) for (int i = 0; i < 3; ++i) v.fn();  // warm
  for (int p = 0; p < passes; ++p)
    for (size_t j = 0; j < vs.size(); ++j) {
      V& v = vs[(j + p) % vs.size()];  // rotate the order
      std::vector<double> s;
      for (int r = 0; r < reps; ++r) {
        auto t0 = Clock::now(); v.fn();
        s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      std::sort(s.begin(), s.end()); v.t.push_back(s[s.size() / 2]);
    }
  printf("%s\n", title);
  double ref = 0;
  for (auto& v : vs) { std::sort(v.t.begin(), v.t.end()); if (v.name == "ref") ref = v.t[v.t.size() / 2]; }
  for (auto& v : vs) {
    double m = v.t[v.t.size() / 2];
    printf("  %-7s median %8.2f us  (p10 %8.2f  p90 %8.2f)  %6.2f ns/value  %5.2fx ref\n", v.name.c_str(), m * 1e6,
           v.t[v.t.size() / 10] * 1e6, v.t[v.t.size() * 9 / 10] * 1e6, m * 1e9 / elems, ref / m);
  }
  fflush(stdout);
}

int main(int argc, char** argv) {
  const int passes = argc > 1 ? atoi(argv[1]) : 21;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  const CpuFeatures f = GetCpuFeatures();
  printf("CPU features in use: %s\n", CpuFeaturesString(f).c_str());
  for (int64_t M : {128, 512}) {
    const int64_t D = 768;
    std::vector<float> x(M * D), skip(M * D), y(M * D), bias(D), gamma(D), beta(D);
    for (auto& v : x) v = nd(rng) * 3 + 1;
    for (auto& v : skip) v = nd(rng);
    for (int64_t d = 0; d < D; ++d) { bias[d] = nd(rng); gamma[d] = 1 + 0.1f * nd(rng); beta[d] = nd(rng); }
    LayerNormArgs a; a.x = x.data(); a.skip = skip.data(); a.bias = bias.data(); a.gamma = gamma.data();
    a.beta = beta.data(); a.D = D; a.y = y.data();
    std::vector<V> vs = {{"ref", [&] { LayerNormRef(a, 0, M); }, {}}};
    if (f.avx2 && f.fma && f.f16c) vs.push_back({"avx2", [&] { LayerNormAvx2(a, 0, M); }, {}});
    if (f.avx512f && f.avx512bw && f.avx512vl) vs.push_back({"avx512", [&] { LayerNormAvx512(a, 0, M); }, {}});
    char t[128]; snprintf(t, sizeof t, "LayerNorm %ldx%ld, skip + bias + beta", (long)M, (long)D);
    Run(t, vs, 50, passes, double(M * D));
  }
  {
    const size_t n = 128 * 768;
    std::vector<float> x(n), yf(n); std::vector<uint16_t> y16(n); std::vector<uint8_t> y8(n), codes(n);
    for (auto& v : x) v = nd(rng) * 20;
    for (size_t i = 0; i < n; ++i) codes[i] = uint8_t(rng());
    const float s = 0.037f;
    auto add = [](auto variants, auto call) {
      std::vector<V> vs;
      for (const auto& v : variants) vs.insert(vs.begin(), {v.name, [=] { call(v.fn); }, {}});  // ref first
      return vs;
    };
    Run("to_bf16 128x768", add(ConvertToBf16Variants(), [&](ConvertToBf16Fn* fn) { fn(x.data(), n, y16.data()); }),
        50, passes, double(n));
    for (auto fmt : {Fp8Format::kE4M3FN, Fp8Format::kE5M2}) {
      const std::string fn = fmt == Fp8Format::kE4M3FN ? " e4m3fn" : " e5m2";
      Run(("quantize_fp8_to_bf16 128x768" + fn).c_str(),
          add(QuantizeFp8ToBf16Variants(), [&](QuantizeFp8ToBf16Fn* k) { k(x.data(), n, s, fmt, y16.data()); }), 30,
          passes, double(n));
      Run(("quantize_fp8 128x768" + fn).c_str(),
          add(QuantizeFp8Variants(), [&](QuantizeFp8Fn* k) { k(x.data(), n, s, fmt, y8.data()); }), 30, passes,
          double(n));
      Run(("dequantize_fp8 128x768" + fn).c_str(),
          add(DequantizeFp8Variants(), [&](DequantizeFp8Fn* k) { k(codes.data(), n, s, fmt, yf.data()); }), 30,
          passes, double(n));
    }
  }
}
