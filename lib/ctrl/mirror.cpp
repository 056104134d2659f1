// mg::ctrl — the mirror: records behind seqlocks, one writer (the owner), any number of lock-free readers.
#include <cstring>

#include "ctrl/ctrl.h"
#include "ctrl/layout.h"

namespace mg::ctrl {

using namespace detail;

namespace {

std::string_view row(const CounterNames& names, uint32_t i) noexcept {
  return std::string_view(names[i], strnlen(names[i], kCounterNameLen));
}

}  // namespace

std::optional<uint32_t> counter_index(const CounterNames& names, uint32_t n, std::string_view name) noexcept {
  if (name.empty()) return std::nullopt;
  n = n < kMaxCounters ? n : kMaxCounters;
  for (uint32_t i = 0; i < n; ++i)
    if (row(names, i) == name) return i;
  return std::nullopt;
}

uint64_t counter(const CounterNames& names, uint32_t n, const uint64_t* values, std::string_view name) noexcept {
  const auto i = counter_index(names, n, name);
  return i ? values[*i] : 0;
}

uint64_t counter(const GatewayInfo& g, std::string_view name) noexcept {
  return counter(g.counter_names, g.n_counters, g.counters, name);
}

uint64_t counter(const GatewayInfo& g, const TunnelInfo& t, std::string_view name) noexcept {
  return counter(g.tunnel_counter_names, g.n_tunnel_counters, t.counters, name);
}

uint64_t counter(const GatewayInfo& g, const WorkerInfo& w, std::string_view name) noexcept {
  return counter(g.worker_counter_names, g.n_worker_counters, w.counters, name);
}

uint64_t counter(const GatewayInfo& g, const PortInfo& p, std::string_view name) noexcept {
  return counter(g.port_counter_names, g.n_port_counters, p.counters, name);
}

std::string counter_name(const CounterNames& names, uint32_t n, uint32_t i) {
  if (i >= n || i >= kMaxCounters) return {};
  return std::string(row(names, i));
}

std::optional<uint32_t> add_counter_name(CounterNames& names, uint32_t* n, std::string_view name) noexcept {
  if (*n >= kMaxCounters) return std::nullopt;
  const size_t len = name.size() < kCounterNameLen ? name.size() : kCounterNameLen;
  std::memset(names[*n], 0, kCounterNameLen);
  std::memcpy(names[*n], name.data(), len);
  return (*n)++;
}

void Block::write_gateway(const GatewayInfo& g) noexcept { mem_->gateway.write(g); }
void Block::write_instance(uint32_t i, const InstanceInfo& r) noexcept {
  if (i < kMaxInstances) mem_->instances[i].write(r);
}
void Block::write_tunnel(uint32_t t, const TunnelInfo& r) noexcept {
  if (t < kMaxTunnels) mem_->tunnels[t].write(r);
}
void Block::write_worker(uint32_t w, const WorkerInfo& r) noexcept {
  if (w < kMaxWorkers) mem_->workers[w].write(r);
}
void Block::write_port(uint32_t p, const PortInfo& r) noexcept {
  if (p < kMaxPorts) mem_->ports[p].write(r);
}
void Block::write_counter_help(const CounterHelp& h) noexcept { mem_->counter_help.write(h); }
bool Block::has_counter_help() const noexcept { return mem_->counter_help.seq.load(std::memory_order_acquire) != 0; }
void Block::set_generation(uint64_t g) noexcept { mem_->generation.store(g, std::memory_order_release); }
uint64_t Block::generation() const noexcept { return mem_->generation.load(std::memory_order_acquire); }

bool Block::read_gateway(GatewayInfo* g) const noexcept { return mem_->gateway.read(g); }
bool Block::read_instance(uint32_t i, InstanceInfo* r) const noexcept {
  return i < kMaxInstances && mem_->instances[i].read(r);
}
bool Block::read_tunnel(uint32_t t, TunnelInfo* r) const noexcept {
  return t < kMaxTunnels && mem_->tunnels[t].read(r);
}
bool Block::read_worker(uint32_t w, WorkerInfo* r) const noexcept {
  return w < kMaxWorkers && mem_->workers[w].read(r);
}
bool Block::read_port(uint32_t p, PortInfo* r) const noexcept {
  return p < kMaxPorts && mem_->ports[p].read(r);
}

bool Block::read_counter_help(CounterHelp* h) const noexcept { return mem_->counter_help.read(h); }

}  // namespace mg::ctrl
