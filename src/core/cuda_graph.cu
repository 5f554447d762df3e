// graph_memsets_to_kernels: a memset node (dst, pitch, value of 1, 2 or 4 bytes, width x height elements) becomes
// a kernel node running memset_kernel with the same parameters, added on the node's dependencies and made a
// dependency of its dependents before the memset node goes.
#include "core/cuda_graph.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/cuda_check.h"

namespace tune {

namespace {

__global__ void memset_kernel(char* dst, size_t pitch, unsigned value, unsigned esize, size_t width, size_t height) {
  const size_t n = width * height;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    char* p = dst + (i / width) * pitch + (i % width) * esize;
    if (esize == 4)
      *reinterpret_cast<uint32_t*>(p) = value;
    else if (esize == 2)
      *reinterpret_cast<uint16_t*>(p) = uint16_t(value);
    else
      *p = char(value);
  }
}

}  // namespace

std::vector<cudaGraphNode_t> graph_nodes(cudaGraph_t graph) {
  size_t n = 0;
  CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  return nodes;
}

int graph_memsets_to_kernels(cudaGraph_t graph) {
  int replaced = 0;
  for (cudaGraphNode_t node : graph_nodes(graph)) {
    cudaGraphNodeType type;
    CUDA_CHECK(cudaGraphNodeGetType(node, &type));
    if (type != cudaGraphNodeTypeMemset) continue;
    cudaMemsetParams mp{};
    CUDA_CHECK(cudaGraphMemsetNodeGetParams(node, &mp));
    const size_t elems = mp.width * mp.height;
    if (elems * mp.elementSize > kGraphMemsetKernelBytes) continue;
    // Edges with data (a port or a type other than the default) make these queries fail: such a node stays.
    size_t nd = 0, nt = 0;
    if (cudaGraphNodeGetDependencies(node, nullptr, nullptr, &nd) != cudaSuccess ||
        cudaGraphNodeGetDependentNodes(node, nullptr, nullptr, &nt) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    std::vector<cudaGraphNode_t> deps(nd), outs(nt);
    if ((nd > 0 && cudaGraphNodeGetDependencies(node, deps.data(), nullptr, &nd) != cudaSuccess) ||
        (nt > 0 && cudaGraphNodeGetDependentNodes(node, outs.data(), nullptr, &nt) != cudaSuccess)) {
      cudaGetLastError();
      continue;
    }
    char* dst = static_cast<char*>(mp.dst);
    size_t pitch = mp.height > 1 ? mp.pitch : mp.width * mp.elementSize;
    unsigned value = mp.value, esize = mp.elementSize;
    size_t width = mp.width, height = mp.height;
    void* args[] = {&dst, &pitch, &value, &esize, &width, &height};
    cudaKernelNodeParams kp{};
    kp.func = reinterpret_cast<void*>(memset_kernel);
    kp.blockDim = dim3(256);
    kp.gridDim = dim3(unsigned(std::clamp<size_t>((elems + 255) / 256, 1, 256)));
    kp.kernelParams = args;
    cudaGraphNode_t k = nullptr;
    CUDA_CHECK(cudaGraphAddKernelNode(&k, graph, deps.data(), nd, &kp));
    for (cudaGraphNode_t out : outs) CUDA_CHECK(cudaGraphAddDependencies(graph, &k, &out, nullptr, 1));
    CUDA_CHECK(cudaGraphDestroyNode(node));
    ++replaced;
  }
  return replaced;
}

}  // namespace tune
