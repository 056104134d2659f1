// Private to lib/hostif: the rtnetlink socket and its one request/reply loop.
#pragma once

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "hostif/hostif.h"

namespace mg::hostif {

using Clock = std::chrono::steady_clock;

// What the kernel answered to one request.
struct Reply {
  int error = 0;    // the kernel's errno (positive); 0 = done
  std::string ext;  // its extended-ack message, when it gave one
  std::string io;   // non-empty: no answer at all (timeout, socket error), and why
  bool ok() const noexcept { return io.empty() && error == 0; }
};

struct Netlink::Sock {
  mnl_socket* nl = nullptr;
  uint32_t portid = 0;
  uint32_t seq = 0;
  alignas(nlmsghdr) char req[1024];
  // Large enough for any one datagram of an address dump (the kernel fills at most 32 KiB per recv for us).
  alignas(nlmsghdr) char rx[32768];

  ~Sock();
  // Clears the request buffer and puts a header with the next sequence number; NLM_F_REQUEST | NLM_F_ACK are added
  // so that every request, a GET too, ends with an ACK or an error we can wait for.
  nlmsghdr* start(uint16_t type, uint16_t flags) noexcept;
  // Sends `n` and reads until the ACK, the error or NLMSG_DONE of its sequence number, or the deadline. Each other
  // message of that sequence number goes to on_msg (may be empty); replies to earlier requests that timed out are
  // skipped.
  Reply transact(nlmsghdr* n, Clock::time_point deadline, const std::function<void(const nlmsghdr*)>& on_msg);
};

// "op: reason[: extended-ack message]".
std::string describe(const std::string& op, const Reply& r);
// Text form of an address for error messages.
std::string ip_text(const net::IpAddr& a);
inline int family_of(const net::IpAddr& a) noexcept { return a.version == 4 ? AF_INET : AF_INET6; }
inline uint32_t addr_len(const net::IpAddr& a) noexcept { return a.version == 4 ? 4 : 16; }

}  // namespace mg::hostif
