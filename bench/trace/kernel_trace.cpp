// A CUPTI activity tracer for any CUDA program, loaded with CUDA_INJECTION64_PATH=path/to/libkernel_trace.so:
// it writes one tab-separated line per kernel, copy and memset the program ran, with the device's start and
// end timestamps (ns), to $KERNEL_TRACE_OUT (default kernel_trace.tsv). Unlike ncu, which replays kernels one
// at a time, this sees them as they run in the program, at its clocks and power draw. bench/kernel_trace.py
// sums a trace per kernel and per step. With KERNEL_TRACE_API=1 it also writes the host's runtime and driver API
// calls (same clock), so that a gap before a kernel can be told apart: the GPU waiting for the host's launch call,
// or the launch already made long before.
//   K  start  end  stream  grid(x,y,z)  block_x  name  correlation
//   M  start  end  stream  copy_kind  bytes
//   S  start  end  stream  bytes
//   A  start  end  correlation  callback_id  R|D (runtime or driver API)
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

FILE* out = nullptr;
std::mutex mu;

void CUPTIAPI buffer_requested(uint8_t** buf, size_t* size, size_t* max_records) {
  *size = size_t(8) << 20;
  *buf = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buf, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(mu);
  CUpti_Activity* rec = nullptr;
  while (out && cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
      std::fprintf(out, "K\t%llu\t%llu\t%u\t%d,%d,%d\t%d\t%s\t%u\n", (unsigned long long)k->start,
                   (unsigned long long)k->end, k->streamId, k->gridX, k->gridY, k->gridZ, k->blockX, k->name,
                   k->correlationId);
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(rec);
      std::fprintf(out, "M\t%llu\t%llu\t%u\t%u\t%llu\n", (unsigned long long)m->start,
                   (unsigned long long)m->end, m->streamId, unsigned(m->copyKind),
                   (unsigned long long)m->bytes);
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(rec);
      std::fprintf(out, "S\t%llu\t%llu\t%u\t%llu\n", (unsigned long long)m->start, (unsigned long long)m->end,
                   m->streamId, (unsigned long long)m->bytes);
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_RUNTIME || rec->kind == CUPTI_ACTIVITY_KIND_DRIVER) {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(rec);
      std::fprintf(out, "A\t%llu\t%llu\t%u\t%u\t%c\n", (unsigned long long)a->start, (unsigned long long)a->end,
                   a->correlationId, unsigned(a->cbid), rec->kind == CUPTI_ACTIVITY_KIND_RUNTIME ? 'R' : 'D');
    }
  }
  std::free(buf);
}

void flush_at_exit() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(mu);
  if (out) std::fclose(out);
  out = nullptr;
}

}  // namespace

// Called by the CUDA driver when it loads this library (CUDA_INJECTION64_PATH).
extern "C" int InitializeInjection() {
  const char* path = std::getenv("KERNEL_TRACE_OUT");
  out = std::fopen(path ? path : "kernel_trace.tsv", "w");
  if (!out) return 0;
  cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  const char* api = std::getenv("KERNEL_TRACE_API");
  if (api && api[0] == '1') {
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_DRIVER);
  }
  std::atexit(flush_at_exit);
  return 1;
}
