// Post-processing of captured CUDA graphs (built only with TUNE_CUDA).
#pragma once

#include <cuda_runtime.h>

#include <vector>

namespace tune {

// Replaces each memset node of the graph that writes at most kGraphMemsetKernelBytes with a kernel node writing the
// same bytes, on the same edges. cuBLASLt zeroes a few bytes before many of its kernels (185 times in a qwen3-4b
// step); replayed as memset nodes between kernel nodes, each left the device idle about 11 us. Returns how many
// it replaced; a node whose edges carry data other than the default stays.
constexpr size_t kGraphMemsetKernelBytes = size_t(1) << 16;
int graph_memsets_to_kernels(cudaGraph_t graph);

// The graph's nodes.
std::vector<cudaGraphNode_t> graph_nodes(cudaGraph_t graph);

}  // namespace tune
