// What one onnxq EP session is configured to do, parsed once from its provider options when the session creates
// the EP, then handed to the claim rules and the nodes. Nothing below the parser reads the environment.
#pragma once
#include <functional>
#include <string>

#include "kernels/cpu_features.h"

namespace onnxq {

// Whether a block-sparse 4x1 weight runs on the sparse kernel: where it measured faster (auto), whenever this CPU
// has one (always), or never (the weight is expanded and runs dense). Results are equal either way for INT8.
enum class SparseMode { kAuto, kAlways, kNever };

struct EpConfig {
  int num_threads = 0;                                  // 0: physical cores
  kernels::IsaLevel max_isa = kernels::IsaLevel::kAmx;  // ISA ceiling for this session's kernels
  bool layer_norm = true;                               // claim residual + LayerNormalization
  SparseMode sparse = SparseMode::kAuto;
  // Test knob only (ONNXQ_FP8_KERNEL set): claim FP8 groups even without a vector FP8 kernel, so the forced
  // kernel (e.g. the scalar reference) runs them.
  bool fp8_kernel_forced = false;
};

// A provider option's value by key ("num_threads", ...); empty when the session did not set it.
using OptionLookup = std::function<std::string(const char* key)>;

// Defaults, then the provider options, then ApplyEnvOverrides. A bad value throws std::invalid_argument naming the
// option (or variable), the value and the allowed values.
EpConfig ParseEpConfig(const OptionLookup& option);

// The test / benchmark overrides from the environment: the only place the EP reads it. ONNXQ_LAYERNORM and
// ONNXQ_SPARSE stand in for options the session left unset; ONNXQ_MAX_ISA lowers max_isa (the kernel library
// applies the same cap to every kernel choice in the process); ONNXQ_FP8_KERNEL sets fp8_kernel_forced.
// `option` tells which options the session set.
void ApplyEnvOverrides(const OptionLookup& option, EpConfig* config);

const char* SparseModeName(SparseMode mode);

}  // namespace onnxq
