#include "runtime/thread_pool.h"

#include <algorithm>

#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace onnxq {

ThreadPool::ThreadPool(int num_threads) {
  const int workers = num_threads > 1 ? num_threads - 1 : 0;
  workers_.reserve(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::DefaultThreads() {
  // Count distinct (physical id, core id) pairs; SMT siblings share one.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(cpuinfo, line)) {
    auto value = [&line] { auto p = line.find(':'); return p == std::string::npos ? std::string() : line.substr(p + 2); };
    if (line.rfind("physical id", 0) == 0) phys = value();
    if (line.rfind("core id", 0) == 0) cores.emplace(phys, value());
  }
  const int logical = static_cast<int>(std::thread::hardware_concurrency());
  const int physical = static_cast<int>(cores.size());
  if (physical > 0 && (logical == 0 || physical <= logical)) return physical;
  return logical > 0 ? logical : 1;
}

void ThreadPool::RunTasks(Job& job) {
  for (;;) {
    const size_t i = job.next.fetch_add(1);
    if (i >= job.n) break;
    try {
      (*job.fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.error_mu);
      if (!job.error) job.error = std::current_exception();
    }
    job.finished.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little (new work usually follows soon within one Run()), then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      seen = generation_.load();
      if (stop_) return;
      job = job_;
      if (job != nullptr) job->refs.fetch_add(1);
    }
    if (job != nullptr) {
      RunTasks(*job);
      job->refs.fetch_sub(1, std::memory_order_release);
    }
  }
}

void ThreadPool::ParallelRanges(ThreadPool* pool, int64_t n, int64_t chunks,
                                const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunks = std::max<int64_t>(1, std::min(n, chunks));
  const int64_t per = (n + chunks - 1) / chunks;
  auto run = [&](size_t c) {
    const int64_t b = static_cast<int64_t>(c) * per, e = std::min(n, b + per);
    if (b < e) fn(b, e);
  };
  if (pool == nullptr || pool->num_threads() == 1 || chunks == 1) {
    for (int64_t c = 0; c < chunks; ++c) run(static_cast<size_t>(c));
  } else {
    pool->ParallelFor(static_cast<size_t>(chunks), run);
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
  if (n == 1 || workers_.empty() || !busy.owns_lock()) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  RunTasks(job);
  // The job lives on this stack frame: retire it only when all tasks are done and no worker holds it. Workers
  // take a reference under mu_, so checking under mu_ and clearing job_ there closes the window.
  for (;;) {
    if (job.finished.load(std::memory_order_acquire) == n && job.refs.load(std::memory_order_acquire) == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (job.refs.load() == 0) {
        job_ = nullptr;
        break;
      }
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace onnxq
