// The onnxq execution provider instance (one per session): GetCapability claims groups by the rules in
// claim_rules.h, Compile turns each claimed group into its rule's node from nodes/ with its weights prepacked.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "claim_rules.h"
#include "ep_config.h"
#include "ort_api.h"
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
  // Groups claimed by GetCapability, keyed by GroupKey: how each becomes its node (holding the rule's spec),
  // consumed by Compile.
  std::mutex mutex_;
  std::map<std::string, MakeNode> pending_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace onnxq
