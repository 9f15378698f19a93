#include "claim_rules.h"

#include <utility>

#include "nodes/fp8_matmul_node.h"
#include "nodes/layer_norm_node.h"
#include "nodes/qdq_act_matmul_node.h"
#include "nodes/qdq_matmul_node.h"
#include "nodes/sparse_fp8_matmul_node.h"
#include "nodes/sparse_qdq_matmul_node.h"
#include "nodes/standalone_qdq_node.h"
#include "nodes/token_scale_node.h"
#include "patterns/graph_utils.h"
#include "patterns/layer_norm_pattern.h"
#include "patterns/qdq_act_matmul_pattern.h"
#include "patterns/qdq_matmul_pattern.h"
#include "patterns/qdq_standalone_pattern.h"
#include "patterns/token_scale_pattern.h"

namespace onnxq {
namespace {

// A rule over one spec type: `match` finds the spec, `make_node` turns it into a node at Compile. The spec is
// moved into the group's MakeNode, which owns it until Compile.
template <typename Spec>
ClaimRule Rule(const char* name, std::vector<const char*> op_types, bool (*enabled)(const EpConfig&),
               const char* log_as,
               std::optional<Spec> (*match)(const Ort::ConstNode&, const ClaimContext&, std::string*),
               std::unique_ptr<CompiledNode> (*make_node)(const Spec&, const CompileContext&)) {
  ClaimRule rule{name, std::move(op_types), enabled, log_as, nullptr};
  rule.match = [match, make_node](const Ort::ConstNode& node, const ClaimContext& ctx,
                                  std::string* why_not) -> std::optional<ClaimedGroup> {
    std::optional<Spec> spec = match(node, ctx, why_not);
    if (!spec) return std::nullopt;
    ClaimedGroup group;
    group.key = spec->key;
    group.nodes = std::move(spec->nodes);
    spec->nodes.clear();  // node pointers do not outlive GetCapability
    group.make_node = [s = std::move(*spec), make_node](const CompileContext& c) { return make_node(s, c); };
    return group;
  };
  return rule;
}

bool Always(const EpConfig&) { return true; }
bool LayerNormOn(const EpConfig& config) { return config.layer_norm; }

// ---- weight Q/DQ MatMul / Gemm (INT8 or FP8, dense or block-sparse) ----
std::optional<QdqMatMulSpec> MatchWeightMatMul(const Ort::ConstNode& node, const ClaimContext& ctx,
                                               std::string* why_not) {
  return MatchQdqMatMul(node, ctx.fp8, why_not);
}

std::unique_ptr<CompiledNode> MakeWeightMatMul(const QdqMatMulSpec& spec, const CompileContext& c) {
  const size_t idx = c.input_index(spec.input_name);
  // A sparse weight that does not pay is expanded by the dense node.
  if (spec.is_fp8() && SparseFp8MatMulNode::Pays(spec, c.config.sparse))
    return std::make_unique<SparseFp8MatMulNode>(spec, idx, c.pool);
  if (spec.is_fp8()) return std::make_unique<Fp8MatMulNode>(spec, idx, c.pool);
  if (SparseQdqMatMulNode::Pays(spec, c.config.sparse)) return std::make_unique<SparseQdqMatMulNode>(spec, idx, c.pool);
  const size_t scale_idx =
      spec.token_scale_name.empty() ? QdqMatMulNode::kNoInput : c.input_index(spec.token_scale_name);
  return std::make_unique<QdqMatMulNode>(spec, idx, c.pool, scale_idx);
}

// ---- activation x activation MatMul (attention) ----
std::optional<QdqActMatMulSpec> MatchActMatMul(const Ort::ConstNode& node, const ClaimContext& ctx,
                                               std::string* why_not) {
  return MatchQdqActMatMul(node, ctx.fp8, why_not);
}

std::unique_ptr<CompiledNode> MakeActMatMul(const QdqActMatMulSpec& spec, const CompileContext& c) {
  return std::make_unique<QdqActMatMulNode>(spec, c.input_index(spec.a.input_name), c.input_index(spec.b.input_name),
                                            c.pool);
}

// ---- standalone FP8 Q / DQ, Gather over a dequantized table ----
std::optional<StandaloneQdqSpec> MatchStandalone(const Ort::ConstNode& node, const ClaimContext& ctx,
                                                 std::string* why_not) {
  return MatchStandaloneQdq(node, ctx.fp8, why_not);
}

std::unique_ptr<CompiledNode> MakeStandalone(const StandaloneQdqSpec& spec, const CompileContext& c) {
  return std::make_unique<StandaloneQdqNode>(spec, c.input_index(spec.input_name));
}

// ---- residual + LayerNorm: the Adds it folds must not belong to a group claimed before ----
std::optional<LayerNormSpec> MatchResidualLayerNorm(const Ort::ConstNode& node, const ClaimContext& ctx,
                                                    std::string* why_not) {
  return MatchLayerNorm(node, why_not, ctx.is_claimed);
}

std::unique_ptr<CompiledNode> MakeLayerNorm(const LayerNormSpec& spec, const CompileContext& c) {
  const size_t skip = spec.skip_name.empty() ? 0 : c.input_index(spec.skip_name);
  return std::make_unique<LayerNormNode>(spec, c.input_index(spec.input_name), skip, c.pool);
}

// ---- the per-token scale reduction in front of per-token Q/DQ (Abs, ReduceMax, Max, Div) ----
std::optional<TokenScaleSpec> MatchScale(const Ort::ConstNode& node, const ClaimContext&, std::string* why_not) {
  return MatchTokenScale(node, why_not);
}

std::unique_ptr<CompiledNode> MakeTokenScale(const TokenScaleSpec& spec, const CompileContext& c) {
  return std::make_unique<TokenScaleNode>(spec, c.input_index(spec.input_name));
}

}  // namespace

const std::vector<ClaimRule>& ClaimRules() {
  static const std::vector<ClaimRule> rules = {
      Rule<QdqMatMulSpec>("qdq-matmul", {"MatMul", "Gemm"}, Always, "", MatchWeightMatMul, MakeWeightMatMul),
      // Also sees Gemm, only to log the second reason ("not a MatMul") beside the first.
      Rule<QdqActMatMulSpec>("qdq-act-matmul", {"MatMul", "Gemm"}, Always, "as activation x activation",
                             MatchActMatMul, MakeActMatMul),
      Rule<StandaloneQdqSpec>("standalone-qdq", {"QuantizeLinear", "DequantizeLinear", "Gather"}, Always, nullptr,
                              MatchStandalone, MakeStandalone),
      Rule<LayerNormSpec>("layer-norm", {"LayerNormalization"}, LayerNormOn, "", MatchResidualLayerNorm,
                          MakeLayerNorm),
      Rule<TokenScaleSpec>("token-scale", {"Div"}, Always, nullptr, MatchScale, MakeTokenScale),
  };
  return rules;
}

std::string GroupKey(const Ort::ConstGraph& graph) {
  std::string key;
  std::string fallback;
  std::string div;
  bool reduce = false;
  for (const Ort::ConstNode& node : graph.GetNodes()) {
    if (graph::IsOp(node, "MatMul") || graph::IsOp(node, "Gemm") || graph::IsOp(node, "LayerNormalization"))
      key = node.GetOutputs().at(0).GetName();
    if (graph::IsOp(node, "Gather") || fallback.empty()) fallback = node.GetOutputs().at(0).GetName();
    if (graph::IsOp(node, "Div")) div = node.GetOutputs().at(0).GetName();
    reduce = reduce || graph::IsOp(node, "ReduceMax");
  }
  if (key.empty() && reduce) return div;  // the token-scale group: its Div's output
  return key.empty() ? fallback : key;
}

}  // namespace onnxq
