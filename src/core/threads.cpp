// Thread pool behind parallel_for: workers wait on a generation counter; each call publishes one job. Waiting
// threads first spin for up to kSpin (on atomics mirroring the generation and the pending count), then sleep on
// the condition variables: jobs that follow each other within microseconds (a decode step makes ~150) then cost
// no sleep and wake-up in the kernel, and a busy machine still gets the CPU back after kSpin.
#include "core/threads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tune {

namespace {

constexpr std::chrono::microseconds kSpin(50);

// Spins until done() or kSpin has passed; true when done.
template <class F>
bool spin_until(F done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    if (std::chrono::steady_clock::now() >= end) return false;
  }
}

class Pool {
 public:
  explicit Pool(int n) : n_(std::max(1, n)) {
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { worker(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  void run(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
    const int64_t chunks = std::min<int64_t>(n_, std::max<int64_t>(1, n / std::max<int64_t>(min_chunk, 1)));
    // Tiny loops, and calls made while the pool is busy (nested or from another thread), run inline.
    std::unique_lock<std::mutex> call_lk(call_mu_, std::try_to_lock);
    if (chunks <= 1 || !call_lk.owns_lock()) {
      fn(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_items_ = n;
      n_chunks_ = chunks;
      pending_ = int(chunks) - 1;
      pending_spin_.store(pending_, std::memory_order_release);
      error_ = nullptr;
      ++generation_;
      generation_spin_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    run_chunk(0);
    spin_until([this] { return pending_spin_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_chunk(int64_t c) {
    const int64_t begin = n_items_ * c / n_chunks_, end = n_items_ * (c + 1) / n_chunks_;
    try {
      if (begin < end) (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void worker(int index) {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return generation_spin_.load(std::memory_order_acquire) != seen; });
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index >= n_chunks_) continue;
      lk.unlock();
      run_chunk(index);
      lk.lock();
      pending_spin_.store(--pending_, std::memory_order_release);
      if (pending_ == 0) done_cv_.notify_one();
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::mutex mu_, call_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_items_ = 0, n_chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  // Copies of pending_ and generation_ that spinning threads read without the mutex.
  std::atomic<int> pending_spin_{0};
  std::atomic<uint64_t> generation_spin_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

int g_requested = 0;

int default_threads() {
  if (const char* env = std::getenv("TUNE_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

Pool& pool() {
  static Pool p(g_requested > 0 ? g_requested : default_threads());
  return p;
}

}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  pool().run(n, fn, min_chunk);
}

int num_threads() { return pool().size(); }
void set_num_threads(int n) { g_requested = n; }

}  // namespace tune
