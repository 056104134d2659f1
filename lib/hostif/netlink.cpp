// Opening the socket, and the twin's own configuration: its addresses and its link.
#include <errno.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <sys/time.h>

#include <cstring>

#include "hostif/sock.h"

namespace mg::hostif {

Netlink::Netlink(std::unique_ptr<Sock> s) : s_(std::move(s)) {}
Netlink::~Netlink() = default;

std::unique_ptr<Netlink> Netlink::open(std::string* err) {
  auto s = std::make_unique<Sock>();
  s->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (s->nl == nullptr) {
    *err = std::string("netlink socket: ") + std::strerror(errno);
    return nullptr;
  }
  if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    *err = std::string("netlink bind: ") + std::strerror(errno);
    return nullptr;
  }
  s->portid = mnl_socket_get_portid(s->nl);
  int one = 1;
  // The kernel's own words for a refusal; the echoed request is of no use to us. Both are best effort (old
  // kernels): errors then read as strerror alone.
  mnl_socket_setsockopt(s->nl, NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &one, sizeof one);
  // poll() bounds every wait already; this bounds a send the kernel would block.
  const timeval tv{0, kCallTimeoutMs * 1000};
  setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  s->seq = uint32_t(Clock::now().time_since_epoch().count());
  return std::unique_ptr<Netlink>(new Netlink(std::move(s)));
}

namespace {

bool check_addr(const char* what, const net::IpAddr& a, std::string* err) {
  if (a.version == 4 || a.version == 6) return true;
  *err = std::string(what) + ": not an IPv4 or IPv6 address";
  return false;
}

// One address of an RTM_GETADDR dump.
struct Found {
  const net::IpAddr* want;
  int ifindex;
  bool present = false;
  uint8_t prefix_len = 0;
  uint32_t flags = 0;
};

int addr_attr(const nlattr* a, void* data) {
  auto* tb = static_cast<const nlattr**>(data);
  const int t = mnl_attr_get_type(a);
  if (t == IFA_ADDRESS || t == IFA_LOCAL || t == IFA_FLAGS) tb[t] = a;
  return MNL_CB_OK;
}

void match_addr(const nlmsghdr* n, Found* f) {
  if (n->nlmsg_type != RTM_NEWADDR || n->nlmsg_len < mnl_nlmsg_size(sizeof(ifaddrmsg))) return;
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(n));
  if (int(ifa->ifa_index) != f->ifindex) return;
  const nlattr* tb[IFA_MAX + 1] = {};
  mnl_attr_parse(n, sizeof *ifa, addr_attr, tb);
  const nlattr* a = tb[IFA_LOCAL] != nullptr ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
  const uint32_t len = addr_len(*f->want);
  if (a == nullptr || mnl_attr_get_payload_len(a) != len ||
      std::memcmp(mnl_attr_get_payload(a), f->want->bytes, len) != 0)
    return;
  f->present = true;
  f->prefix_len = ifa->ifa_prefixlen;
  f->flags = tb[IFA_FLAGS] != nullptr && mnl_attr_get_payload_len(tb[IFA_FLAGS]) == 4 ? mnl_attr_get_u32(tb[IFA_FLAGS])
                                                                                       : ifa->ifa_flags;
}

}  // namespace

bool Netlink::add_address(int ifindex, const net::IpAddr& addr, uint8_t prefix_len, std::string* err) {
  if (!check_addr("add_address", addr, err)) return false;
  const std::string what = "add address " + ip_text(addr) + "/" + std::to_string(prefix_len) + " to ifindex " +
                           std::to_string(ifindex);
  if (prefix_len > (addr.version == 4 ? 32 : 128) || ifindex <= 0) {
    *err = what + ": " + (ifindex <= 0 ? "no such interface index" : "prefix length out of range");
    return false;
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(kCallTimeoutMs);
  nlmsghdr* n = s_->start(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ifaddrmsg)));
  ifa->ifa_family = uint8_t(family_of(addr));
  ifa->ifa_prefixlen = prefix_len;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = uint32_t(ifindex);
  const uint32_t flags = addr.version == 6 ? IFA_F_NODAD : 0;
  ifa->ifa_flags = uint8_t(flags);
  mnl_attr_put(n, IFA_LOCAL, addr_len(addr), addr.bytes);
  mnl_attr_put(n, IFA_ADDRESS, addr_len(addr), addr.bytes);
  mnl_attr_put_u32(n, IFA_FLAGS, flags);
  Reply r = s_->transact(n, deadline, {});
  if (r.ok()) return true;
  if (!r.io.empty() || r.error != EEXIST) {
    *err = describe(what, r);
    return false;
  }
  // IPv4 says EEXIST only for the same address and prefix; IPv6 for the address alone, whatever its prefix or
  // state: look at the one that is there.
  Found f{&addr, ifindex};
  n = s_->start(RTM_GETADDR, NLM_F_DUMP);
  auto* q = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ifaddrmsg)));
  q->ifa_family = uint8_t(family_of(addr));
  r = s_->transact(n, deadline, [&f](const nlmsghdr* m) { match_addr(m, &f); });
  if (!r.ok()) {
    *err = describe(what + " (already there; reading it back)", r);
    return false;
  }
  if (!f.present) {
    *err = what + ": the kernel says it exists, but not on this interface";
    return false;
  }
  if (f.prefix_len != prefix_len) {
    *err = what + ": already there with prefix length " + std::to_string(f.prefix_len);
    return false;
  }
  if ((f.flags & IFA_F_DADFAILED) != 0) {
    *err = what + ": already there, but its duplicate address detection failed (another host has it)";
    return false;
  }
  return true;
}

bool Netlink::add_peer_address(int ifindex, const net::IpAddr& local, const net::IpAddr& peer, std::string* err) {
  if (!check_addr("add_peer_address", local, err) || !check_addr("add_peer_address", peer, err)) return false;
  const std::string what = "add address " + ip_text(local) + " peer " + ip_text(peer) + " to ifindex " +
                           std::to_string(ifindex);
  if (local.version != peer.version || ifindex <= 0) {
    *err = what + ": " + (ifindex <= 0 ? "no such interface index" : "the two are of different IP versions");
    return false;
  }
  nlmsghdr* n = s_->start(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ifaddrmsg)));
  ifa->ifa_family = uint8_t(family_of(local));
  ifa->ifa_prefixlen = uint8_t(local.version == 4 ? 32 : 128);  // the peer alone is on the other end
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = uint32_t(ifindex);
  const uint32_t flags = local.version == 6 ? IFA_F_NODAD : 0;  // a point-to-point link has no one to ask
  ifa->ifa_flags = uint8_t(flags);
  mnl_attr_put(n, IFA_LOCAL, addr_len(local), local.bytes);
  mnl_attr_put(n, IFA_ADDRESS, addr_len(peer), peer.bytes);
  mnl_attr_put_u32(n, IFA_FLAGS, flags);
  const Reply r = s_->transact(n, Clock::now() + std::chrono::milliseconds(kCallTimeoutMs), {});
  if (r.ok()) return true;
  *err = describe(what, r);
  return false;
}

bool Netlink::set_link(int ifindex, bool up, uint32_t mtu, std::string* err) {
  const std::string what = "set ifindex " + std::to_string(ifindex) + (up ? " up" : " down") +
                           (mtu != 0 ? " mtu " + std::to_string(mtu) : std::string());
  if (ifindex <= 0) {
    *err = what + ": no such interface index";
    return false;
  }
  nlmsghdr* n = s_->start(RTM_NEWLINK, 0);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  ifi->ifi_flags = up ? IFF_UP : 0;
  ifi->ifi_change = IFF_UP;
  if (mtu != 0) mnl_attr_put_u32(n, IFLA_MTU, mtu);
  const Reply r = s_->transact(n, Clock::now() + std::chrono::milliseconds(kCallTimeoutMs), {});
  if (r.ok()) return true;
  *err = describe(what, r);
  return false;
}

const char* status_name(Netlink::NhStatus s) noexcept {
  switch (s) {
    case Netlink::NhStatus::kKnown: return "known";
    case Netlink::NhStatus::kResolving: return "resolving";
    case Netlink::NhStatus::kNoRoute: return "no_route";
    case Netlink::NhStatus::kOtherInterface: return "other_interface";
    case Netlink::NhStatus::kError: return "error";
  }
  return "?";
}

}  // namespace mg::hostif
