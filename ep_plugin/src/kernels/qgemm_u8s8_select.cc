// Runtime choice among the compiled u8 x s8 GEMM variants.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/qgemm_u8s8.h"

namespace onnxq::kernels {

std::vector<const QGemmU8S8Kernel*> AvailableQGemmU8S8Kernels() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<const QGemmU8S8Kernel*> out;
  if (f.amx_int8 && f.avx512bw && f.avx512vl && QGemmU8S8AmxKernel() != nullptr) out.push_back(QGemmU8S8AmxKernel());
  if (f.avx512_vnni && f.avx512bw && f.avx512vl && QGemmU8S8Avx512VnniKernel() != nullptr)
    out.push_back(QGemmU8S8Avx512VnniKernel());
  if (f.avx2 && f.fma && f.f16c && QGemmU8S8Avx2Kernel() != nullptr) out.push_back(QGemmU8S8Avx2Kernel());
  out.push_back(&QGemmU8S8RefKernel());
  return out;
}

const QGemmU8S8Kernel* FindQGemmU8S8Kernel(const char* name) {
  for (const QGemmU8S8Kernel* k : AvailableQGemmU8S8Kernels())
    if (std::strcmp(k->name, name) == 0) return k;
  return nullptr;
}

const QGemmU8S8Kernel& SelectQGemmU8S8Kernel() {
  const char* forced = std::getenv("ONNXQ_QGEMM_KERNEL");
  if (forced != nullptr && *forced != '\0') {
    const QGemmU8S8Kernel* k = FindQGemmU8S8Kernel(forced);
    if (k == nullptr)
      throw std::invalid_argument(std::string("ONNXQ_QGEMM_KERNEL=") + forced +
                                  " is not available on this CPU (try ref, avx2, avx512vnni, amx)");
    return *k;
  }
  return *AvailableQGemmU8S8Kernels().front();
}

}  // namespace onnxq::kernels
