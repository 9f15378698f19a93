// Runtime CPU feature detection and the ISA ceiling, used to pick kernels (the library itself is built for
// baseline x86-64; ISA code lives in files compiled with their own flags and is entered only after a check here).
#pragma once
#include <string>

namespace onnxq::kernels {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_vbmi = false;
  bool amx_tile = false;
  bool amx_int8 = false;
  bool amx_bf16 = false;
};

// The ISA ladder. Each rung includes the ones below it; a ceiling caps which kernels may be chosen.
//   scalar      the references only
//   avx2        AVX2 + FMA + F16C
//   avx512      + AVX-512 F / BW / VL
//   avx512vnni  + AVX512-VNNI
//   avx512bf16  + AVX512-BF16 + VBMI
//   amx         + AMX tile / INT8 / BF16
enum class IsaLevel { kScalar = 0, kAvx2, kAvx512, kAvx512Vnni, kAvx512Bf16, kAmx };

const char* IsaLevelName(IsaLevel level);
// Parses a level name ("scalar", "avx2", ...; case-insensitive); false if it names none.
bool ParseIsaLevel(const std::string& text, IsaLevel* level);
// "scalar|avx2|avx512|avx512vnni|avx512bf16|amx", for error messages.
const char* IsaLevelNames();

// What this CPU (and OS) offers, detected once with cpuid + xgetbv, ignoring any ceiling.
const CpuFeatures& DetectedCpuFeatures();
// The highest rung whose every feature `f` has.
IsaLevel HighestIsaLevel(const CpuFeatures& f);
// `f` with every feature above `level` cleared.
CpuFeatures CapCpuFeatures(const CpuFeatures& f, IsaLevel level);

// The ceiling in force on this thread: the lowest of the environment variable ONNXQ_MAX_ISA (tests and
// benchmarks; an invalid value throws) and the calling thread's ScopedIsaCeiling (the EP's `max_isa` provider
// option, in force while a session claims and compiles its nodes). kAmx when neither is set.
IsaLevel IsaCeiling();

// Features kernels may use: DetectedCpuFeatures() capped by IsaCeiling(). Every kernel choice goes through this.
CpuFeatures GetCpuFeatures();
// The rung in use: HighestIsaLevel(GetCpuFeatures()).
IsaLevel ActiveIsaLevel();

// Caps the ceiling on this thread for its lifetime (nested scopes restore the previous one).
class ScopedIsaCeiling {
 public:
  explicit ScopedIsaCeiling(IsaLevel level);
  ~ScopedIsaCeiling();
  ScopedIsaCeiling(const ScopedIsaCeiling&) = delete;
  ScopedIsaCeiling& operator=(const ScopedIsaCeiling&) = delete;

 private:
  IsaLevel previous_;
};

// "avx512_vnni avx512_bf16 ..." — for logs, `onnxq --version` and tests.
std::string CpuFeaturesString(const CpuFeatures& f);

}  // namespace onnxq::kernels
