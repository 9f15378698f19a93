#include "ep.h"

#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

#include "ep_factory.h"
#include "kernels/gemm_bf16_fp8w.h"
#include "nodes/fp8_matmul_node.h"
#include "nodes/layer_norm_node.h"
#include "nodes/qdq_act_matmul_node.h"
#include "nodes/qdq_matmul_node.h"
#include "nodes/sparse_fp8_matmul_node.h"
#include "nodes/sparse_qdq_matmul_node.h"
#include "nodes/standalone_qdq_node.h"
#include "patterns/graph_utils.h"

namespace onnxq {
namespace {

// OrtNodeComputeInfo for one compiled group. The node is immutable after Compile, so the state handed to
// onnxruntime is the node itself and concurrent Run() calls share it safely.
struct QdqMatMulComputeInfo : OrtNodeComputeInfo {
  explicit QdqMatMulComputeInfo(std::unique_ptr<CompiledNode> n) : OrtNodeComputeInfo{}, node(std::move(n)) {
    ort_version_supported = ORT_API_VERSION;
    CreateState = CreateStateImpl;
    Compute = ComputeImpl;
    ReleaseState = ReleaseStateImpl;
  }
  static OrtStatus* ORT_API_CALL CreateStateImpl(OrtNodeComputeInfo* this_ptr, OrtNodeComputeContext*,
                                                 void** state) noexcept {
    *state = static_cast<QdqMatMulComputeInfo*>(this_ptr)->node.get();
    return nullptr;
  }
  static OrtStatus* ORT_API_CALL ComputeImpl(OrtNodeComputeInfo*, void* state, OrtKernelContext* ctx) noexcept {
    return StatusFromCall([&] { static_cast<const CompiledNode*>(state)->Compute(ctx); });
  }
  static void ORT_API_CALL ReleaseStateImpl(OrtNodeComputeInfo*, void*) noexcept {}

  std::unique_ptr<CompiledNode> node;
};

// FP8 groups are claimed only where a vector FP8 kernel exists (the scalar reference is for tests, forced with
// ONNXQ_FP8_KERNEL=ref); otherwise onnxruntime keeps them.
bool Fp8Claimable(const EpConfig& config) {
  return kernels::HasFastGemmBf16Fp8Kernel() || config.fp8_kernel_forced;
}

}  // namespace

OnnxqEp::OnnxqEp(OnnxqEpFactory& factory, const OrtLogger& logger, const EpConfig& config)
    : OrtEp{}, factory_(factory), logger_(logger), config_(config) {
  const int threads = config.num_threads > 0 ? config.num_threads : ThreadPool::DefaultThreads();
  pool_ = std::make_unique<ThreadPool>(threads);
  ort_version_supported = ORT_API_VERSION;
  GetName = GetNameImpl;
  GetCapability = GetCapabilityImpl;
  Compile = CompileImpl;
  ReleaseNodeComputeInfos = ReleaseNodeComputeInfosImpl;
}

OnnxqEp::~OnnxqEp() = default;

const char* ORT_API_CALL OnnxqEp::GetNameImpl(const OrtEp*) noexcept { return kEpName; }

void OnnxqEp::Log(OrtLoggingLevel level, const std::string& message) const {
  OrtStatus* st = factory_.ort_api.Logger_LogMessage(&logger_, level, message.c_str(), __FILE__, __LINE__, "onnxq");
  if (st != nullptr) factory_.ort_api.ReleaseStatus(st);
}

OrtStatus* ORT_API_CALL OnnxqEp::GetCapabilityImpl(OrtEp* this_ptr, const OrtGraph* graph,
                                                   OrtEpGraphSupportInfo* support) noexcept {
  return StatusFromCall([&] { static_cast<OnnxqEp*>(this_ptr)->ClaimNodes(graph, support); });
}

void OnnxqEp::ClaimNodes(const OrtGraph* ort_graph, OrtEpGraphSupportInfo* support) {
  // What is claimed depends on the kernels available under this session's ceiling (FP8 needs a vector kernel).
  kernels::ScopedIsaCeiling ceiling(config_.max_isa);
  Ort::ConstGraph graph{ort_graph};
  std::set<const OrtNode*> claimed;
  const bool fp8 = Fp8Claimable(config_);
  auto add_group = [&](const std::vector<const OrtNode*>& nodes) {
    for (const OrtNode* n : nodes)
      if (claimed.count(n) != 0) return false;
    OrtNodeFusionOptions options{};
    options.ort_version_supported = ORT_API_VERSION;
    options.drop_constant_initializers = true;  // weights are copied and prepacked at Compile
    Ort::ThrowOnError(
        factory_.ep_api.EpGraphSupportInfo_AddNodesToFuse(support, nodes.data(), nodes.size(), &options));
    claimed.insert(nodes.begin(), nodes.end());
    return true;
  };
  for (const Ort::ConstNode& node : graph.GetNodes()) {
    if (!graph::IsOp(node, "MatMul") && !graph::IsOp(node, "Gemm")) continue;
    std::string why_not;
    if (std::optional<QdqMatMulSpec> spec = MatchQdqMatMul(node, fp8, &why_not)) {
      if (!add_group(spec->nodes)) continue;
      spec->nodes.clear();
      std::lock_guard<std::mutex> lock(mutex_);
      const std::string key = spec->key;
      pending_.insert_or_assign(key, std::move(*spec));
      continue;
    }
    std::string why_not_act;
    if (std::optional<QdqActMatMulSpec> act = MatchQdqActMatMul(node, fp8, &why_not_act)) {
      if (!add_group(act->nodes)) continue;
      act->nodes.clear();
      std::lock_guard<std::mutex> lock(mutex_);
      const std::string key = act->key;
      pending_act_.insert_or_assign(key, std::move(*act));
      continue;
    }
    Log(ORT_LOGGING_LEVEL_VERBOSE, "onnxq: " + node.GetOperatorType() + " '" + node.GetName() +
                                       "' not claimed: " + why_not + "; as activation x activation: " + why_not_act);
  }
  // Second pass, over what the MatMul groups left: FP8 Q / DQ and quantized-table Gathers.
  for (const Ort::ConstNode& node : graph.GetNodes()) {
    if (claimed.count(node) != 0) continue;
    if (!graph::IsOp(node, "QuantizeLinear") && !graph::IsOp(node, "DequantizeLinear") && !graph::IsOp(node, "Gather"))
      continue;
    std::string why_not;
    std::optional<StandaloneQdqSpec> spec = MatchStandaloneQdq(node, fp8, &why_not);
    if (!spec || !add_group(spec->nodes)) continue;
    spec->nodes.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string key = spec->key;
    pending_standalone_.insert_or_assign(key, std::move(*spec));
  }
  // Third pass: residual + LayerNorm (patterns/layer_norm_pattern.h), unless the layer_norm option is off.
  if (!config_.layer_norm) return;
  for (const Ort::ConstNode& node : graph.GetNodes()) {
    if (claimed.count(node) != 0 || !graph::IsOp(node, "LayerNormalization")) continue;
    std::string why_not;
    std::optional<LayerNormSpec> spec =
        MatchLayerNorm(node, &why_not, [&](const OrtNode* n) { return claimed.count(n) != 0; });
    if (!spec) {
      Log(ORT_LOGGING_LEVEL_VERBOSE, "onnxq: LayerNormalization '" + node.GetName() + "' not claimed: " + why_not);
      continue;
    }
    if (!add_group(spec->nodes)) continue;
    spec->nodes.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string key = spec->key;
    pending_layer_norm_.insert_or_assign(key, std::move(*spec));
  }
}

OrtStatus* ORT_API_CALL OnnxqEp::CompileImpl(OrtEp* this_ptr, const OrtGraph** graphs, const OrtNode** fused_nodes,
                                             size_t count, OrtNodeComputeInfo** infos,
                                             OrtNode** /*ep_context_nodes*/) noexcept {
  for (size_t i = 0; i < count; ++i) infos[i] = nullptr;
  OrtStatus* status =
      StatusFromCall([&] { static_cast<OnnxqEp*>(this_ptr)->CompileGroups(graphs, fused_nodes, count, infos); });
  if (status != nullptr) {
    for (size_t i = 0; i < count; ++i) {
      delete static_cast<QdqMatMulComputeInfo*>(infos[i]);
      infos[i] = nullptr;
    }
  }
  return status;
}

void OnnxqEp::CompileGroups(const OrtGraph** graphs, const OrtNode** fused_nodes, size_t count,
                      OrtNodeComputeInfo** infos) {
  // Every node picks its kernels in its constructor, under this session's ceiling.
  kernels::ScopedIsaCeiling ceiling(config_.max_isa);
  for (size_t i = 0; i < count; ++i) {
    Ort::ConstGraph graph{graphs[i]};
    std::string key;
    std::string standalone_key;
    for (const Ort::ConstNode& node : graph.GetNodes()) {
      if (graph::IsOp(node, "MatMul") || graph::IsOp(node, "Gemm") || graph::IsOp(node, "LayerNormalization"))
        key = node.GetOutputs().at(0).GetName();
      if (graph::IsOp(node, "Gather") || standalone_key.empty()) standalone_key = node.GetOutputs().at(0).GetName();
    }
    if (key.empty()) key = standalone_key;
    const auto fused_inputs = Ort::ConstNode{fused_nodes[i]}.GetInputs();
    auto input_index = [&](const std::string& name) {
      for (size_t j = 0; j < fused_inputs.size(); ++j)
        if (!graph::IsNull(fused_inputs[j]) && fused_inputs[j].GetName() == name) return j;
      throw std::runtime_error("fused node has no input named '" + name + "'");
    };
    std::unique_ptr<CompiledNode> node;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (auto it = pending_.find(key); it != pending_.end()) {
        QdqMatMulSpec spec = std::move(it->second);
        pending_.erase(it);
        lock.unlock();
        const size_t idx = input_index(spec.input_name);
        if (spec.is_fp8() && SparseFp8MatMulNode::Pays(spec, config_.sparse))
          node = std::make_unique<SparseFp8MatMulNode>(spec, idx, pool_.get());
        else if (spec.is_fp8())
          node = std::make_unique<Fp8MatMulNode>(spec, idx, pool_.get());  // dense (a sparse weight is expanded)
        else if (SparseQdqMatMulNode::Pays(spec, config_.sparse))
          node = std::make_unique<SparseQdqMatMulNode>(spec, idx, pool_.get());
        else
          node = std::make_unique<QdqMatMulNode>(spec, idx, pool_.get());  // dense (a sparse weight is expanded)
      } else if (auto it2 = pending_act_.find(key); it2 != pending_act_.end()) {
        QdqActMatMulSpec spec = std::move(it2->second);
        pending_act_.erase(it2);
        lock.unlock();
        node = std::make_unique<QdqActMatMulNode>(spec, input_index(spec.a.input_name), input_index(spec.b.input_name),
                                                  pool_.get());
      } else if (auto it3 = pending_standalone_.find(key); it3 != pending_standalone_.end()) {
        StandaloneQdqSpec spec = std::move(it3->second);
        pending_standalone_.erase(it3);
        lock.unlock();
        node = std::make_unique<StandaloneQdqNode>(spec, input_index(spec.input_name));
      } else if (auto it4 = pending_layer_norm_.find(key); it4 != pending_layer_norm_.end()) {
        LayerNormSpec spec = std::move(it4->second);
        pending_layer_norm_.erase(it4);
        lock.unlock();
        const size_t skip = spec.skip_name.empty() ? 0 : input_index(spec.skip_name);
        node = std::make_unique<LayerNormNode>(spec, input_index(spec.input_name), skip, pool_.get());
      } else {
        throw std::runtime_error("Compile got a group GetCapability did not claim: " + key);
      }
    }
    Log(ORT_LOGGING_LEVEL_VERBOSE, "onnxq: compiled " + key + " with kernel " + node->kernel_name() + " (ISA level " +
                                       kernels::IsaLevelName(kernels::ActiveIsaLevel()) + "), " +
                                       std::to_string(pool_->num_threads()) + " threads");
    infos[i] = new QdqMatMulComputeInfo(std::move(node));
  }
}

void ORT_API_CALL OnnxqEp::ReleaseNodeComputeInfosImpl(OrtEp*, OrtNodeComputeInfo** infos, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) delete static_cast<QdqMatMulComputeInfo*>(infos[i]);
}

}  // namespace onnxq
