// The onnxq execution provider instance (one per session): GetCapability claims the patterns in patterns/,
// Compile turns each claimed group into a node from nodes/ with its weights prepacked.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ep_config.h"
#include "ort_api.h"
#include "patterns/qdq_act_matmul_pattern.h"
#include "patterns/qdq_matmul_pattern.h"
#include "patterns/layer_norm_pattern.h"
#include "patterns/qdq_standalone_pattern.h"
#include "runtime/thread_pool.h"

namespace onnxq {

class OnnxqEpFactory;

class OnnxqEp : public OrtEp {
 public:
  OnnxqEp(OnnxqEpFactory& factory, const OrtLogger& logger, const EpConfig& config);
  ~OnnxqEp();

 private:
  static const char* ORT_API_CALL GetNameImpl(const OrtEp* this_ptr) noexcept;
  static OrtStatus* ORT_API_CALL GetCapabilityImpl(OrtEp* this_ptr, const OrtGraph* graph,
                                                   OrtEpGraphSupportInfo* graph_support_info) noexcept;
  static OrtStatus* ORT_API_CALL CompileImpl(OrtEp* this_ptr, const OrtGraph** graphs,
                                             const OrtNode** fused_nodes, size_t count,
                                             OrtNodeComputeInfo** node_compute_infos,
                                             OrtNode** ep_context_nodes) noexcept;
  static void ORT_API_CALL ReleaseNodeComputeInfosImpl(OrtEp* this_ptr, OrtNodeComputeInfo** infos,
                                                       size_t count) noexcept;

  void ClaimNodes(const OrtGraph* graph, OrtEpGraphSupportInfo* support);
  void CompileGroups(const OrtGraph** graphs, const OrtNode** fused_nodes, size_t count, OrtNodeComputeInfo** infos);
  void Log(OrtLoggingLevel level, const std::string& message) const;

  OnnxqEpFactory& factory_;
  const OrtLogger& logger_;
  const EpConfig config_;
  // Specs found by GetCapability, keyed by MatMul output name, consumed by Compile.
  std::mutex mutex_;
  std::map<std::string, QdqMatMulSpec> pending_;
  std::map<std::string, QdqActMatMulSpec> pending_act_;
  std::map<std::string, StandaloneQdqSpec> pending_standalone_;
  std::map<std::string, LayerNormSpec> pending_layer_norm_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace onnxq
