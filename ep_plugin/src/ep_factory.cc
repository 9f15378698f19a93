#include "ep_factory.h"

#include <cctype>
#include <map>
#include <new>
#include <stdexcept>
#include <string>

#include "ep.h"
#include "ep_config.h"
#include "kernels/cpu_features.h"

namespace onnxq {

OnnxqEpFactory::OnnxqEpFactory(const OrtApi& ort, const OrtEpApi& ep, const OrtLogger& default_logger)
    : OrtEpFactory{}, ort_api(ort), ep_api(ep), default_logger_(default_logger) {
  ort_version_supported = ORT_API_VERSION;
  GetName = GetNameImpl;
  GetVendor = GetVendorImpl;
  GetVendorId = GetVendorIdImpl;
  GetVersion = GetVersionImpl;
  GetSupportedDevices = GetSupportedDevicesImpl;
  CreateEp = CreateEpImpl;
  ReleaseEp = ReleaseEpImpl;
  // onnxruntime 1.32 calls these without a null check, so they say "nothing here" explicitly:
  // CPU memory with ORT's default allocator, no data transfer, no streams, no custom op domains.
  CreateAllocator = [](OrtEpFactory*, const OrtMemoryInfo*, const OrtKeyValuePairs*,
                       OrtAllocator** allocator) noexcept -> OrtStatus* {
    *allocator = nullptr;
    return nullptr;
  };
  ReleaseAllocator = [](OrtEpFactory*, OrtAllocator*) noexcept {};
  CreateDataTransfer = [](OrtEpFactory*, OrtDataTransferImpl** data_transfer) noexcept -> OrtStatus* {
    *data_transfer = nullptr;
    return nullptr;
  };
  IsStreamAware = [](const OrtEpFactory*) noexcept { return false; };
  CreateSyncStreamForDevice = [](OrtEpFactory*, const OrtMemoryDevice*, const OrtKeyValuePairs*,
                                 OrtSyncStreamImpl** stream) noexcept -> OrtStatus* {
    *stream = nullptr;
    return nullptr;
  };
  GetNumCustomOpDomains = [](OrtEpFactory*, size_t* num_domains) noexcept -> OrtStatus* {
    *num_domains = 0;
    return nullptr;
  };
  GetCustomOpDomains = [](OrtEpFactory*, OrtCustomOpDomain**, size_t) noexcept -> OrtStatus* { return nullptr; };
}

const char* ORT_API_CALL OnnxqEpFactory::GetNameImpl(const OrtEpFactory*) noexcept { return kEpName; }
const char* ORT_API_CALL OnnxqEpFactory::GetVendorImpl(const OrtEpFactory*) noexcept { return kEpVendor; }
uint32_t ORT_API_CALL OnnxqEpFactory::GetVendorIdImpl(const OrtEpFactory*) noexcept { return 0; }
const char* ORT_API_CALL OnnxqEpFactory::GetVersionImpl(const OrtEpFactory*) noexcept { return ONNXQ_VERSION; }

OrtStatus* ORT_API_CALL OnnxqEpFactory::GetSupportedDevicesImpl(OrtEpFactory* this_ptr,
                                                                const OrtHardwareDevice* const* devices,
                                                                size_t num_devices, OrtEpDevice** ep_devices,
                                                                size_t max_ep_devices,
                                                                size_t* num_ep_devices) noexcept {
  auto* factory = static_cast<OnnxqEpFactory*>(this_ptr);
  *num_ep_devices = 0;
  return StatusFromCall([&] {
    for (size_t i = 0; i < num_devices && *num_ep_devices < max_ep_devices; ++i) {
      if (factory->ort_api.HardwareDevice_Type(devices[i]) != OrtHardwareDeviceType_CPU) continue;
      Ort::KeyValuePairs metadata;
      metadata.Add("onnxq_version", ONNXQ_VERSION);
      metadata.Add("cpu_features", kernels::CpuFeaturesString(kernels::GetCpuFeatures()).c_str());
      metadata.Add("isa_level", kernels::IsaLevelName(kernels::ActiveIsaLevel()));
      OrtEpDevice* ep_device = nullptr;
      Ort::ThrowOnError(factory->ep_api.CreateEpDevice(factory, devices[i], metadata.GetConst(), nullptr, &ep_device));
      ep_devices[(*num_ep_devices)++] = ep_device;
      break;  // one CPU device is enough: the EP is a single-device CPU provider
    }
  });
}

namespace {

// Provider options arrive as session config entries "ep.<ep name>.<key>" (the name's case varies by version):
// the session's options for this EP, keyed by <key> lower-cased.
std::map<std::string, std::string> ProviderOptions(const OrtApi& api, const OrtSessionOptions* so) {
  std::map<std::string, std::string> out;
  if (so == nullptr) return out;
  OrtKeyValuePairs* kv = nullptr;
  if (OrtStatus* st = api.GetSessionOptionsConfigEntries(so, &kv)) {
    api.ReleaseStatus(st);
    return out;
  }
  const char* const* keys = nullptr;
  const char* const* values = nullptr;
  size_t n = 0;
  api.GetKeyValuePairs(kv, &keys, &values, &n);
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  const std::string prefix = lower(std::string("ep.") + kEpName + ".");
  for (size_t i = 0; i < n; ++i) {
    const std::string key = lower(keys[i]);
    if (key.compare(0, prefix.size(), prefix) == 0) out[key.substr(prefix.size())] = values[i];
  }
  api.ReleaseKeyValuePairs(kv);
  return out;
}

}  // namespace

OrtStatus* ORT_API_CALL OnnxqEpFactory::CreateEpImpl(OrtEpFactory* this_ptr, const OrtHardwareDevice* const*,
                                                     const OrtKeyValuePairs* const*, size_t num_devices,
                                                     const OrtSessionOptions* session_options, const OrtLogger* logger,
                                                     OrtEp** ep) noexcept {
  auto* factory = static_cast<OnnxqEpFactory*>(this_ptr);
  *ep = nullptr;
  return StatusFromCall([&] {
    if (num_devices != 1) throw std::invalid_argument("the onnxq EP runs on exactly one CPU device");
    const std::map<std::string, std::string> options = ProviderOptions(factory->ort_api, session_options);
    const EpConfig config = ParseEpConfig([&](const char* key) {
      const auto it = options.find(key);
      return it == options.end() ? std::string() : it->second;
    });
    *ep = new OnnxqEp(*factory, *logger, config);
  });
}

void ORT_API_CALL OnnxqEpFactory::ReleaseEpImpl(OrtEpFactory*, OrtEp* ep) noexcept {
  delete static_cast<OnnxqEp*>(ep);
}

}  // namespace onnxq

extern "C" {

__attribute__((visibility("default"))) OrtStatus* CreateEpFactories(const char* /*registered_name*/,
                                                                    const OrtApiBase* ort_api_base,
                                                                    const OrtLogger* default_logger,
                                                                    OrtEpFactory** factories, size_t max_factories,
                                                                    size_t* num_factories) {
  *num_factories = 0;
  const OrtApi* ort_api = ort_api_base->GetApi(ORT_API_VERSION);
  if (ort_api == nullptr) {
    // Older onnxruntime: report through the oldest API table, which every version has.
    const OrtApi* v1 = ort_api_base->GetApi(1);
    const char* found = ort_api_base->GetVersionString != nullptr ? ort_api_base->GetVersionString() : "unknown";
    const std::string message = std::string("the onnxq EP ") + ONNXQ_VERSION +
                                " needs onnxruntime >= 1.29 (ORT API version 29); this process runs onnxruntime " +
                                (found != nullptr ? found : "unknown");
    return v1 == nullptr ? nullptr : v1->CreateStatus(ORT_FAIL, message.c_str());
  }
  Ort::InitApi(ort_api);
  if (max_factories < 1) return ort_api->CreateStatus(ORT_INVALID_ARGUMENT, "no room for the onnxq EP factory");
  const OrtEpApi* ep_api = ort_api->GetEpApi();
  auto* factory = new (std::nothrow) onnxq::OnnxqEpFactory(*ort_api, *ep_api, *default_logger);
  if (factory == nullptr) return ort_api->CreateStatus(ORT_FAIL, "out of memory");
  factories[0] = factory;
  *num_factories = 1;
  return nullptr;
}

__attribute__((visibility("default"))) OrtStatus* ReleaseEpFactory(OrtEpFactory* factory) {
  delete static_cast<onnxq::OnnxqEpFactory*>(factory);
  return nullptr;
}

}  // extern "C"
