// onnxq._kernels: the EP's kernels reachable from Python, so the same tests and benchmarks drive them
// without a session. Arrays are checked here (shape, dtype, contiguity) before any kernel sees them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/qgemm_u8s8.h"
#include "kernels/quantize.h"

namespace py = pybind11;
using namespace onnxq::kernels;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

py::array_t<float> QGemmU8S8RefPy(CArray<uint8_t> a, int32_t a_zero_point, CArray<int8_t> b,
                                  CArray<int8_t> b_zero_point, CArray<float> scale,
                                  std::optional<CArray<float>> bias) {
  if (a.ndim() != 2 || b.ndim() != 2) throw std::invalid_argument("a must be M x K and b K x N");
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  if (b.shape(0) != K) throw std::invalid_argument("a and b disagree on K");
  if (K == 0 || N == 0) throw std::invalid_argument("K and N must be positive");
  if (scale.size() != N) throw std::invalid_argument("scale must have N elements");
  if (bias && bias->size() != N) throw std::invalid_argument("bias must have N elements");
  if (b_zero_point.size() != 1 && b_zero_point.size() != N)
    throw std::invalid_argument("b_zero_point must have 1 or N elements");
  PackedWeightsS8 packed = PackWeightsS8Ref(b.data(), K, N, b_zero_point.data(), b_zero_point.size());
  py::array_t<float> c({M, N});
  QGemmEpilogue epilogue{scale.data(), bias ? bias->data() : nullptr};
  {
    py::gil_scoped_release release;
    QGemmU8S8Ref(M, a.data(), K, a_zero_point, packed, epilogue, c.mutable_data(), N);
  }
  return c;
}

py::array_t<uint8_t> QuantizeLinearU8RefPy(CArray<float> x, float scale, int32_t zero_point) {
  py::array_t<uint8_t> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  QuantizeLinearU8Ref(x.data(), static_cast<size_t>(x.size()), scale, zero_point, y.mutable_data());
  return y;
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "onnxq kernels (reference and ISA-specific), exposed for tests and benchmarks";
  m.def("cpu_features", [] { return CpuFeaturesString(GetCpuFeatures()); },
        "CPU features the kernels can use on this machine (cpuid + OS support)");
  m.def("qgemm_u8s8_ref", &QGemmU8S8RefPy, py::arg("a"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("b_zero_point"), py::arg("scale"), py::arg("bias") = py::none(),
        "Scalar reference: float(sum_k (a-a_zp)*(b-b_zp[n])) * scale[n] + bias[n]");
  m.def("quantize_linear_u8_ref", &QuantizeLinearU8RefPy, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        "saturate(round_half_even(x / scale) + zero_point) into [0, 255]");
  m.attr("QGEMM_MAX_K") = kQGemmMaxK;
}
