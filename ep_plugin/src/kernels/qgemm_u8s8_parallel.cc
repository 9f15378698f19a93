#include "kernels/qgemm_u8s8_parallel.h"

#include "kernels/parallel_gemm.h"

namespace onnxq::kernels {

void QGemmU8S8Parallel(const QGemmU8S8Kernel& kernel, const QGemmU8S8Args& args, ThreadPool* pool) {
  ParallelGemm(pool, args.M, args.B->N, args.B->K, kernel.panel_width, kernel.m_step,
               [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { kernel.compute(args, m0, m1, n0, n1); });
}

}  // namespace onnxq::kernels
