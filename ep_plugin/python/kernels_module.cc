// onnxq._kernels: the EP's kernels reachable from Python, so the same tests and benchmarks drive them
// without a session. Arrays are checked here (shape, dtype, contiguity) before any kernel sees them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/qgemm_u8s8.h"
#include "kernels/qgemm_u8s8_parallel.h"
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
    const int64_t M = a.shape(0), K = packed_.K, N = packed_.N, lda = RoundUpK(K);
    std::vector<uint8_t> padded(static_cast<size_t>(M * lda), 0);
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
    const int64_t M = a.shape(0), K = packed_.K, N = packed_.N, lda = RoundUpK(K);
    std::vector<uint8_t> padded(static_cast<size_t>(M * lda), 0);
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
  QuantizeLinearU8Fn fn = variant == "ref" ? QuantizeLinearU8Ref : SelectQuantizeLinearU8();
  fn(x.data(), static_cast<size_t>(x.size()), scale, zero_point, y.mutable_data());
  return y;
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "onnxq kernels (reference and ISA-specific), exposed for tests and benchmarks";
  m.def("cpu_features", [] { return CpuFeaturesString(GetCpuFeatures()); },
        "CPU features the kernels can use on this machine (cpuid + OS support)");
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
  m.attr("QGEMM_MAX_K") = kQGemmMaxK;
}
