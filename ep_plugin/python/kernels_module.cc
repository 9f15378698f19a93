// onnxq._kernels: the EP's kernels reachable from Python, so the same tests and benchmarks drive them
// without a session. Arrays are checked here (shape, dtype, contiguity) before any kernel sees them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/fp8.h"
#include "kernels/gemm_bf16_fp8w.h"
#include "kernels/layer_norm.h"
#include "kernels/parallel_gemm.h"
#include "kernels/qgemm_u8s8.h"
#include "kernels/qgemm_u8s8_parallel.h"
#include "kernels/spmm_bf16_fp8w.h"
#include "kernels/spmm_u8s8.h"
#include "kernels/quantize.h"

namespace py = pybind11;
using namespace onnxq::kernels;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

const QGemmU8S8Kernel& KernelByName(const std::string& name) {
  if (name.empty()) return SelectQGemmU8S8Kernel();
  const QGemmU8S8Kernel* k = FindQGemmU8S8Kernel(name.c_str());
  if (k == nullptr) throw std::invalid_argument("qgemm kernel '" + name + "' is not available on this CPU");
  return *k;
}

// Weights packed once for one kernel variant, then run on many activations (tests and benchmarks).
class PackedQGemmU8S8 {
 public:
  PackedQGemmU8S8(CArray<int8_t> b, CArray<int8_t> b_zero_point, CArray<float> scale, std::optional<CArray<float>> bias,
                  const std::string& kernel, int threads)
      : kernel_(&KernelByName(kernel)), pool_(threads > 0 ? threads : 1) {
    if (b.ndim() != 2) throw std::invalid_argument("b must be K x N");
    const int64_t K = b.shape(0), N = b.shape(1);
    if (K == 0 || N == 0) throw std::invalid_argument("K and N must be positive");
    if (K > kQGemmMaxK) throw std::invalid_argument("K exceeds the int32-exact limit QGEMM_MAX_K");
    if (scale.size() != N) throw std::invalid_argument("scale must have N elements");
    if (bias && bias->size() != N) throw std::invalid_argument("bias must have N elements");
    if (b_zero_point.size() != 1 && b_zero_point.size() != N)
      throw std::invalid_argument("b_zero_point must have 1 or N elements");
    packed_ = PackWeightsS8(kernel_->layout, b.data(), K, N, b_zero_point.data(), b_zero_point.size());
    scale_.assign(scale.data(), scale.data() + N);
    if (bias) bias_.assign(bias->data(), bias->data() + N);
  }

  py::array_t<float> Run(CArray<uint8_t> a, int32_t a_zero_point) {
    if (a.ndim() != 2 || a.shape(1) != packed_.K) throw std::invalid_argument("a must be M x K");
    const int64_t M = a.shape(0), K = packed_.K, N = packed_.N, lda = RoundUp(K, kernel_->k_align);
    std::vector<uint8_t> padded(static_cast<size_t>(RoundUp(M, kernel_->m_align) * lda), 0);
    for (int64_t m = 0; m < M; ++m) std::memcpy(padded.data() + m * lda, a.data() + m * K, static_cast<size_t>(K));
    py::array_t<float> c({M, N});
    QGemmU8S8Args args;
    args.M = M;
    args.A = padded.data();
    args.lda = lda;
    args.a_zero_point = a_zero_point;
    args.B = &packed_;
    args.epilogue.scale = scale_.data();
    args.epilogue.bias = bias_.empty() ? nullptr : bias_.data();
    args.C = c.mutable_data();
    args.ldc = N;
    {
      py::gil_scoped_release release;
      QGemmU8S8Parallel(*kernel_, args, &pool_);
    }
    return c;
  }

  // Timing loop in C++ (no Python overhead per call): returns seconds per call for each of `reps` calls.
  std::vector<double> Time(CArray<uint8_t> a, int32_t a_zero_point, int reps) {
    if (a.ndim() != 2 || a.shape(1) != packed_.K) throw std::invalid_argument("a must be M x K");
    const int64_t M = a.shape(0), K = packed_.K, N = packed_.N, lda = RoundUp(K, kernel_->k_align);
    std::vector<uint8_t> padded(static_cast<size_t>(RoundUp(M, kernel_->m_align) * lda), 0);
    for (int64_t m = 0; m < M; ++m) std::memcpy(padded.data() + m * lda, a.data() + m * K, static_cast<size_t>(K));
    std::vector<float> c(static_cast<size_t>(M * N));
    QGemmU8S8Args args;
    args.M = M;
    args.A = padded.data();
    args.lda = lda;
    args.a_zero_point = a_zero_point;
    args.B = &packed_;
    args.epilogue.scale = scale_.data();
    args.epilogue.bias = bias_.empty() ? nullptr : bias_.data();
    args.C = c.data();
    args.ldc = N;
    std::vector<double> out;
    py::gil_scoped_release release;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      QGemmU8S8Parallel(*kernel_, args, &pool_);
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

  std::string kernel() const { return kernel_->name; }

 private:
  const QGemmU8S8Kernel* kernel_;
  onnxq::ThreadPool pool_;
  PackedWeightsS8 packed_;
  std::vector<float> scale_, bias_;
};

py::array_t<float> QGemmU8S8Py(CArray<uint8_t> a, int32_t a_zero_point, CArray<int8_t> b, CArray<int8_t> b_zero_point,
                               CArray<float> scale, std::optional<CArray<float>> bias, const std::string& kernel,
                               int threads) {
  if (a.ndim() != 2 || b.ndim() != 2) throw std::invalid_argument("a must be M x K and b K x N");
  if (b.shape(0) != a.shape(1)) throw std::invalid_argument("a and b disagree on K");
  PackedQGemmU8S8 g(b, b_zero_point, scale, bias, kernel, threads);
  return g.Run(a, a_zero_point);
}

py::array_t<uint8_t> QuantizeLinearU8Py(CArray<float> x, float scale, int32_t zero_point, const std::string& variant) {
  py::array_t<uint8_t> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  // '' the best variant, 'ref' the scalar reference, 'divide' the always-dividing variant of the best ISA
  QuantizeLinearU8Fn fn = SelectQuantizeLinearU8();
  if (variant == "ref") {
    fn = QuantizeLinearU8Ref;
  } else if (variant == "divide") {
    fn = SelectQuantizeLinearU8Divide();
    if (fn == nullptr)
      throw std::invalid_argument("quantize variant 'divide' is not available at ISA level '" +
                                  std::string(IsaLevelName(ActiveIsaLevel())) + "' (it needs avx2 or above)");
  } else if (!variant.empty()) {
    throw std::invalid_argument("quantize variant must be '', 'ref' or 'divide'");
  }
  fn(x.data(), static_cast<size_t>(x.size()), scale, zero_point, y.mutable_data());
  return y;
}

// The sparse kernels' token tiles made from float rows: "fused" quantizes straight into them (what the EP does
// for a float input), "ref" quantizes rows with the scalar reference and repacks them with the scalar packer.
py::array_t<uint8_t> QuantizePackTokensU8Py(CArray<float> x, float scale, int32_t zero_point, const std::string& variant) {
  if (x.ndim() != 2 || x.shape(1) % 4 != 0) throw std::invalid_argument("x must be [M, K] with K a multiple of 4");
  const int64_t M = x.shape(0), K = x.shape(1);
  if (M <= kSpmmGemvMaxM) throw std::invalid_argument("M = 1 is not packed (the small-M kernel reads rows)");
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(PackedTokensSize(M, K)));
  if (variant == "fused") {
    if (!GetCpuFeatures().avx512_vnni) throw std::invalid_argument("the fused variant needs AVX512-VNNI");
    if (!QuantizeReciprocalIsExact(scale, zero_point))
      throw std::invalid_argument("the fused variant needs a scale and zero point the divide-free quantizer takes");
    QuantizePackTokensU8Avx512(x.data(), M, K, K, scale, zero_point, out.mutable_data());
  } else if (variant == "ref") {
    std::vector<uint8_t> rows(static_cast<size_t>(M * K));
    QuantizeLinearU8Ref(x.data(), rows.size(), scale, zero_point, rows.data());
    PackTokensU8(rows.data(), M, K, K, out.mutable_data());
  } else {
    throw std::invalid_argument("variant must be 'fused' or 'ref'");
  }
  return out;
}

// The AVX2 sparse INT8 kernel's packed activations (s16 token tiles, or rows for tiny M) from u8 rows, by the
// AVX2 packer ("avx2") or the scalar one ("ref").
py::array_t<int16_t> PackTokensS16Py(CArray<uint8_t> a, const std::string& variant) {
  if (a.ndim() != 2 || a.shape(1) % 4 != 0) throw std::invalid_argument("a must be [M, K] with K a multiple of 4");
  const int64_t M = a.shape(0), K = a.shape(1);
  py::array_t<int16_t> out(static_cast<py::ssize_t>(PackedTokensS16Size(M, K)));
  if (variant == "avx2") {
    const CpuFeatures f = GetCpuFeatures();
    if (!(f.avx2 && f.fma && f.f16c))
      throw std::invalid_argument("pack_tokens_s16 variant 'avx2' is not available on this CPU");
    PackTokensS16Avx2(a.data(), M, K, K, out.mutable_data());
  } else if (variant == "ref") {
    PackTokensS16Ref(a.data(), M, K, K, out.mutable_data());
  } else {
    throw std::invalid_argument("variant must be 'avx2' or 'ref'");
  }
  return out;
}

// Residual + LayerNorm over the last axis of x [rows, D] (kernels/layer_norm.h); variant "ref", "avx2" or "avx512".
py::array_t<float> LayerNormPy(CArray<float> x, std::optional<CArray<float>> skip, std::optional<CArray<float>> bias,
                               CArray<float> gamma, std::optional<CArray<float>> beta, float epsilon,
                               const std::string& variant) {
  if (x.ndim() != 2 || x.shape(1) < 1) throw std::invalid_argument("x must be [rows, D]");
  const int64_t rows = x.shape(0), D = x.shape(1);
  auto check_d = [&](const CArray<float>& v, const char* what) {
    if (v.ndim() != 1 || v.shape(0) != D) throw std::invalid_argument(std::string(what) + " must be [D]");
  };
  check_d(gamma, "gamma");
  if (bias) check_d(*bias, "bias");
  if (beta) check_d(*beta, "beta");
  if (skip && (skip->ndim() != 2 || skip->shape(0) != rows || skip->shape(1) != D))
    throw std::invalid_argument("skip must have x's shape");
  py::array_t<float> y({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(D)});
  LayerNormArgs a;
  a.x = x.data();
  a.skip = skip ? skip->data() : nullptr;
  a.bias = bias ? bias->data() : nullptr;
  a.gamma = gamma.data();
  a.beta = beta ? beta->data() : nullptr;
  a.epsilon = epsilon;
  a.D = D;
  a.y = y.mutable_data();
  const CpuFeatures f = GetCpuFeatures();
  void (*kernel)(const LayerNormArgs&, int64_t, int64_t) = nullptr;
  bool available = true;
  if (variant == "ref") {
    kernel = LayerNormRef;
  } else if (variant == "avx2") {
    kernel = LayerNormAvx2;
    available = f.avx2 && f.fma && f.f16c;
  } else if (variant == "avx512") {
    kernel = LayerNormAvx512;
    available = f.avx512f && f.avx512bw && f.avx512vl;
  } else {
    throw std::invalid_argument("layer_norm variant must be 'ref', 'avx2' or 'avx512'");
  }
  if (!available)
    throw std::invalid_argument("layer_norm variant '" + variant + "' is not available on this CPU (ISA level " +
                                IsaLevelName(ActiveIsaLevel()) + ")");
  kernel(a, 0, rows);
  return y;
}

Fp8Format ParseFormat(const std::string& f) {
  if (f == "e4m3" || f == "e4m3fn") return Fp8Format::kE4M3FN;
  if (f == "e5m2") return Fp8Format::kE5M2;
  throw std::invalid_argument("fp8 format must be 'e4m3fn' or 'e5m2', got '" + f + "'");
}

const GemmBf16Fp8Kernel& Fp8KernelByName(const std::string& name) {
  if (name.empty()) return SelectGemmBf16Fp8Kernel();
  const GemmBf16Fp8Kernel* k = FindGemmBf16Fp8Kernel(name.c_str());
  if (k == nullptr) throw std::invalid_argument("fp8 gemm kernel '" + name + "' is not available on this CPU");
  return *k;
}

class PackedGemmBf16Fp8 {
 public:
  PackedGemmBf16Fp8(CArray<uint8_t> w, const std::string& format, CArray<float> scale,
                    std::optional<CArray<float>> bias, const std::string& kernel, int threads)
      : kernel_(&Fp8KernelByName(kernel)), pool_(threads > 0 ? threads : 1) {
    if (w.ndim() != 2 || w.shape(0) == 0 || w.shape(1) == 0) throw std::invalid_argument("w must be a K x N matrix");
    const int64_t N = w.shape(1);
    if (scale.size() != N) throw std::invalid_argument("scale must have N elements");
    if (bias && bias->size() != N) throw std::invalid_argument("bias must have N elements");
    packed_ = PackWeightsFp8(kernel_->layout, w.data(), w.shape(0), N, ParseFormat(format));
    scale_.assign(scale.data(), scale.data() + N);
    if (bias) bias_.assign(bias->data(), bias->data() + N);
  }
  GemmBf16Fp8Args Args(const std::vector<uint16_t>& a, int64_t M, float* c) const {
    GemmBf16Fp8Args args;
    args.M = M;
    args.A = a.data();
    args.lda = packed_.k_padded;
    args.B = &packed_;
    args.scale = scale_.data();
    args.bias = bias_.empty() ? nullptr : bias_.data();
    args.C = c;
    args.ldc = packed_.N;
    return args;
  }
  std::vector<uint16_t> Pad(const CArray<uint16_t>& a) const {
    if (a.ndim() != 2 || a.shape(1) != packed_.K) throw std::invalid_argument("a must be M x K (bf16 bits as uint16)");
    const int64_t M = a.shape(0), K = packed_.K, lda = packed_.k_padded;
    const int64_t rows = (M + kernel_->m_align - 1) / kernel_->m_align * kernel_->m_align;
    std::vector<uint16_t> padded(static_cast<size_t>(rows * lda), 0);
    for (int64_t m = 0; m < M; ++m) std::memcpy(padded.data() + m * lda, a.data() + m * K, static_cast<size_t>(K) * 2);
    return padded;
  }
  void Run(const GemmBf16Fp8Args& args) {
    ParallelGemm(&pool_, args.M, packed_.N, packed_.K, kernel_->panel_width, kernel_->m_step,
                 [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { kernel_->compute(args, m0, m1, n0, n1); });
  }
  py::array_t<float> Call(CArray<uint16_t> a) {
    const std::vector<uint16_t> padded = Pad(a);
    py::array_t<float> c({static_cast<int64_t>(a.shape(0)), packed_.N});
    const GemmBf16Fp8Args args = Args(padded, a.shape(0), c.mutable_data());
    py::gil_scoped_release release;
    Run(args);
    return c;
  }
  std::vector<double> Time(CArray<uint16_t> a, int reps) {
    const std::vector<uint16_t> padded = Pad(a);
    std::vector<float> c(static_cast<size_t>(a.shape(0) * packed_.N));
    const GemmBf16Fp8Args args = Args(padded, a.shape(0), c.data());
    std::vector<double> out;
    py::gil_scoped_release release;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      Run(args);
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }
  std::string kernel() const { return kernel_->name; }

 private:
  const GemmBf16Fp8Kernel* kernel_;
  onnxq::ThreadPool pool_;
  PackedWeightsFp8 packed_;
  std::vector<float> scale_, bias_;
};

// A conversion variant by name: '' the best the ISA ceiling allows, else 'ref', 'avx2' or 'avx512'.
template <typename Fn>
Fn* ConversionByName(const std::vector<Fp8Conversion<Fn>>& variants, const std::string& variant, const char* what) {
  if (variant.empty()) return variants.front().fn;
  for (const auto& v : variants)
    if (variant == v.name) return v.fn;
  if (variant == "avx2" || variant == "avx512")
    throw std::invalid_argument(std::string(what) + " variant '" + variant +
                                "' is not available on this CPU (ISA level " + IsaLevelName(ActiveIsaLevel()) + ")");
  throw std::invalid_argument(std::string(what) + " variant must be '', 'ref', 'avx2' or 'avx512', got '" + variant +
                              "'");
}

template <typename Fn>
std::vector<std::string> ConversionNames(const std::vector<Fp8Conversion<Fn>>& variants) {
  std::vector<std::string> names;
  for (const auto& v : variants) names.push_back(v.name);
  return names;
}

py::array_t<uint16_t> ToBf16Py(CArray<float> x, const std::string& variant) {
  ConvertToBf16Fn* fn = ConversionByName(ConvertToBf16Variants(), variant, "to_bf16");
  py::array_t<uint16_t> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  fn(x.data(), static_cast<size_t>(x.size()), y.mutable_data());
  return y;
}

py::array_t<uint16_t> QuantizeFp8ToBf16Py(CArray<float> x, float scale, const std::string& format,
                                          const std::string& variant) {
  QuantizeFp8ToBf16Fn* fn = ConversionByName(QuantizeFp8ToBf16Variants(), variant, "quantize_fp8_to_bf16");
  py::array_t<uint16_t> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  fn(x.data(), static_cast<size_t>(x.size()), scale, ParseFormat(format), y.mutable_data());
  return y;
}

py::array_t<uint8_t> QuantizeFp8Py(CArray<float> x, float scale, const std::string& format,
                                   const std::string& variant) {
  QuantizeFp8Fn* fn = ConversionByName(QuantizeFp8Variants(), variant, "quantize_fp8");
  py::array_t<uint8_t> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  fn(x.data(), static_cast<size_t>(x.size()), scale, ParseFormat(format), y.mutable_data());
  return y;
}

py::array_t<float> DequantizeFp8Py(CArray<uint8_t> v, float scale, const std::string& format,
                                   const std::string& variant) {
  DequantizeFp8Fn* fn = ConversionByName(DequantizeFp8Variants(), variant, "dequantize_fp8");
  py::array_t<float> y(std::vector<py::ssize_t>(v.shape(), v.shape() + v.ndim()));
  fn(v.data(), static_cast<size_t>(v.size()), scale, ParseFormat(format), y.mutable_data());
  return y;
}

std::vector<std::string> Fp8ConversionVariants(const std::string& kind) {
  if (kind == "to_bf16") return ConversionNames(ConvertToBf16Variants());
  if (kind == "quantize_fp8_to_bf16") return ConversionNames(QuantizeFp8ToBf16Variants());
  if (kind == "quantize_fp8") return ConversionNames(QuantizeFp8Variants());
  if (kind == "dequantize_fp8") return ConversionNames(DequantizeFp8Variants());
  throw std::invalid_argument("kind must be to_bf16, quantize_fp8_to_bf16, quantize_fp8 or dequantize_fp8");
}

// The AVX2 sparse kernels' rung: AVX2 + FMA + F16C under the ceiling.
bool HasAvx2Fma() {
  const CpuFeatures f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}

class PackedSpmmU8S8 {
 public:
  PackedSpmmU8S8(CArray<int8_t> values, CArray<int16_t> block_rows, CArray<int32_t> col_ptr, int64_t K, int64_t N,
                 CArray<float> scale, std::optional<CArray<float>> bias, const std::string& kernel, int threads)
      : kernel_(!kernel.empty() ? kernel : GetCpuFeatures().avx512_vnni ? "avx512vnni" : HasAvx2Fma() ? "avx2" : "ref"),
        pool_(threads > 0 ? threads : 1) {
    if (values.ndim() != 3) throw std::invalid_argument("values must be [nnzb, bk, bn]");
    if (kernel_ != "ref" && kernel_ != "avx512vnni" && kernel_ != "avx2")
      throw std::invalid_argument("unknown spmm kernel " + kernel_ + " (ref, avx2, avx512vnni)");
    if (kernel_ == "avx512vnni" && !GetCpuFeatures().avx512_vnni)
      throw std::invalid_argument("spmm kernel 'avx512vnni' is not available on this CPU");
    if (kernel_ == "avx2" && !HasAvx2Fma())
      throw std::invalid_argument("spmm kernel 'avx2' is not available on this CPU");
    sparse_ = MakeBlockSparseS8(values.data(), values.size(), block_rows.data(), block_rows.size(), col_ptr.data(),
                                col_ptr.size(), K, N, values.shape(1), values.shape(2));
    if (kernel_ != "ref" && (sparse_.bk != 4 || sparse_.bn != 1))
      throw std::invalid_argument("the " + kernel_ + " sparse kernel takes 4x1 blocks");
    if (kernel_ == "avx2") PrepareBlockSparseS8Avx2(&sparse_);
    if (scale.size() != N) throw std::invalid_argument("scale must have N elements");
    if (bias && bias->size() != N) throw std::invalid_argument("bias must have N elements");
    scale_.assign(scale.data(), scale.data() + N);
    if (bias) bias_.assign(bias->data(), bias->data() + N);
  }
  void Run(const SpmmU8S8Args& args, const uint8_t* a, int64_t M) {
    AlignedBuffer<uint8_t> packed;  // as the EP node: 64-byte aligned token tiles
    AlignedBuffer<int16_t> packed16;
    if (kernel_ == "avx512vnni") {
      packed.EnsureSize(PackedTokensSize(M, sparse_.K));
      PackTokensU8Avx512(a, M, sparse_.K, sparse_.K, packed.data());
    } else if (kernel_ == "avx2") {
      packed16.EnsureSize(PackedTokensS16Size(M, sparse_.K));
      PackTokensS16Avx2(a, M, sparse_.K, sparse_.K, packed16.data());
    }
    const int64_t N = sparse_.N, bn = sparse_.bn;
    const int threads = pool_.num_threads();
    const int64_t chunk = ((N / bn + threads - 1) / threads) * bn;
    pool_.ParallelFor(static_cast<size_t>(threads), [&](size_t t) {
      const int64_t n0 = static_cast<int64_t>(t) * chunk, n1 = std::min(N, n0 + chunk);
      if (n0 >= n1) return;
      if (kernel_ == "avx512vnni")
        SpmmU8S8_4x1_Avx512Vnni(args, packed.data(), n0, n1);
      else if (kernel_ == "avx2")
        SpmmU8S8_4x1_Avx2(args, packed16.data(), n0, n1);
      else
        SpmmU8S8Ref(args, n0, n1);
    });
  }
  SpmmU8S8Args Args(const uint8_t* a, int64_t M, int32_t a_zp, float* c) const {
    SpmmU8S8Args args;
    args.M = M;
    args.A = a;
    args.lda = sparse_.K;
    args.a_zero_point = a_zp;
    args.B = &sparse_;
    args.epilogue.scale = scale_.data();
    args.epilogue.bias = bias_.empty() ? nullptr : bias_.data();
    args.C = c;
    args.ldc = sparse_.N;
    return args;
  }
  py::array_t<float> Call(CArray<uint8_t> a, int32_t a_zp) {
    if (a.ndim() != 2 || a.shape(1) != sparse_.K) throw std::invalid_argument("a must be M x K");
    py::array_t<float> c({static_cast<int64_t>(a.shape(0)), sparse_.N});
    const SpmmU8S8Args args = Args(a.data(), a.shape(0), a_zp, c.mutable_data());
    py::gil_scoped_release release;
    Run(args, a.data(), a.shape(0));
    return c;
  }
  std::vector<double> Time(CArray<uint8_t> a, int32_t a_zp, int reps) {
    if (a.ndim() != 2 || a.shape(1) != sparse_.K) throw std::invalid_argument("a must be M x K");
    std::vector<float> c(static_cast<size_t>(a.shape(0) * sparse_.N));
    const SpmmU8S8Args args = Args(a.data(), a.shape(0), a_zp, c.data());
    std::vector<double> out;
    py::gil_scoped_release release;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      Run(args, a.data(), a.shape(0));
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

 private:
  std::string kernel_;
  onnxq::ThreadPool pool_;
  BlockSparseS8 sparse_;
  std::vector<float> scale_, bias_;
};

class PackedSpmmBf16 {
 public:
  PackedSpmmBf16(CArray<uint8_t> values, const std::string& format, CArray<int16_t> block_rows,
                 CArray<int32_t> col_ptr, int64_t K, int64_t N, CArray<float> scale, std::optional<CArray<float>> bias,
                 const std::string& kernel, int threads)
      : kernel_(!kernel.empty() ? kernel : GetCpuFeatures().avx512_bf16 ? "avx512bf16" : HasAvx2Fma() ? "avx2" : "ref"),
        pool_(threads > 0 ? threads : 1) {
    if (kernel_ != "ref" && kernel_ != "avx512bf16" && kernel_ != "avx2")
      throw std::invalid_argument("unknown kernel " + kernel_ + " (ref, avx2, avx512bf16)");
    if (kernel_ == "avx512bf16" && !GetCpuFeatures().avx512_bf16)
      throw std::invalid_argument("sparse fp8 kernel 'avx512bf16' is not available on this CPU");
    if (kernel_ == "avx2" && !HasAvx2Fma())
      throw std::invalid_argument("sparse fp8 kernel 'avx2' is not available on this CPU");
    sparse_ = MakeBlockSparseBf16(values.data(), values.size(), ParseFormat(format), block_rows.data(),
                                  block_rows.size(), col_ptr.data(), col_ptr.size(), K, N);
    if (kernel_ == "avx2") PrepareBlockSparseBf16Avx2(&sparse_);
    if (scale.size() != N) throw std::invalid_argument("scale must have N elements");
    scale_.assign(scale.data(), scale.data() + N);
    if (bias) bias_.assign(bias->data(), bias->data() + N);
  }
  void Run(const uint16_t* a, int64_t M, float* c) {
    const int64_t N = sparse_.N;
    SpmmBf16Args args;
    args.M = M;
    args.A = a;
    args.B = &sparse_;
    args.scale = scale_.data();
    args.bias = bias_.empty() ? nullptr : bias_.data();
    args.C = c;
    args.ldc = N;
    AlignedBuffer<uint16_t> packed;  // as the EP node: 64-byte aligned token tiles
    AlignedBuffer<float> packed32;
    if (kernel_ == "avx512bf16") {
      packed.EnsureSize(PackedTokensBf16Size(M, sparse_.K));
      PackTokensBf16Avx512(a, M, sparse_.K, packed.data());
    } else if (kernel_ == "avx2") {
      packed32.EnsureSize(PackedTokensF32Size(M, sparse_.K));
      PackTokensF32Avx2(a, M, sparse_.K, packed32.data());
    }
    const int threads = pool_.num_threads();
    const int64_t chunk = (N + threads - 1) / threads;
    pool_.ParallelFor(static_cast<size_t>(threads), [&](size_t t) {
      const int64_t n0 = static_cast<int64_t>(t) * chunk, n1 = std::min(N, n0 + chunk);
      if (n0 >= n1) return;
      if (kernel_ == "avx512bf16")
        SpmmBf16_4x1_Avx512(args, packed.data(), n0, n1);
      else if (kernel_ == "avx2")
        SpmmF32_4x1_Avx2(args, packed32.data(), n0, n1);
      else
        SpmmBf16Ref(args, n0, n1);
    });
  }
  py::array_t<float> Call(CArray<uint16_t> a) {
    if (a.ndim() != 2 || a.shape(1) != sparse_.K) throw std::invalid_argument("a must be M x K bf16 bits");
    py::array_t<float> c({static_cast<int64_t>(a.shape(0)), sparse_.N});
    float* out = c.mutable_data();
    {
      py::gil_scoped_release release;
      Run(a.data(), a.shape(0), out);
    }
    return c;
  }
  std::vector<double> Time(CArray<uint16_t> a, int reps) {
    if (a.ndim() != 2 || a.shape(1) != sparse_.K) throw std::invalid_argument("a must be M x K bf16 bits");
    std::vector<float> c(static_cast<size_t>(a.shape(0) * sparse_.N));
    std::vector<double> out;
    py::gil_scoped_release release;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      Run(a.data(), a.shape(0), c.data());
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

 private:
  std::string kernel_;
  onnxq::ThreadPool pool_;
  BlockSparseBf16 sparse_;
  std::vector<float> scale_, bias_;
};

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "onnxq kernels (reference and ISA-specific), exposed for tests and benchmarks";
  m.def("cpu_features", [] { return CpuFeaturesString(GetCpuFeatures()); },
        "CPU features the kernels may use: detected (cpuid + OS support), capped by the ISA ceiling (ONNXQ_MAX_ISA)");
  m.def("detected_cpu_features", [] { return CpuFeaturesString(DetectedCpuFeatures()); },
        "CPU features this machine offers, ignoring the ISA ceiling");
  m.def("isa_level", [] { return std::string(IsaLevelName(ActiveIsaLevel())); },
        "the ISA level kernels are chosen at: the CPU's highest, capped by ONNXQ_MAX_ISA");
  m.def("detected_isa_level", [] { return std::string(IsaLevelName(HighestIsaLevel(DetectedCpuFeatures()))); },
        "the highest ISA level this CPU supports");
  m.def("isa_levels", [] {
    std::vector<std::string> names;
    for (int i = 0; i <= static_cast<int>(IsaLevel::kAmx); ++i) names.push_back(IsaLevelName(static_cast<IsaLevel>(i)));
    return names;
  }, "every ISA level, lowest first");
  m.def("qgemm_u8s8_kernels", [] {
    std::vector<std::string> names;
    for (const auto* k : AvailableQGemmU8S8Kernels()) names.push_back(k->name);
    return names;
  }, "u8 x s8 GEMM variants usable on this CPU, best first");
  m.def("qgemm_u8s8", &QGemmU8S8Py, py::arg("a"), py::arg("a_zero_point"), py::arg("b"), py::arg("b_zero_point"),
        py::arg("scale"), py::arg("bias") = py::none(), py::arg("kernel") = "", py::arg("threads") = 1,
        "C = float(sum_k (a-a_zp)*(b-b_zp[n])) * scale[n] + bias[n] with the named variant ('' = best)");
  m.def("qgemm_u8s8_ref",
        [](CArray<uint8_t> a, int32_t a_zp, CArray<int8_t> b, CArray<int8_t> b_zp, CArray<float> scale,
           std::optional<CArray<float>> bias) { return QGemmU8S8Py(a, a_zp, b, b_zp, scale, bias, "ref", 1); },
        py::arg("a"), py::arg("a_zero_point"), py::arg("b"), py::arg("b_zero_point"), py::arg("scale"),
        py::arg("bias") = py::none(), "Scalar reference variant");
  py::class_<PackedQGemmU8S8>(m, "PackedQGemmU8S8", "weights packed once for one variant; call with activations")
      .def(py::init<CArray<int8_t>, CArray<int8_t>, CArray<float>, std::optional<CArray<float>>, const std::string&,
                    int>(),
           py::arg("b"), py::arg("b_zero_point"), py::arg("scale"), py::arg("bias") = py::none(),
           py::arg("kernel") = "", py::arg("threads") = 1)
      .def("__call__", &PackedQGemmU8S8::Run, py::arg("a"), py::arg("a_zero_point"))
      .def("time", &PackedQGemmU8S8::Time, py::arg("a"), py::arg("a_zero_point"), py::arg("reps"))
      .def_property_readonly("kernel", &PackedQGemmU8S8::kernel);
  m.def("quantize_linear_u8", &QuantizeLinearU8Py, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("variant") = "", "saturate(round_half_even(x / scale) + zero_point) into [0, 255]");
  m.def("quantize_linear_u8_ref",
        [](CArray<float> x, float scale, int32_t zp) { return QuantizeLinearU8Py(x, scale, zp, "ref"); },
        py::arg("x"), py::arg("scale"), py::arg("zero_point"), "Scalar reference");
  m.def("layer_norm", &LayerNormPy, py::arg("x"), py::arg("skip"), py::arg("bias"), py::arg("gamma"),
        py::arg("beta"), py::arg("epsilon"), py::arg("variant"),
        "(x + bias + skip) normalized over the last axis, times gamma plus beta (ref | avx2 | avx512)");
  m.def("quantize_pack_tokens_u8", &QuantizePackTokensU8Py, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("variant"), "float [M, K] -> the sparse INT8 kernel's token tiles (fused | ref)");
  m.def("pack_tokens_s16", &PackTokensS16Py, py::arg("a"), py::arg("variant"),
        "u8 [M, K] -> the AVX2 sparse INT8 kernel's packed s16 activations (avx2 | ref)");
  m.attr("QGEMM_MAX_K") = kQGemmMaxK;

  py::class_<PackedSpmmU8S8>(m, "PackedSpmmU8S8",
                             "block-sparse int8 weights (compact CSC blocks) x u8 activations; "
                             "kernel ref|avx2|avx512vnni")
      .def(py::init<CArray<int8_t>, CArray<int16_t>, CArray<int32_t>, int64_t, int64_t, CArray<float>,
                    std::optional<CArray<float>>, const std::string&, int>(),
           py::arg("values"), py::arg("block_rows"), py::arg("col_ptr"), py::arg("k"), py::arg("n"), py::arg("scale"),
           py::arg("bias") = py::none(), py::arg("kernel") = "", py::arg("threads") = 1)
      .def("__call__", &PackedSpmmU8S8::Call, py::arg("a"), py::arg("a_zero_point"))
      .def("time", &PackedSpmmU8S8::Time, py::arg("a"), py::arg("a_zero_point"), py::arg("reps"));
  py::class_<PackedSpmmBf16>(m, "PackedSpmmBf16",
                             "block-sparse FP8 weights (4x1 CSC blocks) x bf16 activations; kernel ref|avx2|avx512bf16")
      .def(py::init<CArray<uint8_t>, const std::string&, CArray<int16_t>, CArray<int32_t>, int64_t, int64_t,
                    CArray<float>, std::optional<CArray<float>>, const std::string&, int>(),
           py::arg("values"), py::arg("format"), py::arg("block_rows"), py::arg("col_ptr"), py::arg("k"), py::arg("n"),
           py::arg("scale"), py::arg("bias") = py::none(), py::arg("kernel") = "", py::arg("threads") = 1)
      .def("__call__", &PackedSpmmBf16::Call, py::arg("a"))
      .def("time", &PackedSpmmBf16::Time, py::arg("a"), py::arg("reps"));
  m.def("fp8_gemm_kernels", [] {
    std::vector<std::string> names;
    for (const auto* k : AvailableGemmBf16Fp8Kernels()) names.push_back(k->name);
    return names;
  }, "bf16 x FP8-weight GEMM variants usable on this CPU, best first");
  py::class_<PackedGemmBf16Fp8>(m, "PackedGemmBf16Fp8", "FP8 weights packed once; call with bf16 activations")
      .def(py::init<CArray<uint8_t>, const std::string&, CArray<float>, std::optional<CArray<float>>,
                    const std::string&, int>(),
           py::arg("w"), py::arg("format"), py::arg("scale"), py::arg("bias") = py::none(), py::arg("kernel") = "",
           py::arg("threads") = 1)
      .def("__call__", &PackedGemmBf16Fp8::Call, py::arg("a"))
      .def("time", &PackedGemmBf16Fp8::Time, py::arg("a"), py::arg("reps"))
      .def_property_readonly("kernel", &PackedGemmBf16Fp8::kernel);
  m.def("to_bf16", &ToBf16Py, py::arg("x"), py::arg("variant") = "",
        "float -> bf16 bits (round half to even, denormals flushed), as the FP8 GEMMs see activations; "
        "variant '' (best) | ref | avx2 | avx512");
  m.def("quantize_fp8_to_bf16", &QuantizeFp8ToBf16Py, py::arg("x"), py::arg("scale"), py::arg("format"),
        py::arg("variant") = "", "QuantizeLinear to FP8 (saturate) of x/scale, returned widened to bf16 bits");
  m.def("quantize_fp8", &QuantizeFp8Py, py::arg("x"), py::arg("scale"), py::arg("format"), py::arg("variant") = "",
        "QuantizeLinear(saturate=1) of x/scale to FP8 bytes, as the standalone Q node computes it");
  m.def("dequantize_fp8", &DequantizeFp8Py, py::arg("v"), py::arg("scale"), py::arg("format"),
        py::arg("variant") = "", "DequantizeLinear of FP8 bytes: float(v) * scale, as the standalone DQ node");
  m.def("fp8_conversion_variants", &Fp8ConversionVariants, py::arg("kind"),
        "variants of one conversion (to_bf16 | quantize_fp8_to_bf16 | quantize_fp8 | dequantize_fp8) usable "
        "under the ISA ceiling, best first");
  m.def("fp8_to_float", [](CArray<uint8_t> v, const std::string& format) {
    py::array_t<float> out(std::vector<py::ssize_t>(v.shape(), v.shape() + v.ndim()));
    const Fp8Format f = ParseFormat(format);
    for (py::ssize_t i = 0; i < v.size(); ++i) out.mutable_data()[i] = Fp8ToFloat(v.data()[i], f);
    return out;
  }, py::arg("v"), py::arg("format"));
  m.def("float_to_fp8", [](CArray<float> x, const std::string& format) {
    py::array_t<uint8_t> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    const Fp8Format f = ParseFormat(format);
    for (py::ssize_t i = 0; i < x.size(); ++i) out.mutable_data()[i] = FloatToFp8Saturate(x.data()[i], f);
    return out;
  }, py::arg("x"), py::arg("format"), "ONNX QuantizeLinear(saturate=1) to FP8, scale 1");
}
