// The exception path (docs/ARCHITECTURE.md "The exception path"): an outside port's kernel twin carries the port's MAC and the
// instance's addresses, so that the host's daemons (charon for IKE, the kernel itself for ARP/ND and ICMP) see
// what is theirs on a port DPDK owns, and what they send leaves through it. Workers classify (net/natt.h,
// net/local.h) and hand frames to main through a ring; main alone touches the twins. Next-hop MACs of devices
// without a static `next_hop_mac` come from the kernel's route and neighbour tables (lib/hostif).
#include <fmt/core.h>
#include <net/if.h>
#include <rte_errno.h>

#include "dataplane/internal.h"

namespace mg::dp {

namespace {

constexpr unsigned kRingSize = 1024;  // per direction and port: a few hundred IKE/ARP frames between main's rounds

std::string mac_text(const uint8_t* m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

}  // namespace

int Dataplane::Impl::host_setup(std::string* err) {
  // One slot per outside port, by outside index, and the inside port's last (inside_slot()).
  host.resize(outside.size() + 1);
  for (size_t o = 0; o < outside.size(); ++o) host[o].port = outside[o];
  host[inside_slot()].port = inside;
  main_pctr.resize(ports.size());
  host_ring_full.assign(host.size(), 0);
  for (auto& w : workers) w->hpace.resize(host.size());
  std::map<std::string, uint16_t> by_name;
  for (size_t i = 0; i < ports.size(); ++i) by_name[ports[i].name] = uint16_t(i);
  // Every outside port knows its instance's addresses: without a twin, what is the host's is still counted as such.
  for (uint32_t i = 0; i < gw.instances.size(); ++i) {
    const size_t o = size_t(std::find(outside.begin(), outside.end(), instance_port[i]) - outside.begin());
    const config::Instance& in = gw.instances[i];
    if (in.ipv4.version == 4) std::memcpy(host[o].local.v4, in.ipv4.bytes, 4), host[o].local.has4 = true;
    if (in.ipv6.version == 6) std::memcpy(host[o].local.v6, in.ipv6.bytes, 16), host[o].local.has6 = true;
  }
  HostPort& ih = host[inside_slot()];
  if (gw.inside_ipv4.version == 4) std::memcpy(ih.local.v4, gw.inside_ipv4.bytes, 4), ih.local.has4 = true;
  if (gw.inside_ipv6.version == 6) std::memcpy(ih.local.v6, gw.inside_ipv6.bytes, 16), ih.local.has6 = true;
  for (size_t o = 0; o < host.size(); ++o) {
    const config::PortSpec& ps = pmd.ports[host[o].port];
    if (ps.host.empty()) continue;
    HostPort& hp = host[o];
    hp.twin = by_name.at(ps.host);
    hp.pps = ps.host_pps;
    const PortRt& tw = ports[hp.twin];
    rte_eth_dev_info info{};
    rte_eth_dev_info_get(tw.id, &info);
    hp.ifindex = int(info.if_index);
    // net_tap reports its interface; virtio_user on vhost-net does not, but its devargs name it (iface=).
    const std::string& da = pmd.ports[hp.twin].devargs;
    if (const size_t at = da.find("iface="); hp.ifindex == 0 && at != std::string::npos) {
      const std::string name = da.substr(at + 6, da.find(',', at) == std::string::npos ? std::string::npos
                                                                                       : da.find(',', at) - at - 6);
      hp.ifindex = int(if_nametoindex(name.c_str()));
    }
    if (hp.ifindex == 0) {
      *err = fmt::format("port '{}': `host` port '{}' ({}) has no kernel interface; the twin must be a net_tap, "
                         "or virtio_user on vhost-net with iface=NAME", ps.name, ps.host,
                         info.driver_name ? info.driver_name : "?");
      return kExitPort;
    }
    // The twin is the port as the kernel sees it: same MAC (ARP answers and IKE leave with it), same MTU.
    rte_ether_addr mac = ports[hp.port].mac;
    if (int rc = rte_eth_dev_default_mac_addr_set(tw.id, &mac); rc != 0) {
      *err = fmt::format("port '{}': cannot give its twin '{}' the port's MAC: {}", ps.name, ps.host, rte_strerror(-rc));
      return kExitPort;
    }
    ports[hp.twin].mac = mac;
    uint16_t mtu = 0;
    rte_eth_dev_get_mtu(ports[hp.port].id, &mtu);
    // Its addresses: the instances' on an outside port, the gateway's [inside] ones on the inside port.
    struct Addr {
      std::string whose;
      net::IpAddr a;
      uint8_t len;
    };
    std::vector<Addr> addrs;
    if (o == inside_slot()) {
      if (gw.inside_ipv4.version == 4) addrs.push_back({"[inside]", gw.inside_ipv4, gw.inside_ipv4_prefix_len});
      if (gw.inside_ipv6.version == 6) addrs.push_back({"[inside]", gw.inside_ipv6, gw.inside_ipv6_prefix_len});
    }
    for (uint32_t i = 0; i < gw.instances.size() && o != inside_slot(); ++i) {
      if (instance_port[i] != hp.port) continue;
      const config::Instance& in = gw.instances[i];
      if (in.ipv4.version == 4) addrs.push_back({"instance '" + in.name + "'", in.ipv4, in.ipv4_prefix_len});
      if (in.ipv6.version == 6) addrs.push_back({"instance '" + in.name + "'", in.ipv6, in.ipv6_prefix_len});
    }
    if (!nl) {
      nl = hostif::Netlink::open(err);
      if (!nl) return kExitPort;
    }
    if (!nl->set_link(hp.ifindex, true, mtu, err)) {
      *err = fmt::format("port '{}': twin '{}': {}", ps.name, ps.host, *err);
      return kExitPort;
    }
    for (const Addr& a : addrs)
      if (!nl->add_address(hp.ifindex, a.a, a.len, err)) {
        *err = fmt::format("{}: address on twin '{}': {}", a.whose, ps.host, *err);
        return kExitPort;
      }
    const std::string up = fmt::format("mg_up_{}", o), down = fmt::format("mg_dn_{}", o);
    hp.up = rte_ring_create(up.c_str(), kRingSize, int(rte_socket_id()), RING_F_SC_DEQ);
    hp.down = rte_ring_create(down.c_str(), kRingSize, int(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (hp.up == nullptr || hp.down == nullptr) {
      *err = fmt::format("port '{}': exception path rings: {}", ps.name, rte_strerror(rte_errno));
      return kExitEal;
    }
    any_host = true;
    if (o == inside_slot()) inside_twin = true;
    log::info(log::Type::kHost, "port {}: exception path through '{}' (kernel ifindex {}), MAC {}, MTU {}", ps.name,
              ps.host, hp.ifindex, mac_text(mac.addr_bytes), mtu);
  }
  // Tunnels whose next hop the kernel resolves.
  nh.resize(gw.tunnels.size());
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& ct = gw.tunnels[t];
    const size_t o = size_t(std::find(outside.begin(), outside.end(), instance_port[ct.instance]) - outside.begin());
    nh[t].learn = !gw.devices[ct.device].mac_static && host[o].twin != UINT16_MAX;
  }
  if (any_host) host_tick();
  return kExitOk;
}

void Dataplane::Impl::host_up(Worker& w, size_t oidx, rte_mbuf* const pkts[], uint16_t n) noexcept {
  const HostPort& hp = host[oidx];
  Pace& p = w.hpace[oidx];
  const uint64_t t = rte_get_tsc_cycles();
  // A token bucket of pps per second, 64 deep: an IKE exchange or an ARP storm's first frames pass, a flood does not.
  // Elapsed time capped at 64 s: (t - last) * pps would overflow 64 bits after an hour idle at the highest rate.
  p.tokens = std::min<uint64_t>(p.tokens + std::min<uint64_t>(t - p.last, 64 * tsc_hz) * hp.pps / tsc_hz, 64);
  if (p.tokens || t - p.last > tsc_hz) p.last = t;
  uint16_t k = uint16_t(std::min<uint64_t>(p.tokens, n));
  p.tokens -= k;
  const uint16_t q = uint16_t(rte_ring_mp_enqueue_burst(hp.up, reinterpret_cast<void* const*>(pkts), k, nullptr));
  w.ctr.drops[size_t(Drop::kHostRateLimited)] += n - k;
  w.ctr.drops[size_t(Drop::kHostQueueFull)] += k - q;
  w.pctr[hp.port].to_host += q;
  for (uint16_t i = q; i < n; ++i) rte_pktmbuf_free(pkts[i]);
}

void Dataplane::Impl::host_send_down(Worker& w) noexcept {
  for (size_t o = 0; o < host.size(); ++o) {
    const HostPort& hp = host[o];
    if (hp.down == nullptr || rte_ring_empty(hp.down)) continue;
    rte_mbuf* pkts[kBurst];
    const uint16_t n = uint16_t(rte_ring_sc_dequeue_burst(hp.down, reinterpret_cast<void**>(pkts), kBurst, nullptr));
    const uint16_t port = hp.port;
    const uint16_t s = rte_eth_tx_burst(ports[port].id, w.id, pkts, n);
    for (uint16_t i = s; i < n; ++i) rte_pktmbuf_free(pkts[i]);
    w.pctr[port].from_host += s;
    w.pctr[port].tx_packets += s;
    w.pctr[port].tx_refused += n - s;
  }
}

void Dataplane::Impl::host_poll() noexcept {
  if (!any_host) return;
  for (size_t o = 0; o < host.size(); ++o) {
    HostPort& hp = host[o];
    if (hp.twin == UINT16_MAX) continue;
    PortCtr& tc = main_pctr[hp.twin];
    const uint16_t tw = ports[hp.twin].id;
    rte_mbuf* pkts[kBurst];
    // Workers -> kernel. A twin that refuses (its kernel interface down, a full socket) loses the frame, counted.
    for (int round = 0; round < 8; ++round) {
      const uint16_t n = uint16_t(rte_ring_sc_dequeue_burst(hp.up, reinterpret_cast<void**>(pkts), kBurst, nullptr));
      if (n == 0) break;
      const uint16_t s = rte_eth_tx_burst(tw, 0, pkts, n);
      for (uint16_t i = s; i < n; ++i) rte_pktmbuf_free(pkts[i]);
      tc.tx_packets += s;
      tc.tx_refused += n - s;
    }
    // Kernel -> wire, through worker 0.
    for (int round = 0; round < 8; ++round) {
      const uint16_t n = rte_eth_rx_burst(tw, 0, pkts, kBurst);
      if (n == 0) break;
      tc.rx_packets += n;
      const uint16_t q = uint16_t(rte_ring_sp_enqueue_burst(hp.down, reinterpret_cast<void* const*>(pkts), n, nullptr));
      for (uint16_t i = q; i < n; ++i) rte_pktmbuf_free(pkts[i]);
      host_ring_full[o] += n - q;
    }
  }
}

void Dataplane::Impl::host_drain() noexcept {
  for (HostPort& hp : host) {
    for (rte_ring* r : {hp.up, hp.down}) {
      if (r == nullptr) continue;
      void* m;
      while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      rte_ring_free(r);
    }
    hp.up = hp.down = nullptr;
  }
}

// Every 200 ms: where the kernel would send each learned tunnel's packets, and the MAC it has for that next hop.
// Every 5 s the known entries are refreshed (the kernel re-probes a stale one): a device whose MAC changed is
// followed. A change publishes a new state; nothing here waits on the network.
void Dataplane::Impl::host_tick() {
  const uint64_t now = rte_get_tsc_cycles();
  if (!nl || now < nh_next_tsc) return;
  nh_next_tsc = now + tsc_hz / 5;
  const bool refresh = now >= nh_refresh_tsc;
  if (refresh) nh_refresh_tsc = now + 5 * tsc_hz;
  bool changed = false;
  for (size_t t = 0; t < nh.size(); ++t) {
    NextHop& h = nh[t];
    if (!h.learn) continue;
    const auto& ct = gw.tunnels[t];
    const bool v6 = config::tunnel_ip_version(gw, ct) == 6;
    const config::Instance& in = gw.instances[ct.instance];
    const config::Device& dev = gw.devices[ct.device];
    const size_t o = size_t(std::find(outside.begin(), outside.end(), instance_port[ct.instance]) - outside.begin());
    const int ifindex = host[o].ifindex;
    const hostif::Netlink::NextHop r = nl->next_hop(ifindex, v6 ? in.ipv6 : in.ipv4, v6 ? dev.ipv6 : dev.ipv4);
    using S = hostif::Netlink::NhStatus;
    if (r.status == S::kKnown) {
      if (!h.known || std::memcmp(h.mac, r.mac, 6) != 0) {
        char buf[64];
        log::info(log::Type::kHost, "tunnel {}: next hop {} at {} (from the kernel's neighbour table)", ct.name,
                  net::format_ip(r.via, buf, sizeof buf), mac_text(r.mac));
        std::memcpy(h.mac, r.mac, 6);
        h.known = true;
        changed = true;
      } else if (refresh) {
        nl->refresh(ifindex, r.via);
      }
      h.via = r.via;
    } else if (r.status != h.last || (r.status == S::kError && r.err != h.last_err)) {
      // Said once per change. A known MAC is kept meanwhile: a route or neighbour entry gone for a moment (a
      // flushed cache) must not black-hole a tunnel whose device did not move.
      const char* why = r.status == S::kResolving        ? "resolving (the kernel is asking by ARP / ND)"
                        : r.status == S::kNoRoute        ? "no route from the instance address to the device"
                        : r.status == S::kOtherInterface ? "the kernel routes the device out of another interface"
                                                         : "netlink error";
      log::log(r.status == S::kResolving ? log::Level::kInfo : log::Level::kWarning, log::Type::kHost,
               "tunnel {}: next hop: {}{}{}", ct.name, why, r.err.empty() ? "" : ": ", r.err);
    }
    h.last = r.status;
    h.last_err = r.err;
  }
  if (changed && state.load(std::memory_order_relaxed) != nullptr) publish();
}

}  // namespace mg::dp
