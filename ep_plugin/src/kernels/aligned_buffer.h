// A 64-byte aligned, fixed-size array for packed weights and scratch (vector loads never split cache lines).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace onnxq::kernels {

template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t count) { Reset(count); }
  void Reset(size_t count) {
    count_ = count;
    capacity_ = count;
    const size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    void* p = bytes == 0 ? nullptr : std::aligned_alloc(64, bytes);
    if (bytes != 0 && p == nullptr) throw std::bad_alloc();
    if (p != nullptr) std::memset(p, 0, bytes);
    data_.reset(static_cast<T*>(p));
  }
  // Keeps the allocation when it is large enough (contents are then left as they were, not zeroed).
  void EnsureSize(size_t count) {
    if (count > capacity_) {
      Reset(count);
      capacity_ = count;
    }
    count_ = count;
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  size_t size() const { return count_; }
  T& operator[](size_t i) { return data_.get()[i]; }
  const T& operator[](size_t i) const { return data_.get()[i]; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  size_t count_ = 0;
  size_t capacity_ = 0;
};

}  // namespace onnxq::kernels
