// Temporary (replaced by lib/ctrl's own validate.cpp on merge).
#include <fmt/core.h>

#include "ctrl/ctrl.h"

namespace mg::ctrl {

Status validate(const Command& c, const Limits& l, std::string* why) {
  Status st = Status::kOk;
    bool reserved_zero = c.flags == 0;
    for (uint8_t b : c.reserved) reserved_zero &= b == 0;
    const auto op = Op(c.op);
    if (c.version != kLayoutVersion) {
      st = Status::kBadVersion;
      *why = fmt::format("layout version {} (this gateway speaks {})", c.version, kLayoutVersion);
    } else if (c.length != sizeof(Command)) {
      st = Status::kBadLength;
      *why = fmt::format("length {} (expected {})", c.length, sizeof(Command));
    } else if (c.op >= uint16_t(Op::kCount)) {
      st = Status::kBadOp;
      *why = fmt::format("unknown opcode {}", c.op);
    } else if (!reserved_zero) {
      st = Status::kBadValue;
      *why = "flags and reserved bytes must be zero";
    } else if ((op == Op::kTunnelState || op == Op::kTunnelWeight) && c.target >= l.tunnels) {
      st = Status::kBadTarget;
      *why = fmt::format("tunnel {} out of range (0..{})", c.target, l.tunnels - 1);
    } else if ((op == Op::kInstanceState || op == Op::kInstanceReset) && c.target >= l.instances) {
      st = Status::kBadTarget;
      *why = fmt::format("instance {} out of range (0..{})", c.target, l.instances - 1);
    } else if ((op == Op::kTunnelState || op == Op::kInstanceState) && c.value > 2) {
      st = Status::kBadValue;
      *why = fmt::format("state {} (0 up, 1 drain, 2 down)", c.value);
    } else if (c.deadline_ms != 0 && !((op == Op::kTunnelState || op == Op::kInstanceState) &&
                                       c.value == uint32_t(State::kDrain))) {
      st = Status::kBadValue;
      *why = "a deadline goes with drain only";
    } else if (c.deadline_ms > kMaxDeadlineMs) {
      st = Status::kBadValue;
      *why = fmt::format("deadline {} ms is above 24 h", c.deadline_ms);
    } else if (op == Op::kTunnelWeight && c.value > kMaxWeight) {
      st = Status::kBadValue;
      *why = fmt::format("weight {} is above {}", c.value, kMaxWeight);
    } else if (op == Op::kMode && c.value > 1) {
      st = Status::kBadValue;
      *why = fmt::format("mode {} (0 active-active, 1 active-standby)", c.value);
  }
  return st;
}

}  // namespace mg::ctrl
