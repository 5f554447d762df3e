// graph_memsets_to_kernels: a captured stream of memsets (1-, 2- and 4-byte values, one 2-D) between kernels that
// read and overwrite the same bytes. After the rewrite no small memset node is left, the large one stays, and a
// replay leaves the buffer as the stream order says (each memset after the kernel before it, before the one after).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/device.h"

#ifdef TUNE_CUDA
#include "core/cuda_check.h"
#include "core/cuda_graph.h"
#include "ops/fill.h"
#endif

namespace tune {

#ifdef TUNE_CUDA

namespace {

int count_memset_nodes(cudaGraph_t g) {
  int m = 0;
  for (cudaGraphNode_t node : graph_nodes(g)) {
    cudaGraphNodeType t;
    CUDA_CHECK(cudaGraphNodeGetType(node, &t));
    m += t == cudaGraphNodeTypeMemset;
  }
  return m;
}

}  // namespace

TEST(CudaGraph, MemsetNodesBecomeKernels) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const size_t big = kGraphMemsetKernelBytes + 4096;
  char* buf = nullptr;
  CUDA_CHECK(cudaMalloc(&buf, big));
  const cudaStream_t s = cudaStreamPerThread;  // where fill_constant launches
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  // The whole buffer 0x11 (too large: stays a memset node), then a kernel writes floats 1.0 over the first 1 KB,
  // then small memsets over parts of it, then a kernel over the first 16 bytes, then one more memset.
  CUDA_CHECK(cudaMemsetAsync(buf, 0x11, big, s));
  cuda::fill_constant(buf, DType::F32, 256, 1.0f);
  CUDA_CHECK(cudaMemsetAsync(buf + 4, 0, 4, s));            // float 1 -> 0 (cuBLASLt's kind)
  CUDA_CHECK(cudaMemsetAsync(buf + 100, 0xAB, 7, s));       // bytes
  CUDA_CHECK(cudaMemset2DAsync(buf + 512, 64, 0x5C, 8, 3, s));  // 3 rows of 8 bytes, 64 apart
  cuda::fill_constant(buf, DType::F32, 2, 2.0f);            // floats 0, 1 -> 2
  CUDA_CHECK(cudaMemsetAsync(buf + 1020, 0x7E, 6, s));      // across the kernel's end: 4 bytes in, 2 past it
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(s, &g));
  EXPECT_EQ(count_memset_nodes(g), 5);
  EXPECT_EQ(graph_memsets_to_kernels(g), 4);
  EXPECT_EQ(count_memset_nodes(g), 1);
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
  // Expected bytes, by replaying the same order on the host.
  std::vector<char> want(big, 0x11);
  const float one = 1.0f, two = 2.0f;
  for (int i = 0; i < 256; ++i) std::memcpy(&want[size_t(i) * 4], &one, 4);
  std::memset(&want[4], 0, 4);
  std::memset(&want[100], 0xAB, 7);
  for (int r = 0; r < 3; ++r) std::memset(&want[512 + size_t(r) * 64], 0x5C, 8);
  std::memcpy(&want[0], &two, 4);
  std::memcpy(&want[4], &two, 4);
  std::memset(&want[1020], 0x7E, 6);
  for (int replay = 0; replay < 2; ++replay) {
    CUDA_CHECK(cudaMemsetAsync(buf, 0, big, s));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<char> got(big);
    CUDA_CHECK(cudaMemcpy(got.data(), buf, big, cudaMemcpyDeviceToHost));
    size_t bad = 0, first = big;
    for (size_t i = 0; i < big; ++i)
      if (got[i] != want[i]) ++bad, first = std::min(first, i);
    EXPECT_EQ(bad, 0u) << "replay " << replay << ", first wrong byte at " << first;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaFree(buf);
}

#else

TEST(CudaGraph, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
