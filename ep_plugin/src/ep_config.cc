#include "ep_config.h"

#include <cctype>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace onnxq {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int ParseThreads(const std::string& text) {
  if (text.empty()) return 0;
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || v < 0 || v > 1024)
    throw std::invalid_argument("onnxq EP option num_threads must be an integer in [0, 1024], got '" + text + "'");
  return v;
}

kernels::IsaLevel ParseMaxIsa(const std::string& text) {
  kernels::IsaLevel level = kernels::IsaLevel::kAmx;
  if (!kernels::ParseIsaLevel(text, &level))
    throw std::invalid_argument("onnxq EP option max_isa must be one of " + std::string(kernels::IsaLevelNames()) +
                                ", got '" + text + "'");
  return level;
}

bool ParseLayerNorm(const std::string& text) {
  const std::string t = Lower(text);
  if (t == "on") return true;
  if (t == "off") return false;
  throw std::invalid_argument("onnxq EP option layer_norm must be one of on|off, got '" + text + "'");
}

bool ParseSparseMode(const std::string& text, SparseMode* mode) {
  const std::string t = Lower(text);
  for (SparseMode m : {SparseMode::kAuto, SparseMode::kAlways, SparseMode::kNever})
    if (t == SparseModeName(m)) {
      *mode = m;
      return true;
    }
  return false;
}

// An environment variable's value; empty when unset (an empty value counts as unset, as it always has).
std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

}  // namespace

const char* SparseModeName(SparseMode mode) {
  switch (mode) {
    case SparseMode::kAlways:
      return "always";
    case SparseMode::kNever:
      return "never";
    case SparseMode::kAuto:
      break;
  }
  return "auto";
}

EpConfig ParseEpConfig(const OptionLookup& option) {
  EpConfig config;
  config.num_threads = ParseThreads(option("num_threads"));
  if (const std::string v = option("max_isa"); !v.empty()) config.max_isa = ParseMaxIsa(v);
  if (const std::string v = option("layer_norm"); !v.empty()) config.layer_norm = ParseLayerNorm(v);
  if (const std::string v = option("sparse"); !v.empty() && !ParseSparseMode(v, &config.sparse))
    throw std::invalid_argument("onnxq EP option sparse must be one of auto|always|never, got '" + v + "'");
  ApplyEnvOverrides(option, &config);
  return config;
}

void ApplyEnvOverrides(const OptionLookup& option, EpConfig* config) {
  // A lower ceiling from the process wins over the session's, as in the kernel library (kernels::IsaCeiling),
  // which reads the same variable for onnxq._kernels too; parsing it here fails session creation on a bad value.
  if (const std::string v = Env("ONNXQ_MAX_ISA"); !v.empty()) {
    kernels::IsaLevel level;
    if (!kernels::ParseIsaLevel(v, &level))
      throw std::invalid_argument("ONNXQ_MAX_ISA=" + v + " is not an ISA level (" + kernels::IsaLevelNames() + ")");
    if (level < config->max_isa) config->max_isa = level;
  }
  // "never" is the value this variable has always taken; on / off mirror the option.
  if (const std::string v = Env("ONNXQ_LAYERNORM"); !v.empty() && option("layer_norm").empty()) {
    const std::string t = Lower(v);
    if (t != "on" && t != "off" && t != "never")
      throw std::invalid_argument("ONNXQ_LAYERNORM=" + v + " is not one of on|off|never");
    config->layer_norm = t == "on";
  }
  if (const std::string v = Env("ONNXQ_SPARSE"); !v.empty() && option("sparse").empty()) {
    if (!ParseSparseMode(v, &config->sparse))
      throw std::invalid_argument("ONNXQ_SPARSE=" + v + " is not one of auto|always|never");
  }
  // The kernel library reads this variable to pick the FP8 kernel; here it only widens what is claimed.
  config->fp8_kernel_forced = !Env("ONNXQ_FP8_KERNEL").empty();
}

}  // namespace onnxq
