#include "kernels/qgemm_u8s8_parallel.h"

#include <algorithm>

namespace onnxq::kernels {

void QGemmU8S8Parallel(const QGemmU8S8Kernel& kernel, const QGemmU8S8Args& args, ThreadPool* pool) {
  const int64_t M = args.M, N = args.B->N, K = args.B->K;
  if (M <= 0) return;
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  // Below ~1 MFLOP the hand-off costs more than it saves.
  if (threads <= 1 || M * N * K < (1 << 19)) {
    kernel.compute(args, 0, M, 0, N);
    return;
  }
  const int64_t pw = kernel.panel_width;
  const int64_t panels = (N + pw - 1) / pw;
  const int64_t n_chunks = std::min<int64_t>(panels, threads);
  const int64_t m_units = (M + kernel.m_step - 1) / kernel.m_step;
  const int64_t m_chunks = std::min<int64_t>(m_units, std::max<int64_t>(1, (2 * threads + n_chunks - 1) / n_chunks));
  const int64_t panels_per_chunk = (panels + n_chunks - 1) / n_chunks;
  const int64_t units_per_chunk = (m_units + m_chunks - 1) / m_chunks;
  pool->ParallelFor(static_cast<size_t>(n_chunks * m_chunks), [&](size_t t) {
    const int64_t nc = static_cast<int64_t>(t) % n_chunks, mc = static_cast<int64_t>(t) / n_chunks;
    const int64_t n0 = nc * panels_per_chunk * pw, n1 = std::min(N, (nc + 1) * panels_per_chunk * pw);
    const int64_t m0 = mc * units_per_chunk * kernel.m_step, m1 = std::min(M, (mc + 1) * units_per_chunk * kernel.m_step);
    if (n0 < n1 && m0 < m1) kernel.compute(args, m0, m1, n0, n1);
  });
}

}  // namespace onnxq::kernels
