// Tensor (owning, shared storage) and TensorView (non-owning). Shapes are in PyTorch order: shape[0] is the
// outermost dimension and the last dimension is contiguous (see docs/shapes.md); strides are in elements.
// Quantized block types are stored as rows of blocks; only contiguous tensors of them exist.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace tune {

constexpr int kMaxDims = 6;  // 5-D appears in vision towers (Conv3d patch embedding)

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  static Shape of(const std::vector<int64_t>& d);
  int64_t operator[](int i) const { return dims[i < 0 ? i + ndim : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::vector<int64_t> to_vector() const { return std::vector<int64_t>(dims.begin(), dims.begin() + ndim); }
  std::string str() const;  // "[3, 4]"
};

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  std::array<int64_t, kMaxDims> strides{};
  Device device = Device::CPU;

  int64_t numel() const { return shape.numel(); }
  int64_t size(int i) const { return shape[i]; }
  bool is_contiguous() const;
  size_t nbytes() const { return dtype_bytes(dtype, numel()); }
  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
  float* f32() const;  // checked: contiguous f32 on CPU
};

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(DType dtype, Shape shape, Device device = Device::CPU);
  static Tensor zeros(DType dtype, Shape shape, Device device = Device::CPU);
  // Wraps existing memory; `owner` keeps it alive (e.g. an mmapped file).
  static Tensor wrap(void* data, DType dtype, Shape shape, std::shared_ptr<void> owner,
                     Device device = Device::CPU);

  bool defined() const { return view_.data != nullptr || view_.shape.ndim > 0; }
  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }
  DType dtype() const { return view_.dtype; }
  const Shape& shape() const { return view_.shape; }
  int64_t size(int i) const { return view_.shape[i]; }
  int ndim() const { return view_.shape.ndim; }
  int64_t numel() const { return view_.numel(); }
  size_t nbytes() const { return view_.nbytes(); }
  Device device() const { return view_.device; }
  void* data() const { return view_.data; }
  template <class T>
  T* ptr() const {
    return static_cast<T*>(view_.data);
  }
  float* f32() const { return view_.f32(); }

  // Same storage, new shape (contiguous only, same element count).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of dimension 0, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // A contiguous copy converted to `dtype` on `device` (f32/f16/bf16 and integer copies).
  Tensor to(DType dtype, Device device = Device::CPU) const;
  Tensor clone() const { return to(dtype(), device()); }

 private:
  std::shared_ptr<void> owner_;
  TensorView view_;
};

// Contiguous row-major strides for a shape.
std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape);

}  // namespace tune
