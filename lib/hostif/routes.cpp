// Routes of one kernel table: a dump (Netlink::dump_routes) and a watch on changes (RouteWatch), so that routes
// a routing daemon installs there (BIRD's `protocol kernel { kernel table N; }`) reach the data plane.
#include <errno.h>
#include <linux/rtnetlink.h>

#include <cstring>

#include "hostif/sock.h"

namespace mg::hostif {

namespace {

struct RouteAttrs {
  const nlattr* tb[RTA_MAX + 1] = {};
};

int route_attr(const nlattr* a, void* data) {
  auto* r = static_cast<RouteAttrs*>(data);
  const int t = mnl_attr_get_type(a);
  if (t >= 0 && t <= RTA_MAX) r->tb[t] = a;
  return MNL_CB_OK;
}

uint32_t table_of(const rtmsg* rt, const RouteAttrs& at) {
  return at.tb[RTA_TABLE] != nullptr && mnl_attr_get_payload_len(at.tb[RTA_TABLE]) == 4 ? mnl_attr_get_u32(at.tb[RTA_TABLE])
                                                                                          : rt->rtm_table;
}

// One RTM_NEWROUTE of a dump, when it is of `table`.
void take_route(const nlmsghdr* n, uint32_t table, std::vector<KernelRoute>* out) {
  if (n->nlmsg_type != RTM_NEWROUTE || n->nlmsg_len < mnl_nlmsg_size(sizeof(rtmsg))) return;
  const auto* rt = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(n));
  RouteAttrs at;
  mnl_attr_parse(n, sizeof *rt, route_attr, &at);
  if (table_of(rt, at) != table || (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6)) return;
  KernelRoute r;
  r.dst.version = rt->rtm_family == AF_INET ? 4 : 6;
  r.len = rt->rtm_dst_len;
  r.type = rt->rtm_type;
  r.protocol = rt->rtm_protocol;
  const uint32_t alen = r.dst.version == 4 ? 4 : 16;
  if (at.tb[RTA_DST] != nullptr && mnl_attr_get_payload_len(at.tb[RTA_DST]) == alen)
    std::memcpy(r.dst.bytes, mnl_attr_get_payload(at.tb[RTA_DST]), alen);
  r.nh_object = at.tb[RTA_NH_ID] != nullptr;
  if (at.tb[RTA_OIF] != nullptr && mnl_attr_get_payload_len(at.tb[RTA_OIF]) == 4)
    r.oifs.push_back(int(mnl_attr_get_u32(at.tb[RTA_OIF])));
  if (const nlattr* mp = at.tb[RTA_MULTIPATH]) {
    const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(mp));
    size_t left = mnl_attr_get_payload_len(mp);
    while (left >= sizeof(rtnexthop)) {
      rtnexthop nh;
      std::memcpy(&nh, p, sizeof nh);
      if (nh.rtnh_len < sizeof nh || nh.rtnh_len > left) break;
      r.oifs.push_back(nh.rtnh_ifindex);
      const size_t step = RTNH_ALIGN(nh.rtnh_len);
      if (step >= left) break;
      p += step;
      left -= step;
    }
  }
  out->push_back(std::move(r));
}

}  // namespace

bool Netlink::dump_routes(uint32_t table, int timeout_ms, std::vector<KernelRoute>* out, std::string* err) {
  out->clear();
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (const int family : {AF_INET, AF_INET6}) {
    nlmsghdr* n = s_->start(RTM_GETROUTE, NLM_F_DUMP);
    auto* rt = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(rtmsg)));
    rt->rtm_family = uint8_t(family);
    const Reply r = s_->transact(n, deadline, [&](const nlmsghdr* m) { take_route(m, table, out); });
    if (!r.ok() && !(family == AF_INET6 && r.error == EAFNOSUPPORT)) {
      *err = describe("dump the routes of table " + std::to_string(table), r);
      return false;
    }
  }
  return true;
}

bool Netlink::set_route(uint32_t table, const net::IpAddr& dst, uint8_t len, int oif, bool add, std::string* err) {
  const std::string what = std::string(add ? "add" : "delete") + " route " + ip_text(dst) + "/" +
                           std::to_string(len) + " in table " + std::to_string(table);
  if ((dst.version != 4 && dst.version != 6) || len > (dst.version == 4 ? 32 : 128) || (add && oif <= 0)) {
    *err = what + ": bad prefix or interface";
    return false;
  }
  nlmsghdr* n = s_->start(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  auto* rt = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(n, sizeof(rtmsg)));
  rt->rtm_family = uint8_t(family_of(dst));
  rt->rtm_dst_len = len;
  rt->rtm_table = table < 256 ? uint8_t(table) : RT_TABLE_UNSPEC;
  rt->rtm_protocol = kRouteProtocol;
  rt->rtm_scope = add ? RT_SCOPE_LINK : RT_SCOPE_NOWHERE;
  rt->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(n, RTA_TABLE, table);
  mnl_attr_put(n, RTA_DST, addr_len(dst), dst.bytes);
  if (add) mnl_attr_put_u32(n, RTA_OIF, uint32_t(oif));
  const Reply r = s_->transact(n, Clock::now() + std::chrono::milliseconds(kCallTimeoutMs), {});
  if (r.ok() || (!add && r.io.empty() && r.error == ESRCH)) return true;
  *err = describe(what, r);
  return false;
}

std::unique_ptr<RouteWatch> RouteWatch::open(uint32_t table, std::string* err) {
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (nl == nullptr) {
    *err = std::string("netlink socket: ") + std::strerror(errno);
    return nullptr;
  }
  if (mnl_socket_bind(nl, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE, MNL_SOCKET_AUTOPID) < 0) {
    *err = std::string("netlink bind to the route groups: ") + std::strerror(errno);
    mnl_socket_close(nl);
    return nullptr;
  }
  return std::unique_ptr<RouteWatch>(new RouteWatch(nl, table));
}

RouteWatch::~RouteWatch() {
  if (nl_) mnl_socket_close(nl_);
}

bool RouteWatch::changed() noexcept {
  alignas(nlmsghdr) char buf[16384];
  bool any = false;
  for (;;) {
    const ssize_t got = ::recv(mnl_socket_get_fd(nl_), buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0) {
      if (errno == ENOBUFS) {  // the kernel dropped notifications: something changed, nobody knows what
        any = true;
        continue;
      }
      break;  // EAGAIN: nothing more
    }
    int left = int(got);
    for (const nlmsghdr* n = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(n, left);
         n = mnl_nlmsg_next(n, &left)) {
      if ((n->nlmsg_type != RTM_NEWROUTE && n->nlmsg_type != RTM_DELROUTE) ||
          n->nlmsg_len < mnl_nlmsg_size(sizeof(rtmsg)))
        continue;
      const auto* rt = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(n));
      RouteAttrs at;
      mnl_attr_parse(n, sizeof *rt, route_attr, &at);
      if (table_of(rt, at) == table_) any = true;
    }
  }
  return any;
}

}  // namespace mg::hostif
