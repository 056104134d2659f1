// meshgate-spread: offline flow-spreading analyser. A pcap or synthetic flows + the gateway's tunnels, weights
// and hash seed -> per-tunnel flows, packets, bytes, shares, imbalance and the flows each tunnel event moves,
// computed with the data plane's own lib/flow code (one worker's pin table).
//
// Exit codes: 0 fine; 2 bad command line (usage errors exit 2 in every meshgate program), config, trace or event;
// 3 anything else.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "spread_conf.h"
#include "sim.h"
#include "trace.h"
#include "mg_version.h"

namespace {

using mg::spread::Result;
using mg::spread::SpreadConf;
using nlohmann::json;

struct Options {
  std::string config, pcap;
  uint32_t synthetic = 0;
  uint64_t packets = 0;
  std::string sizes = "uniform";
  double zipf_s = 1.0, ipv6_share = 0.2, rate = 100000;
  uint64_t gen_seed = 1;
  std::vector<std::string> events;
  std::string seed;  // override of [flow] seed
  uint32_t pin_capacity = 0;  // 0: [flow] pin_capacity
  uint32_t try_seeds = 0;
  bool json = false;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double share(uint64_t part, uint64_t whole) { return whole ? double(part) / double(whole) : 0.0; }

json to_json(const Result& r, const SpreadConf& c) {
  json j;
  j["seed"] = r.seed;
  j["seed_hex"] = fmt::format("{:#x}", r.seed);
  j["packets"] = r.packets;
  j["bytes"] = r.bytes;
  j["no_tunnel_packets"] = r.no_tunnel_packets;
  uint64_t wsum = 0;
  for (const auto& t : c.tunnels) wsum += t.weight;
  uint64_t flows_sum = 0;
  for (const auto& t : r.tunnels) flows_sum += t.flows;
  json tun = json::array();
  for (size_t i = 0; i < r.tunnels.size(); ++i) {
    const auto& t = r.tunnels[i];
    tun.push_back({{"id", i},
                   {"name", c.tunnels[i].name},
                   {"instance", c.tunnels[i].instance},
                   {"device", c.tunnels[i].device},
                   {"weight", c.tunnels[i].weight},
                   {"weight_share", share(c.tunnels[i].weight, wsum)},
                   {"state_at_end", mg::flow::to_string(t.end_state)},
                   {"weight_at_end", t.end_weight},
                   {"flows", t.flows},
                   {"packets", t.packets},
                   {"bytes", t.bytes},
                   {"flow_share", share(t.flows, flows_sum)},
                   {"packet_share", share(t.packets, r.packets - r.no_tunnel_packets)},
                   {"byte_share", share(t.bytes, r.bytes)},
                   {"pins_at_end", t.pins.pinned},
                   {"new_flows", t.pins.new_flows()},
                   {"moved_in", t.pins.moved_in}});
  }
  j["tunnels"] = tun;
  j["imbalance"] = {{"flows", r.imbalance.flows}, {"packets", r.imbalance.packets}, {"bytes", r.imbalance.bytes}};
  json ev = json::array();
  for (const auto& e : r.events)
    ev.push_back({{"event", e.event.text},
                  {"at_packet", e.event.at},
                  {"time_ms", e.time_ms},
                  {"active_flows", e.active_flows},
                  {"moved_at_once", e.moved_at_once},
                  {"moved_share", share(e.moved_at_once, e.active_flows)},
                  {"seen_again", e.seen_again},
                  {"moved_observed", e.moved_observed},
                  {"moved_observed_share", share(e.moved_observed, e.seen_again)}});
  j["events"] = ev;
  const auto& k = r.counters;
  j["counters"] = {{"hits", k.hits},           {"new_flows", k.new_flows},     {"no_tunnel", k.no_tunnel},
                   {"moved_down", k.moved_down}, {"moved_drain", k.moved_drain}, {"moved_idle", k.moved_idle},
                   {"expired", k.expired},     {"evicted", k.evicted}};
  return j;
}

void print_text(const json& j) {
  fmt::print("source: {}\n", j["source"].get<std::string>());
  fmt::print("{} flows, {} packets, {} bytes ({} frames skipped); seed {}, table {} slots, {} pins, idle {} s\n",
             j["flows"].get<uint64_t>(), j["packets"].get<uint64_t>(), j["bytes"].get<uint64_t>(),
             j["skipped"].get<uint64_t>(), j["seed_hex"].get<std::string>(), j["table_size"].get<uint32_t>(),
             j["pin_capacity"].get<uint32_t>(), j["pin_idle_timeout_s"].get<double>());
  fmt::print("\n{:>3} {:<30} {:>6} {:>8} {:>10} {:>12} {:>15} {:>7} {:>7} {:>7}  {}\n", "id", "tunnel", "weight",
             "w-share", "flows", "packets", "bytes", "flow%", "pkt%", "byte%", "at end");
  for (const auto& t : j["tunnels"]) {
    const std::string pair = t["instance"].get<std::string>() + "/" + t["device"].get<std::string>();
    const std::string name = t["name"].get<std::string>();
    fmt::print("{:>3} {:<30} {:>6} {:>7.2f}% {:>10} {:>12} {:>15} {:>6.2f}% {:>6.2f}% {:>6.2f}%  {}\n",
               t["id"].get<int>(), name == pair ? name : name + " (" + pair + ")", t["weight"].get<uint32_t>(),
               100 * t["weight_share"].get<double>(), t["flows"].get<uint64_t>(), t["packets"].get<uint64_t>(),
               t["bytes"].get<uint64_t>(), 100 * t["flow_share"].get<double>(),
               100 * t["packet_share"].get<double>(), 100 * t["byte_share"].get<double>(),
               t["state_at_end"].get<std::string>());
  }
  const auto& im = j["imbalance"];
  fmt::print("\nimbalance max/mean (per unit of weight): flows {:.4f}  packets {:.4f}  bytes {:.4f}\n",
             im["flows"].get<double>(), im["packets"].get<double>(), im["bytes"].get<double>());
  if (!j["events"].empty()) {
    fmt::print("\nevents:\n");
    for (const auto& e : j["events"])
      fmt::print("  {:<32} moved at once {:>6.2f}% of {} active flows; seen again {}, of which moved {:.2f}%\n",
                 e["event"].get<std::string>(), 100 * e["moved_share"].get<double>(),
                 e["active_flows"].get<uint64_t>(), e["seen_again"].get<uint64_t>(),
                 100 * e["moved_observed_share"].get<double>());
  }
  const auto& k = j["counters"];
  fmt::print("\npin table: {} hits, {} new flows, moved: {} down, {} drain deadline, {} idle; {} expired, {} evicted"
             ", {} packets without a tunnel\n",
             k["hits"].get<uint64_t>(), k["new_flows"].get<uint64_t>(), k["moved_down"].get<uint64_t>(),
             k["moved_drain"].get<uint64_t>(), k["moved_idle"].get<uint64_t>(), k["expired"].get<uint64_t>(),
             k["evicted"].get<uint64_t>(), j["no_tunnel_packets"].get<uint64_t>());
  if (j.contains("try_seeds")) {
    const auto& s = j["try_seeds"];
    fmt::print("\nseed sweep over {} seeds: best {} with byte imbalance {:.4f} (configured seed: {:.4f})\n",
               s["tried"].get<uint32_t>(), s["best_seed_hex"].get<std::string>(),
               s["best_byte_imbalance"].get<double>(), s["configured_byte_imbalance"].get<double>());
  }
}

int run(const Options& o) {
  SpreadConf conf = mg::spread::load_config(o.config);
  if (!o.seed.empty()) {
    try {
      size_t used = 0;
      conf.seed = std::stoull(o.seed, &used, 0);
      if (used != o.seed.size()) throw std::invalid_argument(o.seed);
    } catch (const std::logic_error&) {
      throw mg::spread::InputError("--seed '" + o.seed + "' is not a 64-bit number");
    }
  }
  mg::spread::Trace trace;
  if (!o.pcap.empty()) {
    trace = mg::spread::read_pcap(o.pcap);
  } else {
    mg::spread::SynthOptions so;
    so.flows = o.synthetic;
    so.packets = o.packets;
    so.sizes = o.sizes == "zipf" ? mg::spread::SynthOptions::Sizes::kZipf : mg::spread::SynthOptions::Sizes::kUniform;
    so.zipf_s = o.zipf_s;
    so.ipv6_share = o.ipv6_share;
    so.rate_pps = o.rate;
    so.seed = o.gen_seed;
    trace = mg::spread::synthesize(so);
  }
  const auto events = mg::spread::parse_events(o.events, conf, trace.packets.size());
  const uint32_t pin_capacity = o.pin_capacity ? o.pin_capacity : conf.pin_capacity;
  mg::spread::SimOptions so{conf.seed, pin_capacity, true};
  const Result r = mg::spread::simulate(trace, conf, events, so);
  json j = to_json(r, conf);
  j["source"] = trace.source;
  j["flows"] = trace.flows.size();
  j["skipped"] = trace.skipped;
  j["table_size"] = conf.table_size;
  j["pin_capacity"] = pin_capacity;
  j["pin_idle_timeout_s"] = conf.pin_idle_timeout_s;
  if (o.try_seeds > 0) {
    // Seed 0 of the sweep is the configured one, the others are spread out from it.
    uint64_t best = conf.seed;
    double best_im = r.imbalance.bytes;
    for (uint32_t k = 1; k < o.try_seeds; ++k) {
      so.seed = splitmix64(conf.seed + k);
      so.measure_events = false;
      const Result rk = mg::spread::simulate(trace, conf, events, so);
      if (rk.imbalance.bytes < best_im) best = so.seed, best_im = rk.imbalance.bytes;
    }
    j["try_seeds"] = {{"tried", o.try_seeds},
                      {"best_seed", best},
                      {"best_seed_hex", fmt::format("{:#x}", best)},
                      {"best_byte_imbalance", best_im},
                      {"configured_byte_imbalance", r.imbalance.bytes}};
  }
  if (o.json)
    std::puts(j.dump(2).c_str());
  else
    print_text(j);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshgate-spread: how flows spread over the gateway's tunnels, and what tunnel events move.\n"
               "Uses the data plane's own flow hash, selection table and one worker's pin table."};
  app.footer("Exit codes: 0 ok, 2 bad command line/config/trace/event, 3 other errors.\n"
             "Example: meshgate-spread -c example.toml --synthetic 100000 --sizes zipf --event 'down 2 at 50%'");
  Options o;
  app.add_option("-c,--config", o.config, "gateway file, read as meshgate reads it (lib/config) without its SAs and ports")
      ->required()
      ->check(CLI::ExistingFile);
  auto* pcap = app.add_option("--pcap", o.pcap, "read packets from this pcap (Ethernet, raw IP, SLL, loopback)")
                   ->check(CLI::ExistingFile);
  auto* syn = app.add_option("--synthetic", o.synthetic, "generate this many flows instead")
                  ->check(CLI::Range(1u, 50000000u));
  pcap->excludes(syn);
  app.add_option("--packets", o.packets, "synthetic: packets in all (default 10 per flow)")
      ->check(CLI::Range(uint64_t(1), uint64_t(1) << 40))
      ->needs(syn);
  app.add_option("--sizes", o.sizes, "synthetic: flow size distribution")
      ->check(CLI::IsMember({"uniform", "zipf"}))
      ->needs(syn);
  app.add_option("--zipf-s", o.zipf_s, "synthetic: Zipf exponent")->check(CLI::Range(0.01, 5.0))->needs(syn);
  app.add_option("--ipv6-share", o.ipv6_share, "synthetic: share of IPv6 flows")
      ->check(CLI::Range(0.0, 1.0))
      ->needs(syn);
  app.add_option("--rate", o.rate, "synthetic: packets per second (sets timestamps)")
      ->check(CLI::Range(1.0, 1e9))
      ->needs(syn);
  app.add_option("--gen-seed", o.gen_seed, "synthetic: generator seed")->needs(syn);
  app.add_option("--event", o.events,
                 "tunnel event, repeatable: 'down T [at N]', 'up T [at N]', 'drain T [at N] [for S]',"
                 " 'weight T W [at N]'; T = tunnel id or instance/device, N = packet number or percentage ('50%'),"
                 " S = seconds of trace time until a draining tunnel's pins move");
  app.add_option("--seed", o.seed, "flow hash seed instead of [flow] seed (decimal or 0x hex)");
  app.add_option("--pin-capacity", o.pin_capacity, "pins in the worker's pin table instead of [flow] pin_capacity")
      ->check(CLI::Range(1u, 1u << 30));
  app.add_option("--try-seeds", o.try_seeds, "replay with K seeds (the configured one first); report the best"
                                              " byte balance")
      ->check(CLI::Range(1u, 100000u));
  app.add_flag("--json", o.json, "JSON on stdout for scripts");
  app.set_version_flag("--version", std::string("meshgate-spread ") + MG_VERSION, "print the version and exit");
  try {
    app.parse(argc, argv);
    if (o.pcap.empty() && o.synthetic == 0) throw CLI::RequiredError("--pcap or --synthetic");
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    return run(o);
  } catch (const mg::spread::InputError& e) {
    std::fprintf(stderr, "meshgate-spread: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meshgate-spread: error: %s\n", e.what());
    return 3;
  }
}
