// mg::config — the gateway's TOML files turned into a validated model (docs/ARCHITECTURE.md "Configuration").
//
// Two files:
//   gateway file  [gateway] [[instance]] [[device]] [[tunnel]] [flow] [inside] [liveness]  (what to do)
//   pmd_config    [eal] [[port]] [workers]                                                (which DPDK ports and lcores)
// The gateway file names its pmd_config (`[gateway] pmd_config = "relative/or/absolute.toml"`, relative to
// the gateway file), overridable on the meshgate command line.
//
// Every problem is reported as an Error naming the file, the line (0 when the problem has no single line,
// e.g. "fewer than two instances") and the rule broken; loading collects all errors it can rather than
// stopping at the first. No EAL or DPDK state is needed: `meshgate --check` uses this alone.
//
// Ownership: the model owns copies of the keys (SaKeys wipe themselves on destruction and are never
// printed: describe() shows only their length). Not thread-safe; built once by main.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "net/net.h"
#include "net/outer_policy.h"

namespace mg::config {

enum class Mode : uint8_t { kActiveActive, kActiveStandby };
const char* to_string(Mode m) noexcept;

// Key material (key || 4-byte salt) that wipes itself. Copy is deleted so keys are not duplicated by accident.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::vector<uint8_t> b) : bytes_(std::move(b)) {}
  SecretBytes(SecretBytes&& o) noexcept : bytes_(std::move(o.bytes_)) { o.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();
  const std::vector<uint8_t>& bytes() const noexcept { return bytes_; }
  size_t size() const noexcept { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};

struct SaSpec {
  uint32_t spi = 0;
  crypto::Cipher cipher = crypto::Cipher::kAesGcm128;
  crypto::Engine engine = crypto::Engine::kIpsecMb;
  SecretBytes keymat;           // from `key = "hex"` or `key_file = "path"` (hex text or raw bytes; a private
                                // regular file: crypto::read_key_file)
  bool esn = false;
  uint32_t replay_window = 1024;  // inbound only; power of two, 64..65536
  // ESP in UDP (RFC 3948): `encap = "udp"` in the SA's table or its [[tunnel]]; ports from `udp_local_port` (the
  // gateway's: source of what it sends, destination of what it receives) and `udp_remote_port` (the device's).
  net::Encap encap = net::Encap::kNone;
  uint16_t udp_local_port = net::kNatTPort;
  uint16_t udp_remote_port = net::kNatTPort;
  int line = 0;
};

// One tunnel's liveness settings, resolved: [tunnel.liveness] over [liveness] over these defaults. The data plane
// reads only this, so it never needs to know which table a value came from.
struct LivenessSettings {
  bool enabled = false;          // default true when the file has a [liveness] table
  uint32_t interval_ms = 20;     // probe interval and the unit of detection, 1..60000
  uint32_t multiplier = 3;       // missed intervals before down, 1..100
  uint32_t hold_down_ms = 1000;  // continuous proof before a tunnel that came back is used again, 0..3600000
  bool probes = true;            // ICMP echo requests inside ESP on idle tunnels
  // Inner addresses of the probes. probe_address: the tunnel's, else the device's, else the device's outer
  // address of the tunnel's IP version. probe_source: the tunnel's, else the instance's outer address of
  // probe_address's version. Resolved even when disabled (the reflector answers echo requests to
  // probe_source); version 0 only when nothing resolvable and the tunnel does not need it.
  net::IpAddr probe_source;
  net::IpAddr probe_address;
};

// [liveness] settings that apply to the whole gateway rather than per tunnel.
struct LivenessGlobal {
  bool present = false;  // the file has a [liveness] table (it turns liveness on for every tunnel by default)
  bool damping = true;   // suppress flapping tunnels (RFC 2439-style)
  bool monitor = false;  // verdicts are logged and counted but never take a tunnel out
  bool reflect = false;  // answer ICMP echo requests sent through a tunnel to that tunnel's probe_source
  int line = 0;
};

// [mtu]: what the gateway does with packets that do not fit a tunnel once encrypted (docs/ARCHITECTURE.md "MTU and fragments").
// Each tunnel's own `mtu` and `mss_clamp` keys are in its [[tunnel]] table.
struct MtuSettings {
  int32_t mss_clamp = -1;    // -1 "auto": each tunnel's path MTU less the IP and TCP headers; 0 off; else an MSS
                             // (536..9176) that SYNs are lowered to, never above what the path MTU allows
  uint32_t icmp_rate = 100;  // ICMP too-big errors per second per worker (0: never sent, the packet is still dropped)
  uint32_t icmp_burst = 10;  // token bucket depth
  int line = 0;              // of the [mtu] table, 0 when absent
};

struct Instance {
  std::string name;
  net::IpAddr ipv4;             // version 0 when absent; at least one of ipv4/ipv6
  net::IpAddr ipv6;
  std::string port;             // a [[port]] name of the pmd_config
  uint8_t ipv4_prefix_len = 32; // the on-link prefix of `ipv4` on the port's kernel twin (exception path)
  uint8_t ipv6_prefix_len = 128;
  bool standby = false;         // `role = "standby"`; without a role: the first instance active, the others
                                // standby. Kept in either mode (mode may change at run time); used in
                                // active-standby only
  int line = 0;
};

struct Device {
  std::string name;
  net::IpAddr ipv4;             // at least one; a tunnel uses the version its instance also has (v4 first)
  net::IpAddr ipv6;
  std::string next_hop_mac;     // Ethernet destination for this device's tunnels; default ff:ff:ff:ff:ff:ff
  uint8_t mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  // next_hop_mac given: used as is. Without it, a tunnel whose instance port has a kernel twin (exception path)
  // takes its next hop's MAC from the kernel's neighbour table; other tunnels use the broadcast default.
  bool mac_static = false;
  net::IpAddr probe_address;    // inner address answering ICMP echo for all its tunnels; version 0 = not set
  int line = 0;
};

struct Tunnel {
  std::string name;             // default "<instance>-<device>"
  uint32_t instance = 0;        // index into Gateway::instances
  uint32_t device = 0;          // index into Gateway::devices
  uint32_t weight = 1;          // >= 0; 0 = no new flows
  SaSpec out;                   // [tunnel.out] outbound SA (instance -> device)
  SaSpec in;                    // [tunnel.in]  inbound SA (device -> instance)
  uint8_t ttl = 64;
  net::DfPolicy df = net::DfPolicy::kCopy;
  net::DscpPolicy dscp_policy = net::DscpPolicy::kCopy;
  uint8_t tos = 0;
  LivenessSettings liveness;    // fully resolved
  uint32_t mtu = 0;             // outer datagram limit; 0 = the MTU of its instance's port
  int32_t mss_clamp = -1;       // resolved: the tunnel's `mss_clamp`, else [mtu]'s (MtuSettings::mss_clamp)
  // `keying = "ike"`: the SAs come at run time through the keying interface (lib/keying), `out` and `in` are empty
  // and the tunnel carries nothing until an outbound SA is installed. `if_id`: what the keying daemon names it by
  // (swanctl's if_id_in/if_id_out); 0 = by its outer addresses (instance, device).
  bool ike = false;
  uint32_t if_id = 0;
  // `interface = "NAME"`: a kernel interface (TUN, point-to-point) for the tunnel's inner addresses, so that the
  // host's daemons (BIRD for BGP and BFD, ping) talk to the device through this tunnel alone (docs/ARCHITECTURE.md
  // "Tunnel interfaces"). Its address is liveness.probe_source, its peer liveness.probe_address, both written in
  // the file (never the outer addresses they fall back to). "" = none.
  std::string interface;
  uint32_t interface_pps = 10000;  // per worker: decrypted packets handed up to the interface (1..10000000)
  int interface_line = 0;
  // `announce_table`: the kernel table where [routing] device_prefixes are kept for this tunnel's device while the
  // tunnel is up (0 = none; needs `interface`; one table per tunnel, none of the kernel's own or [routing]'s).
  uint32_t announce_table = 0;
  int announce_line = 0;
  int line = 0;
};
inline constexpr size_t kMaxInterfaceName = 15;  // Linux IFNAMSIZ less its NUL

struct FlowSettings {
  uint64_t seed = 0x6d657368676174ull;  // "meshgat"
  uint32_t table_size = 65537;          // prime >= 65537
  uint32_t pin_idle_timeout_ms = 30000;
  uint32_t pin_capacity = 1u << 20;      // per worker
};

struct Prefix {
  net::IpAddr addr;
  uint8_t len = 0;
};

// [[route]]: inner prefixes that only some tunnels can reach (docs/ARCHITECTURE.md "Routes"). The [inside]
// prefixes reach every tunnel; a [[route]] prefix, longest match first, only the tunnels it names (`tunnels`, or
// every tunnel to one of its `devices`). Decrypted packets from a route's prefixes must arrive on one of them.
struct RouteCfg {
  std::vector<Prefix> prefixes;
  std::vector<uint32_t> tunnels;   // indexes into Gateway::tunnels, sorted, unique, non-empty
  int line = 0;
};
inline constexpr uint32_t kMaxRouteSets = 64;  // distinct tunnel sets (route::kMaxSets): [inside] counts as one

// [routing]: routes learned at run time (docs/ARCHITECTURE.md "Routes from the kernel"). A routing daemon (BIRD)
// puts what it learned over the tunnels (BGP on their interfaces) into kernel table `kernel_table`; meshgate
// watches it, and each route whose output interfaces are tunnels' `interface`s reaches the destination through
// those tunnels, beside the static [inside] prefixes and [[route]] tables (longest match first).
struct RoutingSettings {
  uint32_t kernel_table = 0;       // 0 = learn nothing; else 1..0xffffffff but 255 (the kernel's local table)
  uint32_t update_interval_ms = 20;  // changes within this long are one new route table (1..10000)
  // Kernel table where meshgate keeps the prefixes this box can reach now, for the routing daemon to announce
  // towards the inside (docs/ARCHITECTURE.md "Announcing"): each route's prefix while a tunnel of its set takes new
  // flows, out of that tunnel's interface (so that the route dies with the process). 0 = none; not 253..255.
  uint32_t announce_table = 0;
  // `device_prefixes`: the networks behind this gateway that the devices should send into the tunnels. Each tunnel
  // with an `announce_table` of its own has them there, out of its interface, while the tunnel is up (not draining,
  // not down by the operator, liveness or a lost SA): the routing daemon announces them to that tunnel's device.
  std::vector<Prefix> device_prefixes;
  int line = 0;                    // of the [routing] table, 0 when absent
};

struct Gateway {
  std::string name;             // [a-zA-Z0-9_-]{1,32}: it names the control block /dev/shm/meshgate.<name>
  Mode mode = Mode::kActiveActive;
  std::string inside_port;      // [inside] port = "inside" (a [[port]] name)
  std::vector<Prefix> inside_prefixes;  // [inside] prefixes = ["10.0.0.0/8", ...]: inner destinations that go
                                        // into the tunnels (route-based); others are dropped as not routed
  uint8_t inside_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};  // [inside] next_hop_mac for decrypted packets
  net::IpAddr inside_ipv4, inside_ipv6;  // [inside] ipv4 / ipv6: the gateway's address on the inside network, the
                                         // source of the ICMP errors it sends there (version 0 when absent), and
                                         // the address of the inside port's kernel twin when it has one
  uint8_t inside_ipv4_prefix_len = 32;   // [inside] ipv4_prefix_len / ipv6_prefix_len: their on-link prefixes on
  uint8_t inside_ipv6_prefix_len = 128;  // the inside twin (e.g. 30 for a router on the other end of a /30)
  std::vector<Instance> instances;
  std::vector<Device> devices;
  std::vector<Tunnel> tunnels;
  std::vector<RouteCfg> routes;  // [[route]]
  RoutingSettings routing;       // [routing]
  FlowSettings flow;
  LivenessGlobal liveness;
  MtuSettings mtu;
  std::string pmd_config;       // resolved path
  // [gateway] state_dir: where outbound sequence numbers are recorded across restarts (resolved like pmd_config;
  // empty: meshgate's default). unsafe_volatile_sequence = true: no record, every run starts at 1 (labs only).
  std::string state_dir;
  bool unsafe_volatile_sequence = false;
  // [keying] socket: where meshgate listens for its keying daemon (resolved like pmd_config; empty: meshgate's
  // default, used only when a tunnel is keyed by IKE).
  std::string keying_socket;
  std::string source;           // the gateway file's path
  int inside_line = 0;          // line of the [inside] table, for cross_check messages
};

struct PortSpec {
  std::string name;
  std::string devargs;          // e.g. "net_pcap0,rx_pcap=in.pcap" (vdev) or a PCI address "0000:3b:00.0";
                                // ${VAR} is replaced from the environment (unset: an error)
  bool vdev = true;             // devargs starts with "net_", "crypto_" or "virtio_user"
  uint16_t rx_queues = 0;       // 0 = one per worker
  uint16_t tx_queues = 0;       // 0 = one per worker
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  bool rss = true;              // RSS on IP/TCP/UDP when rx_queues > 1 and the device has it
  bool ipv4_cksum_offload = false;
  uint32_t mtu = 0;             // 0 = leave the device default
  // How long start waits for a port that cannot start yet: a net_memif client needs its server's socket and a
  // link (the server may start after us). Other drivers that fail to start are retried as long.
  uint32_t start_wait_s = 10;
  // Exception path: the [[port]] (a net_tap, or virtio_user on vhost-net) that is this outside port's kernel twin.
  // It carries this port's MAC and its instance's addresses; IKE, ARP/ND and ICMP for the instance go up to it,
  // what the kernel sends on it goes out this port. Empty: none (those packets are counted drops).
  std::string host;
  uint32_t host_pps = 10000;    // per worker: packets handed to the twin per second at most (a counted drop beyond)
  bool is_host = false;         // set by load_pmd: another port names this one as its `host`
  int host_line = 0;
  int line = 0;
};

struct PmdConfig {
  std::vector<std::string> eal_args;  // [eal] args = ["--no-huge", "-m", "1024", ...]
  std::vector<unsigned> worker_lcores;  // [workers] lcores = [1]; main is the lowest lcore in -l
  uint32_t mbufs = 16383;             // [workers] mbufs per socket
  std::vector<PortSpec> ports;
  std::string source;
};

// Rule ids (stable; tests and scripts match on them):
//   any file     limits toml-syntax file-unreadable unknown-key missing-key type name-syntax name-unique
//   gateway      route-based-only gateway-name mode pmd-config state-dir inside-prefixes prefix mac flow-table-size
//                flow-range instance-ip device-ip ip-address instance-role port-shared tunnels-required
//                active-active-two-instances active-active-distinct-ips active-standby-roles
//                tunnel-reference tunnel-pair-unique tunnel-ip-version weight ttl df dscp
//                spi-zero spi-range spi-unique cipher icv-length engine engine-cipher
//                key-source key-hex key-length key-file key-reuse replay-window
//                liveness-range probe-address probe-version probe-source tunnel-mtu mss-clamp icmp-rate
//                inside-address encap udp-port route route-reference route-prefix route-sets
//   pmd_config   eal-lcores worker-lcores worker-lcore-unique worker-is-main worker-lcore-not-enabled mbufs
//                ports-required devargs devargs-unique env-unset env-syntax queues descriptors mtu host-port
//                host-rate
//   cross_check  port-unknown tx-queues tunnel-mtu host-port
// Messages never contain key material (not even from a TOML syntax error on a key line); runs of hex digits long
// enough to be a key are hidden from every message (reader.h hide_hex_runs).
struct Error {
  std::string file;
  int line = 0;
  std::string rule;     // short id, e.g. "active-active-two-instances", "spi-unique", "key-length"
  std::string message;  // a sentence a person can act on
  std::string format() const;  // "file:line: message [rule]"
};

// What load_gateway reads. meshgate reads everything. An offline tool that only places flows (meshgate-spread)
// skips what it cannot use, so that a gateway file without keys or ports (or whose key files are on another box)
// loads; every other rule is the gateway's, so the tool and meshgate never disagree on names or defaults.
struct LoadOptions {
  // [tunnel.out] / [tunnel.in]: false = not required, not read, not checked (SPIs, ciphers, keys are left
  // zero/empty in the model: such a Gateway must not be given to the data plane).
  bool sas = true;
  // [gateway] pmd_config, [inside] port, [[instance]] port: false = not required (read when present) and
  // port-shared not checked.
  bool ports = true;
};

// Parses and validates. On any error returns nullopt and fills *errors (all errors found).
std::optional<Gateway> load_gateway(const std::string& path, std::vector<Error>* errors,
                                    const LoadOptions& options = {});
// eal_args (optional): the [eal] args read, also when the file has errors (an arg whose ${VAR} is unset is left out):
// `meshgate --check` judges the hugepages of a pmd_config whose variables are only set at run time.
std::optional<PmdConfig> load_pmd(const std::string& path, std::vector<Error>* errors,
                                  std::vector<std::string>* eal_args = nullptr);
// Rules that need both files: ports named by [inside] and instances exist in the pmd_config, etc.
bool cross_check(const Gateway& g, const PmdConfig& p, std::vector<Error>* errors);

// Human-readable model (keys shown as "<N bytes>"), for `meshgate --check`. With the pmd_config, each tunnel's MTU
// figures are resolved from its port (a port without `mtu` counts as kDefaultPortMtu, DPDK's default).
std::string describe(const Gateway& g, const PmdConfig* pmd = nullptr);
std::string describe(const PmdConfig& p);

// ---- MTU (docs/ARCHITECTURE.md "MTU and fragments") ----
inline constexpr uint32_t kDefaultPortMtu = 1500;
// A tunnel's figures: `link` = its `mtu`, or port_mtu when that is 0; `path` = the largest inner datagram that fits
// once encrypted with its outbound SA (in UDP when that SA is); the MSS that SYNs through it are clamped to, per
// inner IP version (0: off).
struct TunnelMtu {
  uint32_t link = 0, path = 0;
  uint16_t mss4 = 0, mss6 = 0;
};
TunnelMtu tunnel_mtu(const Gateway& g, const Tunnel& t, uint32_t port_mtu) noexcept;
// The smallest link MTU a tunnel may have: a 1280-byte IPv6 packet (RFC 8200 5) must fit once encrypted (in UDP
// with udp_encap: 8 bytes more).
uint32_t min_tunnel_mtu(bool outer_v6, bool udp_encap = false) noexcept;
// The source of ICMP errors about a packet of IP version `ver` sent into tunnel t: [inside] ipv4/ipv6, else the
// tunnel's liveness probe_source (its inner address), else its instance's address; version 0 when none exists.
net::IpAddr icmp_source(const Gateway& g, const Tunnel& t, int ver) noexcept;

// The outer IP version a tunnel uses: 4 when both its instance and device have IPv4, else 6 (0: none).
int tunnel_ip_version(const Gateway& g, const Tunnel& t) noexcept;

}  // namespace mg::config
