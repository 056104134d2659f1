// The request/reply loop over the rtnetlink socket: one deadline per public call, enforced with poll() so that a
// kernel that never answers costs main at most kCallTimeoutMs.
#include <errno.h>
#include <poll.h>

#include <cstring>

#include "hostif/sock.h"

namespace mg::hostif {

Netlink::Sock::~Sock() {
  if (nl != nullptr) mnl_socket_close(nl);
}

nlmsghdr* Netlink::Sock::start(uint16_t type, uint16_t flags) noexcept {
  std::memset(req, 0, sizeof req);
  nlmsghdr* n = mnl_nlmsg_put_header(req);
  n->nlmsg_type = type;
  n->nlmsg_flags = uint16_t(NLM_F_REQUEST | NLM_F_ACK | flags);
  n->nlmsg_seq = ++seq;
  return n;
}

namespace {

struct AckText {
  std::string* out;
};

int ack_attr(const nlattr* a, void* data) {
  if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) >= 0)
    *static_cast<AckText*>(data)->out = mnl_attr_get_str(a);
  return MNL_CB_OK;
}

// The error/ACK message: its errno and, with NETLINK_EXT_ACK, the kernel's text (NETLINK_CAP_ACK keeps the request
// from being echoed back, so the TLVs usually follow nlmsgerr directly).
void read_ack(const nlmsghdr* n, Reply* r) {
  if (n->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) {
    r->io = "truncated netlink error message";
    return;
  }
  const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(n));
  r->error = -e->error;
  if ((n->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return;
  size_t off = sizeof(nlmsgerr);
  if ((n->nlmsg_flags & NLM_F_CAPPED) == 0) off += e->msg.nlmsg_len - sizeof(nlmsghdr);  // the echoed request
  if (mnl_nlmsg_size(off) > n->nlmsg_len) return;
  AckText t{&r->ext};
  mnl_attr_parse(n, unsigned(off), ack_attr, &t);
}

}  // namespace

Reply Netlink::Sock::transact(nlmsghdr* n, Clock::time_point deadline,
                              const std::function<void(const nlmsghdr*)>& on_msg) {
  Reply r;
  const uint32_t want = n->nlmsg_seq;
  if (mnl_socket_sendto(nl, n, n->nlmsg_len) < 0) {
    r.io = std::string("netlink send: ") + std::strerror(errno);
    return r;
  }
  const int fd = mnl_socket_get_fd(nl);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.io = "no answer from the kernel within " + std::to_string(kCallTimeoutMs) + " ms";
      return r;
    }
    pollfd p{fd, POLLIN, 0};
    const int pr = ::poll(&p, 1, int(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) {
      r.io = std::string("netlink poll: ") + std::strerror(errno);
      return r;
    }
    if (pr == 0) continue;  // the deadline check above ends it
    const ssize_t got = ::recv(fd, rx, sizeof rx, MSG_DONTWAIT);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) {
      // ENOBUFS would mean lost notifications; we join no group, so any error here is the socket's.
      r.io = std::string("netlink receive: ") + std::strerror(errno);
      return r;
    }
    int len = int(got);
    for (const auto* m = reinterpret_cast<const nlmsghdr*>(rx); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_seq != want || (m->nlmsg_pid != 0 && m->nlmsg_pid != portid)) continue;  // a late reply
      if (m->nlmsg_type == NLMSG_ERROR) {
        read_ack(m, &r);
        return r;
      }
      if (m->nlmsg_type == NLMSG_DONE) {  // the end of a dump; its payload, when there is one, is the dump's errno
        if (m->nlmsg_len >= mnl_nlmsg_size(sizeof(int)))
          r.error = -*static_cast<const int*>(mnl_nlmsg_get_payload(m));
        return r;
      }
      if (m->nlmsg_type == NLMSG_NOOP || m->nlmsg_type == NLMSG_OVERRUN) continue;
      if (on_msg) on_msg(m);
    }
  }
}

std::string describe(const std::string& op, const Reply& r) {
  if (!r.io.empty()) return op + ": " + r.io;
  std::string s = op + ": " + std::strerror(r.error);
  if (!r.ext.empty()) s += ": " + r.ext;
  return s;
}

std::string ip_text(const net::IpAddr& a) {
  if (a.version != 4 && a.version != 6) return "(no address)";
  char buf[64];
  return net::format_ip(a, buf, sizeof buf);
}

}  // namespace mg::hostif
