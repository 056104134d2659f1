#include "sim.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace mg::spread {

namespace {

uint64_t parse_count(const std::string& s, uint64_t packets, const std::string& ev) {
  try {
    size_t used = 0;
    if (!s.empty() && s.back() == '%') {
      const double pct = std::stod(s.substr(0, s.size() - 1), &used);
      if (used + 1 != s.size() || pct < 0 || pct > 100) throw std::invalid_argument(s);
      return uint64_t(std::llround(double(packets) * pct / 100.0));
    }
    if (s.empty() || !std::all_of(s.begin(), s.end(), ::isdigit)) throw std::invalid_argument(s);
    const uint64_t n = std::stoull(s, &used);
    if (n > packets) throw InputError("event '" + ev + "': packet " + s + " is past the end of the trace (" +
                                      std::to_string(packets) + " packets)");
    return n;
  } catch (const std::logic_error&) {
    throw InputError("event '" + ev + "': '" + s + "' is neither a packet number nor a percentage");
  }
}

// max/mean of x_t / w_t over tunnels of positive weight in the configuration.
double imbalance(const std::vector<double>& x, const SpreadConf& c) {
  double sum_w = 0, sum_x = 0;
  for (size_t t = 0; t < x.size(); ++t)
    if (c.tunnels[t].weight > 0) sum_w += c.tunnels[t].weight, sum_x += x[t];
  if (sum_x <= 0) return 0;
  double max_r = 0, sum_r = 0;
  int n = 0;
  for (size_t t = 0; t < x.size(); ++t) {
    if (c.tunnels[t].weight == 0) continue;
    const double r = (x[t] / sum_x) / (c.tunnels[t].weight / sum_w);
    max_r = std::max(max_r, r);
    sum_r += r;
    ++n;
  }
  return max_r / (sum_r / n);
}

}  // namespace

std::vector<Event> parse_events(const std::vector<std::string>& texts, const SpreadConf& c, uint64_t packets) {
  std::vector<Event> out;
  size_t unplaced = 0;
  for (const std::string& s : texts) {
    std::istringstream in(s);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    const auto bad = [&](const std::string& why) {
      return InputError("event '" + s + "': " + why +
                        " (expected 'down T [at N]', 'up T [at N]', 'drain T [at N] [for S]' or 'weight T W [at N]')");
    };
    if (w.size() < 2) throw bad("too short");
    Event e{};
    size_t i = 2;
    if (w[0] == "down") e.kind = Event::Kind::kDown;
    else if (w[0] == "up") e.kind = Event::Kind::kUp;
    else if (w[0] == "drain") e.kind = Event::Kind::kDrain;
    else if (w[0] == "weight") e.kind = Event::Kind::kWeight;
    else throw bad("unknown action '" + w[0] + "'");
    e.tunnel = find_tunnel(c, w[1]);
    if (e.kind == Event::Kind::kWeight) {
      if (w.size() < 3 || w[2].empty() || w[2].size() > 7 || !std::all_of(w[2].begin(), w[2].end(), ::isdigit))
        throw bad("weight needs a number from 0 to 1000000");
      e.weight = uint32_t(std::stoul(w[2]));
      if (e.weight > 1000000) throw bad("weight needs a number from 0 to 1000000");
      i = 3;
    }
    e.at = UINT64_MAX;
    std::string suffix;
    for (; i < w.size(); i += 2) {
      if (i + 1 >= w.size()) throw bad("'" + w[i] + "' needs a value");
      if (w[i] == "at" && e.at == UINT64_MAX) {
        e.at = parse_count(w[i + 1], packets, s);
      } else if (w[i] == "for" && e.kind == Event::Kind::kDrain && e.deadline_s < 0) {
        try {
          size_t used = 0;
          e.deadline_s = std::stod(w[i + 1], &used);
          if (used != w[i + 1].size() || !(e.deadline_s >= 0 && e.deadline_s <= 86400)) throw std::invalid_argument("");
        } catch (const std::logic_error&) {
          throw bad("'for' needs seconds from 0 to 86400");
        }
        suffix = " for " + w[i + 1] + " s";
      } else {
        throw bad("unexpected '" + w[i] + "'");
      }
    }
    if (e.at == UINT64_MAX) ++unplaced;
    // The tunnel as "instance/device", the reference that needs no config to read.
    const TunnelConf& tc = c.tunnels[e.tunnel];
    e.text = w[0] + " " + tc.instance + "/" + tc.device + (e.kind == Event::Kind::kWeight ? " " + w[2] : "") + suffix;
    out.push_back(e);
  }
  size_t k = 0;
  for (Event& e : out)
    if (e.at == UINT64_MAX) e.at = packets * ++k / (unplaced + 1);
  for (Event& e : out) e.text += " at " + std::to_string(e.at);  // after "for": reads "drain T for 5 s at N"
  std::stable_sort(out.begin(), out.end(), [](const Event& a, const Event& b) { return a.at < b.at; });
  return out;
}

Result simulate(const Trace& t, const SpreadConf& c, const std::vector<Event>& events, const SimOptions& o) {
  const uint32_t idle_ms = uint32_t(std::llround(c.pin_idle_timeout_s * 1000));
  std::vector<flow::TunnelSpec> specs(c.tunnels.size());
  for (size_t i = 0; i < specs.size(); ++i) specs[i].weight = c.tunnels[i].weight;
  const auto build = [&] {
    try {
      return flow::SelectionTable::build(specs, o.seed, c.table_size);
    } catch (const std::invalid_argument& e) {
      throw InputError(std::string("config: [flow] table_size: ") + e.what());
    }
  };
  auto sel = build();
  const auto apply = [&](const Event& e, uint32_t now) {
    switch (e.kind) {
      case Event::Kind::kDown: specs[e.tunnel].set_state(flow::TunnelState::kDown); break;
      case Event::Kind::kUp: specs[e.tunnel].set_state(flow::TunnelState::kUp); break;
      case Event::Kind::kDrain:
        specs[e.tunnel].set_state(flow::TunnelState::kDraining, e.deadline_s >= 0,
                                  now + uint32_t(std::llround(e.deadline_s * 1000)));
        break;
      case Event::Kind::kWeight: specs[e.tunnel].weight = e.weight; break;
    }
  };
  flow::PinTable pins(o.pin_capacity, idle_ms);

  const size_t nf = t.flows.size();
  std::vector<uint64_t> hash(nf);
  for (size_t f = 0; f < nf; ++f) hash[f] = flow::flow_hash(t.flows[f], o.seed);
  std::vector<flow::TunnelId> last(nf, flow::kNoTunnel);
  std::vector<uint32_t> last_time(nf, 0);
  std::vector<int32_t> pending(nf, -1);  // event whose effect on this flow is still to be observed

  Result r;
  r.seed = o.seed;
  r.tunnels.resize(c.tunnels.size());
  size_t next_event = 0;
  const size_t np = t.packets.size();
  uint64_t h[32];
  flow::TunnelId out[32];
  for (size_t i = 0; i < np;) {
    while (next_event < events.size() && events[next_event].at <= i) {
      const Event& e = events[next_event];
      const uint32_t now = i < np ? t.packets[i].time : (np ? t.packets[np - 1].time : 0);
      apply(e, now);
      sel = build();
      EventResult er{e, now};
      if (o.measure_events) {
        for (size_t f = 0; f < nf; ++f) {
          if (last[f] == flow::kNoTunnel || now - last_time[f] > idle_ms) continue;
          ++er.active_flows;
          er.moved_at_once += pins.peek(*sel, hash[f], now) != last[f];
          pending[f] = int32_t(r.events.size());
        }
      }
      r.events.push_back(er);
      ++next_event;
    }
    // A burst never crosses an event, as the data plane reads one table per burst.
    size_t end = std::min(np, i + 32);
    if (next_event < events.size()) end = std::min<size_t>(end, events[next_event].at);
    const uint16_t n = uint16_t(end - i);
    const uint32_t now = t.packets[i].time;
    for (uint16_t k = 0; k < n; ++k) h[k] = hash[t.packets[i + k].flow];
    pins.assign_burst(*sel, h, n, now, out);
    for (uint16_t k = 0; k < n; ++k) {
      const Trace::Packet& p = t.packets[i + k];
      r.packets++;
      r.bytes += p.bytes;
      const flow::TunnelId tn = out[k];
      if (tn == flow::kNoTunnel) {
        ++r.no_tunnel_packets;
        continue;
      }
      TunnelResult& tr = r.tunnels[tn];
      tr.packets++;
      tr.bytes += p.bytes;
      if (tn != last[p.flow]) tr.flows++;
      if (pending[p.flow] >= 0) {
        EventResult& er = r.events[size_t(pending[p.flow])];
        ++er.seen_again;
        er.moved_observed += tn != last[p.flow];
        pending[p.flow] = -1;
      }
      last[p.flow] = tn;
      last_time[p.flow] = now;
    }
    i = end;
  }
  // Events at the very end (at == packets) still change the final states.
  for (; next_event < events.size(); ++next_event) {
    const Event& e = events[next_event];
    apply(e, np ? t.packets[np - 1].time : 0);
    r.events.push_back(EventResult{e, np ? t.packets[np - 1].time : 0});
  }
  std::vector<double> fl, pk, by;
  for (size_t tn = 0; tn < r.tunnels.size(); ++tn) {
    r.tunnels[tn].pins = pins.tunnel_counters(flow::TunnelId(tn));
    r.tunnels[tn].end_state = specs[tn].state;
    r.tunnels[tn].end_weight = specs[tn].weight;
    fl.push_back(double(r.tunnels[tn].flows));
    pk.push_back(double(r.tunnels[tn].packets));
    by.push_back(double(r.tunnels[tn].bytes));
  }
  r.imbalance = {imbalance(fl, c), imbalance(pk, c), imbalance(by, c)};
  r.counters = pins.counters();
  return r;
}

}  // namespace mg::spread
