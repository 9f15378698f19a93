// Splits one u8 x s8 GEMM over the EP's thread pool: a grid of column-panel chunks x row chunks, so threads
// share activations but each keeps its own slice of the packed weights hot in its L2.
#pragma once
#include "kernels/qgemm_u8s8.h"
#include "runtime/thread_pool.h"

namespace onnxq::kernels {

void QGemmU8S8Parallel(const QGemmU8S8Kernel& kernel, const QGemmU8S8Args& args, ThreadPool* pool);

}  // namespace onnxq::kernels
