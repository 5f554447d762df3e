// Where a tensor's memory lives.
#pragma once

namespace tune {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// True when tune was built with CUDA and a device is present.
bool cuda_available();

}  // namespace tune
