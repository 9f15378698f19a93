// The EP's own worker pool. One per EP instance (session); sized by the provider option num_threads.
//
// ParallelFor runs fn(i) for i in [0, n) on the workers and the calling thread. Workers spin briefly
// before sleeping, so back-to-back GEMMs in one Run() do not pay a wake-up each. If a second Run() calls
// ParallelFor while the pool is busy, that call runs its tasks on its own thread instead of waiting:
// concurrent Run()s stay correct and never block each other.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace onnxq {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

  // Physical cores when they can be told apart from SMT siblings, else the logical CPU count.
  static int DefaultThreads();

  // [0, n) cut into `chunks` contiguous ranges of ceil(n / chunks), fn(begin, end) for each non-empty one: on the
  // pool, or in order on the calling thread when `pool` is null or has one thread.
  static void ParallelRanges(ThreadPool* pool, int64_t n, int64_t chunks,
                             const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Job {
    const std::function<void(size_t)>* fn = nullptr;
    size_t n = 0;
    std::atomic<size_t> next{0};
    std::atomic<size_t> finished{0};
    std::atomic<int> refs{0};  // workers that picked this job up (incremented under mu_)
    std::mutex error_mu;
    std::exception_ptr error;
  };

  void WorkerLoop();
  static void RunTasks(Job& job);

  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the caller that owns the current job

  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  Job* job_ = nullptr;  // guarded by mu_
};

}  // namespace onnxq
