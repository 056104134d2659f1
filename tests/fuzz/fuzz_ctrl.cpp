// libFuzzer target for the control ring's command rules and transport.
//
// Input layout: bytes 0..3 and 4..7 are the gateway's tunnel and instance counts (Limits, little endian), the next
// sizeof(Command) bytes the command as a client could put in the ring (short inputs are zero-padded).
//  - validate() must not crash and must say kOk exactly for the commands that satisfy the rules, restated here
//    independently of lib/ctrl/validate.cpp; an error must come with a message. Any violation traps.
//  - The raw bytes go through a real control block (submit, wait_command, poll) and must come back byte-identical.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "ctrl/ctrl.h"

namespace c = mg::ctrl;

namespace {

// The rules of ctrl.h, written out once more from the header's description.
bool satisfies(const c::Command& m, const c::Limits& l) {
  if (m.version != c::kLayoutVersion || m.length != sizeof(c::Command)) return false;
  if (m.op >= uint16_t(c::Op::kCount) || m.flags != 0) return false;
  for (uint8_t b : m.reserved)
    if (b) return false;
  const auto op = c::Op(m.op);
  const bool state = op == c::Op::kTunnelState || op == c::Op::kInstanceState;
  switch (op) {
    case c::Op::kTunnelState:
    case c::Op::kTunnelWeight:
      if (m.target >= l.tunnels) return false;
      break;
    case c::Op::kInstanceState:
    case c::Op::kInstanceReset:
      if (m.target >= l.instances) return false;
      break;
    default: break;
  }
  if (state && m.value > uint32_t(c::State::kDown)) return false;
  if (m.deadline_ms != 0) {
    if (!state || m.value != uint32_t(c::State::kDrain)) return false;
    if (m.deadline_ms > c::kMaxDeadlineMs) return false;
  }
  if (op == c::Op::kTunnelWeight && m.value > c::kMaxWeight) return false;
  if (op == c::Op::kMode && m.value > uint32_t(c::Mode::kActiveStandby)) return false;
  return true;
}

c::Block& block() {
  // One block per fuzzing process (a unique name, so parallel jobs and other tests do not meet); unlinked at exit.
  static std::unique_ptr<c::Block> b = [] {
    std::string err;
    auto x = c::Block::create("fuzzctrl-" + std::to_string(getpid()), &err);
    if (!x) std::abort();
    return x;
  }();
  return *b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  c::Limits l;
  uint8_t head[8] = {};
  std::memcpy(head, data, size < 8 ? size : 8);
  std::memcpy(&l.tunnels, head, 4);
  std::memcpy(&l.instances, head + 4, 4);
  c::Command cmd;
  std::memset(&cmd, 0, sizeof cmd);
  if (size > 8) std::memcpy(&cmd, data + 8, size - 8 < sizeof cmd ? size - 8 : sizeof cmd);

  std::string why = "stale";
  const c::Status st = c::validate(cmd, l, &why);
  const bool ok = st == c::Status::kOk;
  if (ok != satisfies(cmd, l)) __builtin_trap();
  if (ok && !why.empty()) __builtin_trap();
  if (!ok && (why.empty() || why.size() > 200)) __builtin_trap();
  if (!ok && st != c::Status::kBadVersion && st != c::Status::kBadLength && st != c::Status::kBadOp &&
      st != c::Status::kBadTarget && st != c::Status::kBadValue)
    __builtin_trap();
  if (c::validate(cmd, l, nullptr) != st) __builtin_trap();

  // Transport: whatever the bytes, the ring carries them unchanged.
  c::Block& b = block();
  if (b.wait_command(0)) __builtin_trap();  // every earlier input was polled
  if (b.submit(cmd) != c::SubmitError::kOk) __builtin_trap();
  if (!b.wait_command(1000000)) __builtin_trap();
  c::Command out;
  std::memset(&out, 0xa5, sizeof out);
  if (!b.poll(&out)) __builtin_trap();
  if (std::memcmp(&out, &cmd, sizeof cmd) != 0) __builtin_trap();
  if (b.poll(&out)) __builtin_trap();
  return 0;
}
