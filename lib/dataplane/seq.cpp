// Outbound sequence numbers across restarts and resets (issue 15): a static key must never meet an IV twice, and
// the IV is the sequence number. Each outbound SA runs under a limit that main raises only after it wrote the
// new limit to the state directory (lib/seqstate); a worker that reaches the limit first drops the packet as
// out_seq_unreserved rather than wait or lock. The next run, or a reset that brings a key back, starts after the
// recorded limit.
#include <fmt/core.h>

#include "dataplane/internal.h"

namespace mg::dp {

bool Dataplane::Impl::seq_begin(const config::SaSpec& spec, esp::Sa& sa,
                                std::unique_ptr<seqstate::Reservation>* res, std::string* err) {
  return seq_begin_key(spec.keymat.bytes(), spec.esn, spec.spi, sa, res, err);
}

bool Dataplane::Impl::seq_begin_key(const std::vector<uint8_t>& keymat, bool esn, uint32_t spi, esp::Sa& sa,
                                    std::unique_ptr<seqstate::Reservation>* res, std::string* err) {
  auto r = std::make_unique<seqstate::Reservation>(*seq_store, seqstate::fingerprint(keymat), esn);
  uint64_t start = 0, limit = 0;
  if (!r->begin(&start, &limit, err)) return false;
  sa.resume_after(start);
  sa.set_seq_limit(limit);
  if (limit == start)
    fmt::print(stderr, "meshgate: SPI {:#x}: every sequence number of its key is used up; its packets drop as "
               "out_seq_overflow until the key is replaced\n", spi);
  *res = std::move(r);
  return true;
}

bool Dataplane::Impl::seq_open(std::string* err) {
  if (opt.unsafe_volatile_seq) {
    fmt::print(stderr, "meshgate: WARNING: unsafe volatile sequence numbers: outbound SAs start at 1 in every "
               "run, so a restart repeats (key, IV) pairs of static keys and exposes their traffic; for labs only\n");
    return true;
  }
  std::string e;
  seq_store = seqstate::Store::open(opt.state_dir, opt.state_dir_create, &e);
  if (!seq_store) {
    *err = fmt::format("{}. Static-key SAs need it so that no restart repeats a (key, IV) pair: give a "
                       "writable --state-dir (or [gateway] state_dir), or, for a lab, --unsafe-no-seq-state", e);
    return false;
  }
  return true;
}

bool Dataplane::Impl::seq_setup(std::string* err) {
  seq_res.resize(gw.tunnels.size());
  seq_failing.assign(gw.tunnels.size(), 0);
  if (!seq_store) return true;
  std::string e;
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    if (!sa_out[t]) continue;  // keyed by IKE: each SA begins when it is installed (keying.cpp)
    if (!seq_begin(gw.tunnels[t].out, *sa_out[t], &seq_res[t], &e)) {
      *err = fmt::format("tunnel '{}' outbound SA: {}", gw.tunnels[t].name, e);
      return false;
    }
  }
  return true;
}

void Dataplane::Impl::seq_poll(double now_s) {
  if (!seq_store) return;
  for (size_t t = 0; t < seq_res.size(); ++t) {
    seqstate::Reservation* r = seq_res[t].get();
    if (r == nullptr || !sa_out[t]) continue;
    uint64_t limit = 0;
    std::string e;
    switch (r->poll(sa_out[t]->last_seq(), now_s, &limit, &e)) {
      case seqstate::Reservation::Poll::kExtended:
        sa_out[t]->set_seq_limit(limit);  // durable by now: the workers may use it
        if (seq_failing[t]) fmt::print(stderr, "meshgate: tunnel '{}': sequence reservation works again\n",
                                       gw.tunnels[t].name);
        seq_failing[t] = 0;
        break;
      case seqstate::Reservation::Poll::kError:
        if (!seq_failing[t])
          fmt::print(stderr, "meshgate: tunnel '{}': cannot reserve more sequence numbers ({}); past {} its packets "
                     "drop as out_seq_unreserved until the write succeeds\n", gw.tunnels[t].name, e, r->limit());
        seq_failing[t] = 1;
        break;
      case seqstate::Reservation::Poll::kNothing:
        break;
    }
  }
}

}  // namespace mg::dp
