#include "nodes/compiled_node.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace onnxq {

MatMulIO BindMatMulIO(Ort::KernelContext& context, size_t input_index, int64_t K, int64_t N) {
  MatMulIO io;
  if (input_index >= context.GetInputCount()) throw std::runtime_error("activation input missing");
  io.input = context.GetInput(input_index);
  if (static_cast<const OrtValue*>(io.input) == nullptr || !io.input.IsTensor())
    throw std::runtime_error("input is missing or not a tensor");
  auto info = io.input.GetTensorTypeAndShapeInfo();  // one call: each allocates
  const std::vector<int64_t> in_shape = info.GetShape();
  if (in_shape.empty() || in_shape.back() != K)
    throw std::runtime_error("MatMul input's last dimension is " +
                             (in_shape.empty() ? std::string("missing") : std::to_string(in_shape.back())) +
                             ", the weight expects K=" + std::to_string(K));
  io.type = info.GetElementType();
  io.count = info.GetElementCount();
  io.M = static_cast<int64_t>(io.count) / K;
  std::vector<int64_t> out_shape(in_shape.begin(), in_shape.end() - 1);
  out_shape.push_back(N);
  Ort::UnownedValue output = context.GetOutput(0, out_shape);
  // onnxruntime hands out no buffer for an output nothing reads (e.g. a hostile file dropped it from the graph
  // outputs): a null value, whose data pointer must not be taken. (tools/fuzz)
  if (static_cast<OrtValue*>(output) != nullptr) io.out = output.GetTensorMutableData<float>();
  return io;
}

}  // namespace onnxq
