// Tensor construction, views and dtype conversion on the host.
#include "core/tensor.h"

#include <cstring>
#include <sstream>

#include "core/allocator.h"

namespace tune {

Shape::Shape(std::initializer_list<int64_t> d) {
  TUNE_CHECK(d.size() <= kMaxDims) << "at most " << kMaxDims << " dimensions";
  for (int64_t x : d) dims[ndim++] = x;
}

Shape Shape::of(const std::vector<int64_t>& d) {
  TUNE_CHECK(d.size() <= kMaxDims) << "at most " << kMaxDims << " dimensions";
  Shape s;
  for (int64_t x : d) s.dims[s.ndim++] = x;
  return s;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << dims[i];
  os << "]";
  return os.str();
}

std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape) {
  std::array<int64_t, kMaxDims> s{};
  int64_t acc = 1;
  for (int i = shape.ndim - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape.dims[i];
  }
  return s;
}

bool TensorView::is_contiguous() const { return strides == contiguous_strides(shape); }

float* TensorView::f32() const {
  TUNE_CHECK(dtype == DType::F32 && device == Device::CPU && is_contiguous())
      << "expected a contiguous f32 CPU tensor, got " << dtype_name(dtype) << " on " << device_name(device);
  return static_cast<float*>(data);
}

Tensor Tensor::wrap(void* data, DType dtype, Shape shape, std::shared_ptr<void> owner, Device device) {
  Tensor t;
  t.owner_ = std::move(owner);
  t.view_.data = data;
  t.view_.dtype = dtype;
  t.view_.shape = shape;
  t.view_.strides = contiguous_strides(shape);
  t.view_.device = device;
  return t;
}

Tensor Tensor::empty(DType dtype, Shape shape, Device device) {
  std::shared_ptr<void> mem = alloc_bytes(dtype_bytes(dtype, shape.numel()), device);
  void* p = mem.get();
  return wrap(p, dtype, shape, std::move(mem), device);
}

Tensor Tensor::zeros(DType dtype, Shape shape, Device device) {
  Tensor t = empty(dtype, shape, device);
  if (device == Device::CPU) {
    std::memset(t.data(), 0, t.nbytes());
  } else {
    std::vector<char> z(t.nbytes(), 0);
    cuda_copy_bytes(t.data(), device, z.data(), Device::CPU, z.size());
  }
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  TUNE_CHECK(view_.is_contiguous()) << "reshape of a non-contiguous tensor";
  TUNE_CHECK(shape.numel() == numel()) << "reshape " << view_.shape.str() << " -> " << shape.str();
  Tensor t = *this;
  t.view_.shape = shape;
  t.view_.strides = contiguous_strides(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  TUNE_CHECK(view_.is_contiguous() && ndim() >= 1 && 0 <= begin && begin <= end && end <= size(0))
      << "slice_rows(" << begin << ", " << end << ") of " << view_.shape.str();
  Tensor t = *this;
  t.view_.shape.dims[0] = end - begin;
  const int64_t row = numel() / std::max<int64_t>(size(0), 1);
  t.view_.data = static_cast<char*>(view_.data) + dtype_bytes(dtype(), begin * row);
  return t;
}

namespace {
// Reads element i of a contiguous host buffer of a float or integer type as double.
double load_elem(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::U8:
    case DType::BOOL: return static_cast<const uint8_t*>(p)[i];
    default: break;
  }
  throw UnsupportedError(std::string("conversion from ") + dtype_name(t) + " is not supported here",
                         "dequantize block types with the quant/ functions");
}

void store_elem(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); return;
    case DType::F64: static_cast<double*>(p)[i] = v; return;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v)); return;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); return;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(v); return;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(v); return;
    case DType::U8:
    case DType::BOOL: static_cast<uint8_t*>(p)[i] = uint8_t(v); return;
    default: break;
  }
  throw UnsupportedError(std::string("conversion to ") + dtype_name(t) + " is not supported here",
                         "quantize with the quant/ functions");
}
}  // namespace

Tensor Tensor::to(DType dtype, Device device) const {
  TUNE_CHECK(view_.is_contiguous()) << "to() of a non-contiguous tensor";
  // Bring the source to the host if needed, convert on the host, then move to the target device.
  Tensor host = *this;
  if (this->device() != Device::CPU) {
    host = empty(this->dtype(), shape(), Device::CPU);
    cuda_copy_bytes(host.data(), Device::CPU, data(), this->device(), nbytes());
  }
  Tensor out;
  if (dtype == this->dtype()) {
    out = empty(dtype, shape(), Device::CPU);
    std::memcpy(out.data(), host.data(), nbytes());
  } else if (this->dtype() == DType::BF16 && dtype == DType::F32) {
    out = empty(dtype, shape(), Device::CPU);
    const uint16_t* s = host.ptr<uint16_t>();
    float* d = out.ptr<float>();
    for (int64_t i = 0, n = numel(); i < n; ++i) d[i] = bf16_to_f32(s[i]);
  } else {
    out = empty(dtype, shape(), Device::CPU);
    for (int64_t i = 0, n = numel(); i < n; ++i) store_elem(out.data(), dtype, i, load_elem(host.data(), this->dtype(), i));
  }
  if (device == Device::CPU) return out;
  Tensor dev = empty(dtype, shape(), device);
  cuda_copy_bytes(dev.data(), device, out.data(), Device::CPU, out.nbytes());
  return dev;
}

}  // namespace tune
