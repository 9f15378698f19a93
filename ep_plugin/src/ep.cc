#include "ep.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "ep_factory.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm_bf16_fp8w.h"
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

bool LooksAt(const ClaimRule& rule, const Ort::ConstNode& node) {
  for (const char* op : rule.op_types)
    if (graph::IsOp(node, op)) return true;
  return false;
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
  std::set<const OrtNode*> decided;  // matched by a rule (claimed or overlapping): later rules leave it alone
  // Why no rule took a node, per node in the order first passed over: logged once all rules have run.
  std::vector<std::pair<Ort::ConstNode, std::string>> misses;
  std::map<const OrtNode*, size_t> miss_of;
  const ClaimContext ctx{config_, Fp8Claimable(config_), [&](const OrtNode* n) { return claimed.count(n) != 0; }};
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
  for (const ClaimRule& rule : ClaimRules()) {
    if (!rule.enabled(config_)) continue;
    for (const Ort::ConstNode& node : graph.GetNodes()) {
      if (!LooksAt(rule, node) || claimed.count(node) != 0 || decided.count(node) != 0) continue;
      std::string why_not;
      std::optional<ClaimedGroup> group = rule.match(node, ctx, &why_not);
      if (!group) {
        if (rule.log_as == nullptr) continue;
        auto [it, first] = miss_of.emplace(node, misses.size());
        if (first) misses.emplace_back(node, std::string());
        std::string& why = misses[it->second].second;
        if (!first) why += "; ";
        why += *rule.log_as == '\0' ? why_not : std::string(rule.log_as) + ": " + why_not;
        continue;
      }
      decided.insert(node);
      if (!add_group(group->nodes)) continue;  // overlaps an earlier group: not logged
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.insert_or_assign(group->key, std::move(group->make_node));
    }
  }
  for (const auto& [node, why] : misses)
    if (decided.count(node) == 0)
      Log(ORT_LOGGING_LEVEL_VERBOSE,
          "onnxq: " + node.GetOperatorType() + " '" + node.GetName() + "' not claimed: " + why);
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
    const std::string key = GroupKey(Ort::ConstGraph{graphs[i]});
    const auto fused_inputs = Ort::ConstNode{fused_nodes[i]}.GetInputs();
    auto input_index = [&](const std::string& name) {
      for (size_t j = 0; j < fused_inputs.size(); ++j)
        if (!graph::IsNull(fused_inputs[j]) && fused_inputs[j].GetName() == name) return j;
      throw std::runtime_error("fused node has no input named '" + name + "'");
    };
    MakeNode make_node;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = pending_.find(key);
      if (it == pending_.end()) throw std::runtime_error("Compile got a group GetCapability did not claim: " + key);
      make_node = std::move(it->second);
      pending_.erase(it);
    }
    std::unique_ptr<CompiledNode> node = make_node(CompileContext{input_index, pool_.get(), config_});
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
