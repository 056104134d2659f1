// mg::hostif — the kernel side of the exception path: configures an outside port's kernel twin (a net_tap
// interface carrying the port's MAC and the instance's IP) and asks the kernel how it would reach a peer, over one
// rtnetlink socket (libmnl); and makes each tunnel's own kernel interface (Tun). No DPDK.
//
// Main thread only (not thread-safe). Every public call is bounded: its requests share one deadline of
// kCallTimeoutMs, after which it returns an error; nothing blocks main longer. Errors come back as text (the
// operation, the address, the kernel's reason and its extended-ack message when it gives one); nothing is thrown
// and nothing is logged here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/net.h"

namespace mg::hostif {

inline constexpr int kCallTimeoutMs = 200;

// The rtm_protocol of the routes meshgate installs (an unassigned value in iproute2's rt_protos): a routing
// daemon's filters can tell them apart (BIRD: krt_source = 200), and leftovers of a crashed run are found by it.
inline constexpr uint8_t kRouteProtocol = 200;

// One route of a kernel table, as dump_routes reads it.
struct KernelRoute {
  net::IpAddr dst;        // the prefix (version 4 or 6); all zero for a default route
  uint8_t len = 0;        // prefix length
  uint8_t type = 0;       // RTN_UNICAST, RTN_BLACKHOLE, ...
  uint8_t protocol = 0;   // who installed it (rtm_protocol: RTPROT_BOOT, 12 bird, kRouteProtocol meshgate, ...)
  bool nh_object = false; // its next hops are a nexthop object (RTA_NH_ID), not read here
  std::vector<int> oifs;  // output interfaces: RTA_OIF, or each of RTA_MULTIPATH's next hops
};

class Netlink {
 public:
  // A NETLINK_ROUTE socket (close-on-exec). nullptr and *err when the kernel refuses one.
  static std::unique_ptr<Netlink> open(std::string* err);
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  // Adds addr/prefix_len to ifindex; the same address with the same prefix already there is a success. IPv6 gets
  // IFA_F_NODAD: the twin carries the port's identity, the address is ours alone on that link, and a tentative
  // address could not source the kernel's own packets for a second or more. An IPv6 address already there with
  // another prefix length, or whose DAD failed, is an error (the kernel keys IPv6 addresses by address alone).
  bool add_address(int ifindex, const net::IpAddr& addr, uint8_t prefix_len, std::string* err);
  // A point-to-point address: local/32 (/128) with `peer` on the far end, as `ip addr add LOCAL peer PEER` (the
  // kernel routes PEER through the interface). For a tunnel interface (Tun), fresh: an existing one is an error.
  bool add_peer_address(int ifindex, const net::IpAddr& local, const net::IpAddr& peer, std::string* err);
  // Link up or down (IFF_UP) and the MTU (0 = leave it). net_tap usually brings its link up itself; this makes
  // it certain.
  bool set_link(int ifindex, bool up, uint32_t mtu, std::string* err);

  enum class NhStatus : uint8_t { kKnown, kResolving, kNoRoute, kOtherInterface, kError };
  struct NextHop {
    NhStatus status = NhStatus::kError;
    net::IpAddr via;      // the route's gateway, or dst itself when on-link (kKnown, kResolving, kOtherInterface)
    uint8_t mac[6] = {};  // kKnown only
    std::string err;      // kError: why; kNoRoute: the kernel's reason
  };
  // How the kernel would send a packet from src to dst (src may be unset: the kernel picks one):
  //  1. RTM_GETROUTE with RTA_DST and RTA_SRC, so `ip rule from SRC` policy routing applies. Deliberately without
  //     RTA_OIF (except for an IPv6 link-local dst, which means nothing without an interface): given an output
  //     interface, IPv4 lookups skip every route out of other interfaces and, finding none, assume the dst is
  //     on-link on that interface ("routing tables are wrong", ip_route_output_key_hash_rcu). A dst with no route,
  //     or one routed out of another interface, or a policy route out of another interface, would all look on-link
  //     here. Measured on 6.x: `ip route get 198.51.100.7 from 10.1.0.1 oif a0` says "dev a0" with no route at all.
  //     So the lookup is the one the kernel makes for an unbound socket, and its result's interface is compared
  //     with ifindex: another one = kOtherInterface (a local dst, out of lo, is one too).
  //  2. The route's gateway (RTA_GATEWAY, or RTA_VIA: an IPv4 route via an IPv6 gateway), else dst = on-link.
  //  3. RTM_GETNEIGH for that one address on ifindex: a lladdr in REACHABLE/STALE/DELAY/PROBE/PERMANENT/NOARP =
  //     kKnown. Missing, NONE, INCOMPLETE or FAILED: asks the kernel to resolve it (RTM_NEWNEIGH with NTF_USE, see
  //     neigh.cpp: the kernel then sends ARP / NS itself) and says kResolving; the caller asks again later.
  // Unreachable/blackhole/prohibit routes and ENETUNREACH/EHOSTUNREACH/EACCES = kNoRoute. An IPv4 src that is not
  // an address of this host = kError (the kernel's ENETUNREACH for it is told apart by looking up src itself).
  // A broadcast or multicast dst = kError.
  NextHop next_hop(int ifindex, const net::IpAddr& src, const net::IpAddr& dst);

  // Asks the kernel to (re)confirm an entry (NTF_USE): a STALE one goes to DELAY and is probed by unicast, so a
  // device whose MAC changed is noticed (its probes fail, the entry fails, the next next_hop() resolves it anew).
  // A REACHABLE entry is left alone; a missing one is created and resolved. Call it now and then for every via in
  // use. False and *err (when given) if the kernel refused the request.
  bool refresh(int ifindex, const net::IpAddr& via, std::string* err = nullptr);

  // Every IPv4 and IPv6 route of kernel table `table` (routes.cpp), within timeout_ms (a table of 100 k routes
  // dumps in well under a second). False and *err when the kernel refused or did not finish in time.
  bool dump_routes(uint32_t table, int timeout_ms, std::vector<KernelRoute>* out, std::string* err);

  // Adds or replaces (add) or deletes (!add) dst/len in `table` as a route of protocol kRouteProtocol out of oif
  // (a point-to-point interface: no gateway). Deleting a route that is not there is a success.
  bool set_route(uint32_t table, const net::IpAddr& dst, uint8_t len, int oif, bool add, std::string* err);

  struct Sock;  // the socket and its request/reply loop (sock.h)

 private:
  explicit Netlink(std::unique_ptr<Sock> s);
  std::unique_ptr<Sock> s_;
};

const char* status_name(Netlink::NhStatus s) noexcept;

// Changes of one kernel routing table: a non-blocking socket in the IPv4 and IPv6 route notification groups.
// Main thread only.
class RouteWatch {
 public:
  static std::unique_ptr<RouteWatch> open(uint32_t table, std::string* err);
  ~RouteWatch();
  RouteWatch(const RouteWatch&) = delete;
  RouteWatch& operator=(const RouteWatch&) = delete;
  // Reads every notification waiting; true when one was about the table, or when the kernel dropped some
  // (ENOBUFS: anything may have changed). Never blocks.
  bool changed() noexcept;

 private:
  RouteWatch(struct mnl_socket* nl, uint32_t table) : nl_(nl), table_(table) {}
  struct mnl_socket* nl_;
  uint32_t table_;
};

// A tunnel's kernel interface: a TUN device (IFF_TUN | IFF_NO_PI, so whole IP datagrams and no link layer),
// non-blocking, that lives as long as this object: it is not persistent, so the kernel removes it when the
// descriptor closes and a gateway that died leaves none behind. Main thread only.
class Tun {
 public:
  // Creates interface `name` (down, no address). An interface of that name already there is an error: the
  // kernel would attach us to another's persistent TUN, and any other kind is not ours to take.
  static std::unique_ptr<Tun> open(const std::string& name, std::string* err);
  ~Tun();
  Tun(const Tun&) = delete;
  Tun& operator=(const Tun&) = delete;

  const std::string& name() const noexcept { return name_; }
  int ifindex() const noexcept { return ifindex_; }
  int fd() const noexcept { return fd_; }
  // One datagram the kernel sent on the interface into buf: its length, 0 when none is waiting, -1 on an error
  // (errno set). A datagram longer than cap is cut to cap (the caller sized cap above the interface's MTU).
  long read(uint8_t* buf, size_t cap) noexcept;
  // One datagram up to the kernel, as if received on the interface. False (errno set) when the kernel refused it
  // (interface down, a malformed datagram, no memory).
  bool write(const uint8_t* p, size_t n) noexcept;
  // net.ipv6.conf.NAME.disable_ipv6 (before the link comes up, so that no link-local address, router
  // solicitation or MLD report is made): an interface for IPv4 inner addresses has no IPv6. True when set, or
  // when the kernel has no IPv6 at all.
  bool disable_ipv6(std::string* err) noexcept;

 private:
  Tun(int fd, int ifindex, std::string name) : fd_(fd), ifindex_(ifindex), name_(std::move(name)) {}
  int fd_;
  int ifindex_;
  std::string name_;
};

}  // namespace mg::hostif
