// A persistent thread pool for CPU ops. parallel_for splits [0, n) into contiguous chunks, one per worker, and
// runs them on the pool and the calling thread; it returns when all are done. Exceptions propagate to the caller.
#pragma once

#include <cstdint>
#include <functional>

namespace tune {

// fn(begin, end) is called on disjoint ranges covering [0, n). `min_chunk` keeps tiny loops single-threaded.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

// Number of threads parallel_for uses (TUNE_THREADS or the hardware concurrency); settable once at start-up.
int num_threads();
void set_num_threads(int n);

}  // namespace tune
