// Splits one GEMM over the EP's thread pool: a grid of column-panel chunks x row chunks, so threads share the
// activations while each keeps its own slice of the packed weights hot in its L2. Shared by the GEMM families.
#pragma once
#include <algorithm>
#include <cstdint>

#include "runtime/thread_pool.h"

namespace onnxq::kernels {

template <typename Fn>  // fn(m_begin, m_end, n_begin, n_end)
void ParallelGemm(ThreadPool* pool, int64_t M, int64_t N, int64_t K, int64_t panel_width, int64_t m_step, Fn&& fn) {
  if (M <= 0) return;
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  if (threads <= 1 || M * N * K < (1 << 19)) {  // below ~1 MFLOP the hand-off costs more than it saves
    fn(0, M, 0, N);
    return;
  }
  const int64_t panels = (N + panel_width - 1) / panel_width;
  const int64_t n_chunks = std::min<int64_t>(panels, threads);
  const int64_t m_units = (M + m_step - 1) / m_step;
  // Enough column panels for every thread: split columns only (each thread converts/streams only its own
  // weights once). Otherwise split rows as well.
  const int64_t m_chunks =
      panels >= threads ? 1 : std::min<int64_t>(m_units, std::max<int64_t>(1, (2 * threads + n_chunks - 1) / n_chunks));
  const int64_t panels_per_chunk = (panels + n_chunks - 1) / n_chunks;
  const int64_t units_per_chunk = (m_units + m_chunks - 1) / m_chunks;
  pool->ParallelFor(static_cast<size_t>(n_chunks * m_chunks), [&](size_t t) {
    const int64_t nc = static_cast<int64_t>(t) % n_chunks, mc = static_cast<int64_t>(t) / n_chunks;
    const int64_t n0 = nc * panels_per_chunk * panel_width;
    const int64_t n1 = std::min(N, (nc + 1) * panels_per_chunk * panel_width);
    const int64_t m0 = mc * units_per_chunk * m_step, m1 = std::min(M, (mc + 1) * units_per_chunk * m_step);
    if (n0 < n1 && m0 < m1) fn(m0, m1, n0, n1);
  });
}

}  // namespace onnxq::kernels
