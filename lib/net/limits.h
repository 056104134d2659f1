// The product's limits, declared once. The config loader refuses a gateway or pmd_config beyond them with a
// clear error (rule `limits`); every table sized by them (flow selection and pin tables, the control block's
// mirror, per-worker arrays) can then rely on them without truncating or throwing at run time.
// Header only, no dependencies: every library may include it.
#pragma once

#include <cstdint>

namespace mg {

inline constexpr uint32_t kMaxTunnels = 256;    // per gateway
inline constexpr uint32_t kMaxInstances = 32;   // per gateway
inline constexpr uint32_t kMaxWorkers = 64;     // worker lcores per gateway process

}  // namespace mg
