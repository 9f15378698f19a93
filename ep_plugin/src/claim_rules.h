// What the EP claims, as one ordered table of rules. Each rule wraps a pattern matcher from patterns/ and says how
// its spec becomes a node from nodes/ at Compile. GetCapability runs the rules in table order, each as its own
// pass over the graph's nodes of the rule's op types; the first rule that matches a node decides it (a group that
// overlaps one already claimed is dropped, and no later rule retries that node).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ep_config.h"
#include "nodes/compiled_node.h"
#include "ort_api.h"
#include "runtime/thread_pool.h"

namespace onnxq {

// What a matcher may consult besides the node.
struct ClaimContext {
  const EpConfig& config;
  bool fp8;  // FP8 groups may be claimed: a vector FP8 kernel exists under the ceiling, or one is forced
  std::function<bool(const OrtNode*)> is_claimed;
};

// What making a node may consult: the fused node's input index of a tensor name, the EP's pool, the config.
struct CompileContext {
  std::function<size_t(const std::string&)> input_index;
  ThreadPool* pool;
  const EpConfig& config;
};

using MakeNode = std::function<std::unique_ptr<CompiledNode>(const CompileContext&)>;

// A group a rule matched: its nodes (valid only during GetCapability) and, holding the spec copied out of the
// model, how it becomes a node at Compile.
struct ClaimedGroup {
  std::string key;  // the group's output name that Compile finds it by (see GroupKey)
  std::vector<const OrtNode*> nodes;
  MakeNode make_node;
};

struct ClaimRule {
  const char* name;
  std::vector<const char*> op_types;  // ONNX-domain ops the rule's pass looks at
  bool (*enabled)(const EpConfig&);
  // How a miss is logged: nullptr not at all; "" as the reason; otherwise "; <log_as>: <reason>" after the
  // previous rule's reason for the same node.
  const char* log_as;
  std::function<std::optional<ClaimedGroup>(const Ort::ConstNode&, const ClaimContext&, std::string* why_not)> match;
};

// The rules in priority order: weight Q/DQ MatMul, activation x activation MatMul, standalone FP8 Q / DQ and
// quantized-table Gather, residual + LayerNorm, the per-token scale reduction.
const std::vector<ClaimRule>& ClaimRules();

// The key of a fused group's graph as Compile sees it: the MatMul / Gemm / LayerNormalization output, else (a
// token-scale group, which has a ReduceMax) its Div's output, else a Gather's output, else the first node's output;
// equals the ClaimedGroup's key.
std::string GroupKey(const Ort::ConstGraph& graph);

}  // namespace onnxq
