// Internal to lib/config: the parts of load_gateway (lib/config/gateway*.cpp) that live in their own files,
// one concern each: SAs and keys (gateway_sa.cpp), liveness (gateway_liveness.cpp), and the helpers they share
// with the main reader (gateway.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "config/config.h"
#include "config/reader.h"

namespace mg::config::detail {

// ---- shared (gateway.cpp) ----
std::string ip_text(const net::IpAddr& a);
// Why an address cannot be a tunnel endpoint (unspecified, loopback, multicast, broadcast), or nullptr.
const char* unusable_endpoint(const net::IpAddr& a) noexcept;
// A key written in a table where it does not apply: "unknown-key", but saying where it goes, since the key
// itself is right.
void misplaced(Reader& r, Sink& sink, std::string_view key, const std::string& where_it_belongs);

// `ipv4` / `ipv6` of a table (an instance, a device, [inside]): each parsed, of its version and usable as `use`
// (not unspecified, loopback, multicast or broadcast); errors under `rule`.
void read_ips(Reader& r, Sink& sink, net::IpAddr* v4, net::IpAddr* v6, const char* rule, const char* use);
// `key` = "aa:bb:cc:dd:ee:ff" into mac (and its canonical text into *text when given); a clear error otherwise.
void read_mac(Reader& r, Sink& sink, const char* key, uint8_t mac[6], std::string* text);
// "10.0.0.0/8" into *out; false with *why (no length, not an address, bad length, host bits set).
bool parse_prefix(const std::string& s, Prefix* out, std::string* why);
bool is_prime(uint64_t n) noexcept;

struct EncapKeys;

// ---- routes (gateway_route.cpp) ----
// Every [[route]] table, after the tunnels are read: prefixes, `devices` or `tunnels`, the limits of route sets.
void read_routes(Reader& top, Sink& sink, Gateway* g);
// [routing] (gateway_route.cpp), once the tunnels are read: learning needs a tunnel with an `interface`.
void read_routing(Reader& top, Sink& sink, Gateway* g);

// ---- SAs and keys (gateway_sa.cpp) ----
// Reads [tunnel.out] / [tunnel.in] (key files relative to base_dir); its NAT traversal keys into *encap.
void read_sa(Reader& r, Sink& sink, const std::string& base_dir, bool inbound, SaSpec* sa, EncapKeys* encap);
// SPIs unique per direction, no AEAD key in two SAs.
void check_sas(const Gateway& g, Sink& sink);
// Wipes the hex keys held by the parsed document before it is freed.
void wipe_document_keys(toml::table& root);

// ---- NAT traversal (gateway_encap.cpp) ----
// What one table ([[tunnel]], [tunnel.out] or [tunnel.in]) says about ESP in UDP. Unset = not written.
struct EncapKeys {
  std::optional<net::Encap> encap;
  std::optional<uint16_t> port[2];  // udp_local_port, udp_remote_port
  int port_line[2] = {0, 0};        // where each was written (0: not written)
  std::string where;
};
// `encap`, `udp_local_port`, `udp_remote_port` of one table.
EncapKeys read_encap(Reader& r, Sink& sink);
// Each SA's encap and ports: its own keys, else its tunnel's, else raw ESP and 4500/4500. A port written where no
// SA it applies to uses UDP is an error (it would be ignored). sas = false: the SAs were not read (only the
// tunnel's own keys are checked).
void resolve_encap(const EncapKeys& tunnel, const EncapKeys& out_keys, const EncapKeys& in_keys, bool sas,
                   Tunnel* t, Sink& sink);

// ---- liveness (gateway_liveness.cpp) ----
// What one liveness table says. Unset = not written, so that resolution can fall through to the next level
// even when a level writes the default value.
struct LivenessKeys {
  std::optional<bool> enabled, probes;
  std::optional<uint32_t> interval_ms, multiplier, hold_down_ms;
  std::optional<net::IpAddr> probe_source, probe_address;  // [tunnel.liveness] only
  bool bad_address = false;  // one was written but is not usable (already reported)
  int probe_source_line = 0;
  int line = 0;  // the table's; 0 when absent
};

// A [tunnel.liveness] with what resolution needs to know about its tunnel.
struct TunnelLiveness {
  LivenessKeys keys;
  bool refs_ok = false;  // instance and device exist (otherwise there are no addresses to resolve from)
};

// probe_address of a [[device]] or [tunnel.liveness]; *bad when written but unusable (already reported).
std::optional<net::IpAddr> read_probe_ip(Reader& r, Sink& sink, const char* key, bool* bad);
// [liveness]: the defaults of every tunnel, and what is not per tunnel.
void read_liveness_global(Reader& r, Sink& sink, LivenessKeys* k, LivenessGlobal* lg);
// [tunnel.liveness]: one tunnel's overrides of [liveness].
void read_liveness_tunnel(Reader& r, Sink& sink, LivenessKeys* k);
// Every tunnel's LivenessSettings from its [tunnel.liveness], [liveness] and the defaults.
void resolve_liveness(Gateway& g, const LivenessKeys& global, const std::vector<TunnelLiveness>& per,
                      const std::vector<bool>& device_bad_probe, Sink& sink);

// ---- tunnel interfaces (gateway_interface.cpp) ----
// `interface` and `interface_pps` of a [[tunnel]].
void read_tunnel_interface(Reader& r, Sink& sink, Tunnel* t);
// Once liveness is resolved: each interface's addresses were written (probe_source in [tunnel.liveness], a
// probe_address there or in its [[device]]), of one IP version, and its name is unique.
void check_interfaces(const Gateway& g, const std::vector<TunnelLiveness>& per, Sink& sink);

// ---- MTU (gateway_mtu.cpp) ----
// What a [[tunnel]] says about its MTU, for resolution once all tunnels are read.
struct TunnelMtuKeys {
  std::optional<int32_t> mss_clamp;  // unset: [mtu]'s applies
  int mtu_line = 0;
};
// [mtu] of the top-level table (absent: the defaults).
void read_mtu_global(Reader& top, Sink& sink, MtuSettings* m);
// `mtu` and `mss_clamp` of a [[tunnel]].
TunnelMtuKeys read_tunnel_mtu(Reader& r, Sink& sink, Tunnel* t);
// [inside] `ipv4` / `ipv6`.
void read_inside_addresses(Reader& r, Sink& sink, Gateway* g);
// Each tunnel's mss_clamp from its keys or [mtu]; `mtu` checked against its outer IP version.
void resolve_mtu(Gateway& g, const std::vector<TunnelMtuKeys>& keys, Sink& sink);
// A tunnel's `mtu` against its port's `mtu` in the pmd_config (when that one sets it).
void cross_check_mtu(const Gateway& g, const PmdConfig& p, Sink& sink);

}  // namespace mg::config::detail
