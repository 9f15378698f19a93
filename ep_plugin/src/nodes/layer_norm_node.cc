#include "nodes/layer_norm_node.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/layer_norm.h"

namespace onnxq {
namespace {

// A float tensor input's shape.
std::vector<int64_t> FloatShape(const Ort::ConstValue& v, const char* what) {
  if (static_cast<const OrtValue*>(v) == nullptr || !v.IsTensor() ||
      v.GetTensorTypeAndShapeInfo().GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw std::runtime_error(std::string(what) + " is missing or not a float tensor");
  return v.GetTensorTypeAndShapeInfo().GetShape();
}

// The same, for an input whose last dimension must be D.
std::vector<int64_t> FloatRowsShape(const Ort::ConstValue& v, int64_t D, const char* what) {
  std::vector<int64_t> shape = FloatShape(v, what);
  if (shape.empty() || shape.back() != D)
    throw std::runtime_error(std::string(what) + ": last dimension is not the LayerNormalization size " +
                             std::to_string(D));
  return shape;
}

int64_t Count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ONNX (numpy) broadcasting of two shapes; empty optional when they are incompatible.
std::optional<std::vector<int64_t>> Broadcast(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> out(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
    const int64_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// out = a + b broadcast to `shape` (scalar loop: only for residual operands whose shapes differ, which exported
// transformers do not produce).
void BroadcastAdd(const float* a, const std::vector<int64_t>& sa, const float* b, const std::vector<int64_t>& sb,
                  const std::vector<int64_t>& shape, float* out) {
  const size_t rank = shape.size();
  auto strides = [&](const std::vector<int64_t>& s) {
    std::vector<int64_t> st(rank, 0);
    int64_t step = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t j = s.size() - 1 - i, k = rank - 1 - i;
      st[k] = s[j] == 1 ? 0 : step;
      step *= s[j];
    }
    return st;
  };
  const std::vector<int64_t> st_a = strides(sa), st_b = strides(sb);
  std::vector<int64_t> idx(rank, 0);
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < total; ++i) {
    out[i] = a[oa] + b[ob];
    for (size_t k = rank; k-- > 0;) {  // odometer increment
      oa += st_a[k];
      ob += st_b[k];
      if (++idx[k] < shape[k]) break;
      oa -= st_a[k] * shape[k];
      ob -= st_b[k] * shape[k];
      idx[k] = 0;
    }
  }
}

}  // namespace

LayerNormNode::LayerNormNode(const LayerNormSpec& spec, size_t input_index, size_t skip_index, ThreadPool* pool)
    : gamma_(spec.gamma),
      beta_(spec.beta),
      bias_(spec.bias),
      epsilon_(spec.epsilon),
      D_(spec.D),
      has_skip_(!spec.skip_name.empty()),
      input_index_(input_index),
      skip_index_(skip_index),
      pool_(pool) {
  const kernels::CpuFeatures f = kernels::GetCpuFeatures();
  if (f.avx512f && f.avx512bw && f.avx512vl) {  // the file is built with the avx512 rung's flags
    kernel_ = kernels::LayerNormAvx512;
    kernel_name_ = "layernorm-avx512";
  } else if (f.avx2 && f.fma && f.f16c) {
    kernel_ = kernels::LayerNormAvx2;
    kernel_name_ = "layernorm-avx2";
  } else {
    kernel_ = kernels::LayerNormRef;
    kernel_name_ = "layernorm-ref";
  }
}

void LayerNormNode::Compute(OrtKernelContext* raw_context) const {
  Ort::KernelContext context(raw_context);
  const size_t inputs = context.GetInputCount();
  if (input_index_ >= inputs || (has_skip_ && skip_index_ >= inputs)) throw std::runtime_error("input missing");
  Ort::ConstValue x = context.GetInput(input_index_);
  kernels::LayerNormArgs args;
  args.bias = bias_.empty() ? nullptr : bias_.data();
  std::vector<int64_t> shape;
  std::vector<float> summed;  // operands of different shapes: (x + bias) + skip broadcast first
  if (!has_skip_) {
    shape = FloatRowsShape(x, D_, "LayerNormalization input");
    args.x = x.GetTensorData<float>();
  } else {
    const std::vector<int64_t> x_shape = FloatShape(x, "residual Add input");
    Ort::ConstValue skip = context.GetInput(skip_index_);
    const std::vector<int64_t> skip_shape = FloatShape(skip, "residual Add input");
    if (x_shape == skip_shape && !x_shape.empty() && x_shape.back() == D_) {  // the fused kernel's case
      shape = x_shape;
      args.x = x.GetTensorData<float>();
      args.skip = skip.GetTensorData<float>();
    } else {  // broadcast as ONNX Add does: (x + bias) + skip, then normalize the rows
      std::vector<int64_t> xb_shape = x_shape;
      std::vector<float> xb(x.GetTensorData<float>(), x.GetTensorData<float>() + Count(x_shape));
      if (args.bias != nullptr) {
        const auto s = Broadcast(x_shape, {D_});
        if (!s) throw std::runtime_error("bias Add operands do not broadcast");
        std::vector<float> t(static_cast<size_t>(Count(*s)));
        BroadcastAdd(xb.data(), x_shape, args.bias, {D_}, *s, t.data());
        xb = std::move(t);
        xb_shape = *s;
      }
      const auto out_shape = Broadcast(xb_shape, skip_shape);
      if (!out_shape || out_shape->empty() || out_shape->back() != D_)
        throw std::runtime_error("residual Add operands do not broadcast to rows of the LayerNormalization size " +
                                 std::to_string(D_));
      summed.resize(static_cast<size_t>(Count(*out_shape)));
      BroadcastAdd(xb.data(), xb_shape, skip.GetTensorData<float>(), skip_shape, *out_shape, summed.data());
      shape = *out_shape;
      args.x = summed.data();
      args.bias = nullptr;
    }
  }
  Ort::UnownedValue out = context.GetOutput(0, shape);
  if (static_cast<OrtValue*>(out) == nullptr) return;  // nothing reads the output
  const int64_t rows = Count(shape) / D_;
  if (rows == 0) return;
  args.gamma = gamma_.data();
  args.beta = beta_.empty() ? nullptr : beta_.data();
  args.epsilon = epsilon_;
  args.D = D_;
  args.y = out.GetTensorMutableData<float>();
  const int threads = pool_ == nullptr ? 1 : pool_->num_threads();
  // below ~64K values a split costs more than it saves
  ThreadPool::ParallelRanges(pool_, rows, rows * D_ >= (1 << 16) ? threads : 1,
                             [&](int64_t r0, int64_t r1) { kernel_(args, r0, r1); });
}

}  // namespace onnxq
