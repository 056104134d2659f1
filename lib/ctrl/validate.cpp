// mg::ctrl::validate — every rule of a command, in one place (see ctrl.h). The order of the checks and the texts
// are the data plane's contract with its operators (tests grep them): change them only together with those.
#include <string>

#include "ctrl/ctrl.h"

namespace mg::ctrl {

namespace {

Status fail(Status s, std::string* why, std::string msg) {
  if (why) *why = std::move(msg);
  return s;
}

// "(0..n-1)", or "(none)" when there is nothing to address.
std::string range(uint32_t n) { return n ? "(0.." + std::to_string(n - 1) + ")" : "(none)"; }

}  // namespace

Status validate(const Command& c, const Limits& l, std::string* why) {
  using std::to_string;
  bool reserved_zero = c.flags == 0;
  for (uint8_t b : c.reserved) reserved_zero &= b == 0;
  const auto op = Op(c.op);
  const bool tunnel_op = op == Op::kTunnelState || op == Op::kTunnelWeight;
  const bool instance_op = op == Op::kInstanceState || op == Op::kInstanceReset;
  const bool state_op = op == Op::kTunnelState || op == Op::kInstanceState;

  if (c.version != kLayoutVersion)
    return fail(Status::kBadVersion, why,
                "layout version " + to_string(c.version) + " (this gateway speaks " + to_string(kLayoutVersion) + ")");
  if (c.length != sizeof(Command))
    return fail(Status::kBadLength, why,
                "length " + to_string(c.length) + " (expected " + to_string(sizeof(Command)) + ")");
  if (c.op >= uint16_t(Op::kCount)) return fail(Status::kBadOp, why, "unknown opcode " + to_string(c.op));
  if (!reserved_zero) return fail(Status::kBadValue, why, "flags and reserved bytes must be zero");
  if (tunnel_op && c.target >= l.tunnels)
    return fail(Status::kBadTarget, why, "tunnel " + to_string(c.target) + " out of range " + range(l.tunnels));
  if (instance_op && c.target >= l.instances)
    return fail(Status::kBadTarget, why,
                "instance " + to_string(c.target) + " out of range " + range(l.instances));
  if (state_op && c.value > 2)
    return fail(Status::kBadValue, why, "state " + to_string(c.value) + " (0 up, 1 drain, 2 down)");
  if (c.deadline_ms != 0 && !(state_op && c.value == uint32_t(State::kDrain)))
    return fail(Status::kBadValue, why, "a deadline goes with drain only");
  if (c.deadline_ms > kMaxDeadlineMs)
    return fail(Status::kBadValue, why, "deadline " + to_string(c.deadline_ms) + " ms is above 24 h");
  if (op == Op::kTunnelWeight && c.value > kMaxWeight)
    return fail(Status::kBadValue, why,
                "weight " + to_string(c.value) + " is above " + to_string(kMaxWeight));
  if (op == Op::kMode && c.value > 1)
    return fail(Status::kBadValue, why, "mode " + to_string(c.value) + " (0 active-active, 1 active-standby)");
  if (why) why->clear();
  return Status::kOk;
}

}  // namespace mg::ctrl
