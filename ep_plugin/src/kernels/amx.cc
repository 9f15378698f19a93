#include "kernels/amx.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/cpu_features.h"

namespace onnxq::kernels {

bool AmxAvailable() {
  // The OS grant is asked once, for the CPU as detected; the ISA ceiling is applied on every call.
  static const bool granted = [] {
    const CpuFeatures& f = DetectedCpuFeatures();
    if (!f.amx_tile) return false;
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted && GetCpuFeatures().amx_tile;
}

}  // namespace onnxq::kernels
