// One place that includes ONNX Runtime's API headers for the EP (ORT_API_MANUAL_INIT is set by the build:
// the plugin receives its OrtApi from onnxruntime and never links libonnxruntime).
#pragma once
#include <onnxruntime_c_api.h>
#include <onnxruntime_cxx_api.h>

#include <exception>
#include <string>

namespace onnxq {

struct OrtApis {
  const OrtApi& ort;
  const OrtEpApi& ep;
};

// Runs `body` and turns any C++ exception into an OrtStatus for onnxruntime (exceptions never cross the ABI).
template <typename F>
OrtStatus* StatusFromCall(F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::Status(e).release();
  } catch (const std::exception& e) {
    return Ort::Status((std::string("onnxq EP: ") + e.what()).c_str(), ORT_EP_FAIL).release();
  } catch (...) {
    return Ort::Status("onnxq EP: unknown error", ORT_EP_FAIL).release();
  }
}

}  // namespace onnxq
