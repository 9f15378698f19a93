// Run an ONNX model with the onnxq execution provider from C++, through ONNX Runtime's public C++ API only:
// register the plugin library, pick the EP's device, create a session with provider options, run it.
//
//   run_onnxq_ep EP_LIBRARY MODEL [--dim NAME=N]... [--option KEY=VALUE]... [--out FILE]
//
// Every float input is fed the same deterministic values (x[i] = sin(0.37 i) * 2); symbolic dimensions take
// --dim values (1 where none is given). The outputs are printed as a summary and, with --out, written as raw
// float32 (all outputs, in order) so a test can compare them with the Python API's run of the same session.
// Exit status: 0 ok, 2 bad usage or an ONNX Runtime error (its message is printed).
#include <onnxruntime_cxx_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr const char* kEpName = "OnnxqExecutionProvider";  // onnxq.get_ep_names()

struct Args {
  std::string library, model, out;
  std::map<std::string, int64_t> dims;
  std::unordered_map<std::string, std::string> options;
};

bool SplitKeyValue(const std::string& text, std::string* key, std::string* value) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  *key = text.substr(0, eq);
  *value = text.substr(eq + 1);
  return true;
}

bool ParseArgs(int argc, char** argv, Args* args) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string key, value;
    if ((a == "--dim" || a == "--option" || a == "--out") && i + 1 < argc) {
      const std::string next = argv[++i];
      if (a == "--out") {
        args->out = next;
      } else if (!SplitKeyValue(next, &key, &value)) {
        std::cerr << a << " takes KEY=VALUE, got '" << next << "'\n";
        return false;
      } else if (a == "--dim") {
        args->dims[key] = std::stoll(value);
      } else {
        args->options[key] = value;
      }
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return false;
  args->library = positional[0];
  args->model = positional[1];
  return true;
}

int Run(const Args& args) {
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "onnxq-example");
  env.RegisterExecutionProviderLibrary("onnxq", args.library);  // the path onnxq.get_library_path() returns

  std::vector<Ort::ConstEpDevice> devices;
  for (const Ort::ConstEpDevice& d : env.GetEpDevices())
    if (std::strcmp(d.EpName(), kEpName) == 0) devices.push_back(d);
  if (devices.empty()) {
    std::cerr << "onnxruntime lists no device for " << kEpName << "\n";
    return 2;
  }
  const Ort::ConstKeyValuePairs meta = devices[0].EpMetadata();
  const char* version = meta.GetValue("onnxq_version");
  const char* isa = meta.GetValue("isa_level");
  std::cout << "ep " << devices[0].EpName() << " vendor " << devices[0].EpVendor() << " version "
            << (version ? version : "?") << " isa " << (isa ? isa : "?") << "\n";

  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(1);
  so.AppendExecutionProvider_V2(env, devices, args.options);  // onnxq first; the CPU provider takes the rest
  Ort::Session session(env, args.model.c_str(), so);

  Ort::AllocatorWithDefaultOptions alloc;
  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<std::string> in_names, out_names;
  std::vector<std::vector<float>> buffers;
  std::vector<Ort::Value> inputs;
  for (size_t i = 0; i < session.GetInputCount(); ++i) {
    in_names.push_back(session.GetInputNameAllocated(i, alloc).get());
    const Ort::TypeInfo type = session.GetInputTypeInfo(i);
    const auto tensor = type.GetTensorTypeAndShapeInfo();
    if (tensor.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
      std::cerr << "input '" << in_names.back() << "' is not float32; this example feeds float inputs only\n";
      return 2;
    }
    std::vector<int64_t> shape = tensor.GetShape();
    std::vector<const char*> symbolic(shape.size(), nullptr);
    tensor.GetSymbolicDimensions(symbolic.data(), symbolic.size());
    size_t count = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] < 0) {
        const auto it = symbolic[d] != nullptr ? args.dims.find(symbolic[d]) : args.dims.end();
        shape[d] = it != args.dims.end() ? it->second : 1;
      }
      count *= static_cast<size_t>(shape[d]);
    }
    buffers.emplace_back(count);
    for (size_t k = 0; k < count; ++k) buffers.back()[k] = static_cast<float>(std::sin(0.37 * k) * 2.0);
    inputs.push_back(Ort::Value::CreateTensor<float>(cpu, buffers.back().data(), count, shape.data(), shape.size()));
  }
  for (size_t i = 0; i < session.GetOutputCount(); ++i)
    out_names.push_back(session.GetOutputNameAllocated(i, alloc).get());
  std::vector<const char*> in_ptrs, out_ptrs;
  for (const auto& n : in_names) in_ptrs.push_back(n.c_str());
  for (const auto& n : out_names) out_ptrs.push_back(n.c_str());

  std::vector<Ort::Value> outputs =
      session.Run(Ort::RunOptions{nullptr}, in_ptrs.data(), inputs.data(), inputs.size(), out_ptrs.data(),
                  out_ptrs.size());
  std::ofstream raw;
  if (!args.out.empty()) raw.open(args.out, std::ios::binary);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto info = outputs[i].GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) continue;
    const size_t n = info.GetElementCount();
    const float* v = outputs[i].GetTensorData<float>();
    double sum = 0.0;
    for (size_t k = 0; k < n; ++k) sum += v[k];
    std::cout << "output " << out_names[i] << " elements " << n << " sum " << sum << "\n";
    if (raw) raw.write(reinterpret_cast<const char*>(v), static_cast<std::streamsize>(n * sizeof(float)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    std::cerr << "usage: run_onnxq_ep EP_LIBRARY MODEL [--dim NAME=N]... [--option KEY=VALUE]... [--out FILE]\n";
    return 2;
  }
  try {
    return Run(args);
  } catch (const Ort::Exception& e) {
    std::cerr << "onnxruntime: " << e.what() << "\n";
    return 2;
  }
}
