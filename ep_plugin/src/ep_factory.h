// The factory onnxruntime gets from CreateEpFactories: advertises the CPU device and creates OnnxqEp.
#pragma once
#include <string>

#include "ort_api.h"

namespace onnxq {

inline constexpr const char* kEpName = "OnnxqExecutionProvider";
inline constexpr const char* kEpVendor = "onnxq";
#ifndef ONNXQ_VERSION
#define ONNXQ_VERSION "0.0.0"
#endif

class OnnxqEpFactory : public OrtEpFactory {
 public:
  OnnxqEpFactory(const OrtApi& ort_api, const OrtEpApi& ep_api, const OrtLogger& default_logger);

  const OrtApi& ort_api;
  const OrtEpApi& ep_api;

 private:
  static const char* ORT_API_CALL GetNameImpl(const OrtEpFactory* this_ptr) noexcept;
  static const char* ORT_API_CALL GetVendorImpl(const OrtEpFactory* this_ptr) noexcept;
  static uint32_t ORT_API_CALL GetVendorIdImpl(const OrtEpFactory* this_ptr) noexcept;
  static const char* ORT_API_CALL GetVersionImpl(const OrtEpFactory* this_ptr) noexcept;
  static OrtStatus* ORT_API_CALL GetSupportedDevicesImpl(OrtEpFactory* this_ptr,
                                                         const OrtHardwareDevice* const* devices, size_t num_devices,
                                                         OrtEpDevice** ep_devices, size_t max_ep_devices,
                                                         size_t* num_ep_devices) noexcept;
  static OrtStatus* ORT_API_CALL CreateEpImpl(OrtEpFactory* this_ptr, const OrtHardwareDevice* const* devices,
                                              const OrtKeyValuePairs* const* ep_metadata, size_t num_devices,
                                              const OrtSessionOptions* session_options, const OrtLogger* logger,
                                              OrtEp** ep) noexcept;
  static void ORT_API_CALL ReleaseEpImpl(OrtEpFactory* this_ptr, OrtEp* ep) noexcept;

  const OrtLogger& default_logger_;
};

}  // namespace onnxq
