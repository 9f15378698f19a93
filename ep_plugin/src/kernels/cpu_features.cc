#include "kernels/cpu_features.h"

#include <cpuid.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

namespace onnxq::kernels {
namespace {

uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool fma = (c >> 12) & 1;
  const bool f16c = (c >> 29) & 1;
  if (!osxsave) return f;
  const uint64_t xcr0 = ReadXcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM + YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM state
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = os_avx && ((b >> 5) & 1);
  f.fma = os_avx && fma;
  f.f16c = os_avx && f16c;
  f.avx512f = os_avx512 && ((b >> 16) & 1);
  f.avx512bw = os_avx512 && ((b >> 30) & 1);
  f.avx512vl = os_avx512 && ((b >> 31) & 1);
  f.avx512_vnni = os_avx512 && ((c >> 11) & 1);
  f.avx512_vbmi = os_avx512 && ((c >> 1) & 1);
  f.amx_bf16 = os_amx && ((d >> 22) & 1);
  f.amx_tile = os_amx && ((d >> 24) & 1);
  f.amx_int8 = os_amx && ((d >> 25) & 1);
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.avx512_bf16 = os_avx512 && ((a1 >> 5) & 1);
  return f;
}

constexpr const char* kLevelNames[] = {"scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "amx"};

thread_local IsaLevel t_scoped_ceiling = IsaLevel::kAmx;

}  // namespace

const char* IsaLevelName(IsaLevel level) { return kLevelNames[static_cast<int>(level)]; }

const char* IsaLevelNames() { return "scalar|avx2|avx512|avx512vnni|avx512bf16|amx"; }

bool ParseIsaLevel(const std::string& text, IsaLevel* level) {
  std::string t;
  for (char ch : text) t += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (int i = 0; i <= static_cast<int>(IsaLevel::kAmx); ++i)
    if (t == kLevelNames[i]) {
      *level = static_cast<IsaLevel>(i);
      return true;
    }
  return false;
}

const CpuFeatures& DetectedCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

IsaLevel HighestIsaLevel(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma && f.f16c)) return IsaLevel::kScalar;
  if (!(f.avx512f && f.avx512bw && f.avx512vl)) return IsaLevel::kAvx2;
  if (!f.avx512_vnni) return IsaLevel::kAvx512;
  if (!(f.avx512_bf16 && f.avx512_vbmi)) return IsaLevel::kAvx512Vnni;
  if (!(f.amx_tile && f.amx_int8 && f.amx_bf16)) return IsaLevel::kAvx512Bf16;
  return IsaLevel::kAmx;
}

CpuFeatures CapCpuFeatures(const CpuFeatures& f, IsaLevel level) {
  CpuFeatures c = f;
  // A rung is usable only when all of it is there: an AVX-512 CPU without F16C is not "AVX2 level".
  const IsaLevel top = HighestIsaLevel(f) < level ? HighestIsaLevel(f) : level;
  if (top < IsaLevel::kAmx) c.amx_tile = c.amx_int8 = c.amx_bf16 = false;
  if (top < IsaLevel::kAvx512Bf16) c.avx512_bf16 = c.avx512_vbmi = false;
  if (top < IsaLevel::kAvx512Vnni) c.avx512_vnni = false;
  if (top < IsaLevel::kAvx512) c.avx512f = c.avx512bw = c.avx512vl = false;
  if (top < IsaLevel::kAvx2) c.avx2 = c.fma = c.f16c = false;
  return c;
}

IsaLevel IsaCeiling() {
  IsaLevel level = t_scoped_ceiling;
  const char* env = std::getenv("ONNXQ_MAX_ISA");
  if (env != nullptr && *env != '\0') {
    IsaLevel from_env;
    if (!ParseIsaLevel(env, &from_env))
      throw std::invalid_argument(std::string("ONNXQ_MAX_ISA=") + env + " is not an ISA level (" + IsaLevelNames() +
                                  ")");
    if (from_env < level) level = from_env;
  }
  return level;
}

CpuFeatures GetCpuFeatures() { return CapCpuFeatures(DetectedCpuFeatures(), IsaCeiling()); }

IsaLevel ActiveIsaLevel() { return HighestIsaLevel(GetCpuFeatures()); }

ScopedIsaCeiling::ScopedIsaCeiling(IsaLevel level) : previous_(t_scoped_ceiling) {
  if (level < t_scoped_ceiling) t_scoped_ceiling = level;
}

ScopedIsaCeiling::~ScopedIsaCeiling() { t_scoped_ceiling = previous_; }

std::string CpuFeaturesString(const CpuFeatures& f) {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_vbmi, "avx512_vbmi");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.amx_tile, "amx_tile");
  add(f.amx_int8, "amx_int8");
  add(f.amx_bf16, "amx_bf16");
  return s;
}

}  // namespace onnxq::kernels
