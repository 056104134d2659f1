// next_hop() and refresh(): the kernel's route to a peer and the neighbour entry of its next hop, and asking the
// kernel to resolve or re-confirm that entry.
//
// NTF_USE, measured on this kernel (6.18) with `ip neigh {add,change,replace} ... use` and this library:
//  - RTM_NEWNEIGH with ndm_flags = NTF_USE runs neigh_event_send() on the entry, exactly what the kernel does when
//    it has a packet for it: an absent/NONE/FAILED entry goes to INCOMPLETE and the kernel sends ARP requests / NS
//    itself (a host that answers is REACHABLE within the call's round trip); STALE goes to DELAY, then PROBE
//    (unicast); INCOMPLETE/REACHABLE/DELAY/PROBE/PERMANENT/NOARP entries are left as they are.
//  - An ABSENT entry needs NLM_F_CREATE, else ENOENT (`ip neigh change ... use`: "No such file or directory").
//  - NLM_F_EXCL on a PRESENT entry is EEXIST (`ip neigh add ... use`), so it must not be set.
//  - NLM_F_REPLACE makes no difference (NTF_USE skips the update that would use it).
//  - ndm_state is ignored by the NTF_USE path: with none/incomplete/reachable/stale/permanent/noarp alike, an
//    absent entry was created and resolved to REACHABLE, never made permanent. But neigh_add() still reads
//    NUD_PERMANENT when it creates the entry, to exempt it from garbage collection: hence NUD_NONE here.
//  - No lladdr is needed; the request carries only NDA_DST.
// So: NLM_F_CREATE, ndm_state NUD_NONE, ndm_flags NTF_USE, NDA_DST.
#include <errno.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include <cstring>

#include "hostif/sock.h"

namespace mg::hostif {

namespace {

using NextHop = Netlink::NextHop;
using NhStatus = Netlink::NhStatus;

template <int kMax>
int keep_attr(const nlattr* a, void* data) {
  const int t = mnl_attr_get_type(a);
  if (t >= 0 && t <= kMax) static_cast<const nlattr**>(data)[t] = a;
  return MNL_CB_OK;
}

bool read_ip(const void* p, size_t len, int family, net::IpAddr* out) {
  if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16) || (family != AF_INET && family != AF_INET6))
    return false;
  *out = {};
  out->version = family == AF_INET ? 4 : 6;
  std::memcpy(out->bytes, p, len);
  return true;
}

// fe80::/10: a link-local dst means nothing without its interface.
bool link_local6(const net::IpAddr& a) { return a.version == 6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80; }

struct Route {
  bool seen = false;
  uint8_t type = 0;
  int oif = 0;
  bool has_gw = false;
  net::IpAddr gw;
};

void read_route(const nlmsghdr* n, Route* r) {
  if (n->nlmsg_type != RTM_NEWROUTE || n->nlmsg_len < mnl_nlmsg_size(sizeof(rtmsg))) return;
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(n));
  const nlattr* tb[RTA_MAX + 1] = {};
  mnl_attr_parse(n, sizeof *rtm, keep_attr<RTA_MAX>, tb);
  r->seen = true;
  r->type = rtm->rtm_type;
  if (tb[RTA_OIF] != nullptr && mnl_attr_get_payload_len(tb[RTA_OIF]) == 4) r->oif = int(mnl_attr_get_u32(tb[RTA_OIF]));
  if (tb[RTA_GATEWAY] != nullptr) {
    r->has_gw = read_ip(mnl_attr_get_payload(tb[RTA_GATEWAY]), mnl_attr_get_payload_len(tb[RTA_GATEWAY]),
                        rtm->rtm_family, &r->gw);
  } else if (tb[RTA_VIA] != nullptr && mnl_attr_get_payload_len(tb[RTA_VIA]) >= sizeof(rtvia)) {
    // RFC 5549: an IPv4 route through an IPv6 gateway, whose neighbour entry is in the ND table.
    const auto* v = static_cast<const rtvia*>(mnl_attr_get_payload(tb[RTA_VIA]));
    r->has_gw = read_ip(v->rtvia_addr, mnl_attr_get_payload_len(tb[RTA_VIA]) - sizeof(rtvia), v->rtvia_family, &r->gw);
  }
}

struct Neigh {
  bool seen = false;
  uint16_t state = 0;
  bool has_mac = false;
  uint8_t mac[6] = {};
};

void read_neigh(const nlmsghdr* n, Neigh* e) {
  if (n->nlmsg_type != RTM_NEWNEIGH || n->nlmsg_len < mnl_nlmsg_size(sizeof(ndmsg))) return;
  const auto* ndm = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(n));
  const nlattr* tb[NDA_MAX + 1] = {};
  mnl_attr_parse(n, sizeof *ndm, keep_attr<NDA_MAX>, tb);
  e->seen = true;
  e->state = ndm->ndm_state;
  if (tb[NDA_LLADDR] != nullptr && mnl_attr_get_payload_len(tb[NDA_LLADDR]) == 6) {
    std::memcpy(e->mac, mnl_attr_get_payload(tb[NDA_LLADDR]), 6);
    static constexpr uint8_t kZero[6] = {};
    e->has_mac = std::memcmp(e->mac, kZero, 6) != 0;
  }
}

constexpr uint16_t kUsable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

// The neighbour-table request both next_hop() and refresh() send: see the NTF_USE finding at the top.
Reply use_neigh(Netlink::Sock* s, int ifindex, const net::IpAddr& via, Clock::time_point deadline) {
  nlmsghdr* n = s->start(RTM_NEWNEIGH, NLM_F_CREATE);
  auto* ndm = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ndmsg)));
  ndm->ndm_family = uint8_t(family_of(via));
  ndm->ndm_ifindex = ifindex;
  ndm->ndm_state = NUD_NONE;
  ndm->ndm_flags = NTF_USE;
  mnl_attr_put(n, NDA_DST, addr_len(via), via.bytes);
  return s->transact(n, deadline, {});
}

// RTM_GETROUTE for dst (from src when set; out of oif when non-zero).
Reply get_route(Netlink::Sock* s, const net::IpAddr& src, const net::IpAddr& dst, int oif,
                Clock::time_point deadline, Route* rt) {
  nlmsghdr* n = s->start(RTM_GETROUTE, 0);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(rtmsg)));
  rtm->rtm_family = uint8_t(family_of(dst));
  rtm->rtm_dst_len = uint8_t(addr_len(dst) * 8);
  mnl_attr_put(n, RTA_DST, addr_len(dst), dst.bytes);
  if (src.version != 0) {
    rtm->rtm_src_len = uint8_t(addr_len(src) * 8);
    mnl_attr_put(n, RTA_SRC, addr_len(src), src.bytes);
  }
  if (oif != 0) mnl_attr_put_u32(n, RTA_OIF, uint32_t(oif));
  return s->transact(n, deadline, [rt](const nlmsghdr* m) { read_route(m, rt); });
}

NextHop fail(NhStatus st, std::string why) {
  NextHop h;
  h.status = st;
  h.err = std::move(why);
  return h;
}

}  // namespace

NextHop Netlink::next_hop(int ifindex, const net::IpAddr& src, const net::IpAddr& dst) {
  const std::string what = "next hop to " + ip_text(dst) + " from " + ip_text(src) + " on ifindex " +
                           std::to_string(ifindex);
  if (dst.version != 4 && dst.version != 6) return fail(NhStatus::kError, what + ": dst is not an address");
  if (src.version != 0 && src.version != dst.version)
    return fail(NhStatus::kError, what + ": src and dst are of different IP versions");
  if (ifindex <= 0) return fail(NhStatus::kError, what + ": no such interface index");
  const auto deadline = Clock::now() + std::chrono::milliseconds(kCallTimeoutMs);

  Route rt;  // RTA_OIF only for a link-local dst: see hostif.h
  Reply r = get_route(s_.get(), src, dst, link_local6(dst) ? ifindex : 0, deadline, &rt);
  if (r.io.empty() && r.error == ENETUNREACH && src.version == 4) {
    // IPv4 also says ENETUNREACH when src is not an address of this host (a twin not configured yet, say): that is
    // the caller's problem, not the network's. The route to src itself tells: local or not.
    Route self;
    const Reply sr = get_route(s_.get(), {}, src, 0, deadline, &self);
    if (sr.io.empty() && !(sr.error == 0 && self.seen && self.type == RTN_LOCAL))
      return fail(NhStatus::kError, what + ": src " + ip_text(src) + " is not an address of this host");
  }
  if (r.io.empty() && (r.error == ENETUNREACH || r.error == EHOSTUNREACH || r.error == EACCES))
    return fail(NhStatus::kNoRoute, describe(what, r));
  if (!r.ok()) return fail(NhStatus::kError, describe(what, r));
  if (!rt.seen) return fail(NhStatus::kError, what + ": the kernel answered without a route");
  switch (rt.type) {
    case RTN_UNICAST: break;
    case RTN_LOCAL: {  // dst is this host: delivered through lo, never out of ifindex
      NextHop h = fail(NhStatus::kOtherInterface, {});
      h.via = dst;
      return h;
    }
    case RTN_UNREACHABLE: case RTN_BLACKHOLE: case RTN_PROHIBIT: case RTN_THROW:
      return fail(NhStatus::kNoRoute, what + ": an unreachable, blackhole or prohibit route (type " +
                                          std::to_string(rt.type) + ")");
    default:
      return fail(NhStatus::kError, what + ": not a unicast route (type " + std::to_string(rt.type) + ")");
  }
  NextHop h;
  h.via = rt.has_gw ? rt.gw : dst;
  if (rt.oif != ifindex) {
    h.status = NhStatus::kOtherInterface;
    return h;
  }

  nlmsghdr* n = s_->start(RTM_GETNEIGH, 0);
  auto* ndm = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(ndmsg)));
  ndm->ndm_family = uint8_t(family_of(h.via));
  ndm->ndm_ifindex = ifindex;
  mnl_attr_put(n, NDA_DST, addr_len(h.via), h.via.bytes);
  Neigh e;
  r = s_->transact(n, deadline, [&e](const nlmsghdr* m) { read_neigh(m, &e); });
  if (!r.io.empty() || (r.error != 0 && r.error != ENOENT))
    return fail(NhStatus::kError, describe(what + ": neighbour " + ip_text(h.via), r));
  if (r.error == 0 && e.seen && (e.state & kUsable) != 0 && e.has_mac) {
    h.status = NhStatus::kKnown;
    std::memcpy(h.mac, e.mac, 6);
    return h;
  }
  // Missing, NONE, INCOMPLETE or FAILED: the kernel resolves it on its own from here (ARP / NS).
  r = use_neigh(s_.get(), ifindex, h.via, deadline);
  if (!r.ok()) return fail(NhStatus::kError, describe(what + ": resolving " + ip_text(h.via), r));
  h.status = NhStatus::kResolving;
  return h;
}

bool Netlink::refresh(int ifindex, const net::IpAddr& via, std::string* err) {
  const std::string what = "refresh neighbour " + ip_text(via) + " on ifindex " + std::to_string(ifindex);
  std::string why;
  if (via.version != 4 && via.version != 6) why = what + ": not an address";
  else if (ifindex <= 0) why = what + ": no such interface index";
  if (why.empty()) {
    const Reply r = use_neigh(s_.get(), ifindex, via, Clock::now() + std::chrono::milliseconds(kCallTimeoutMs));
    if (r.ok()) return true;
    why = describe(what, r);
  }
  if (err != nullptr) *err = std::move(why);
  return false;
}

}  // namespace mg::hostif
