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
    log::error(log::Type::kSeq, "SPI {:#x}: every sequence number of its key is used up; its packets drop as "
               "out_seq_overflow until the key is replaced", spi);
  *res = std::move(r);
  return true;
}

bool Dataplane::Impl::seq_open(std::string* err) {
  if (opt.unsafe_volatile_seq) {
    // Before EAL (plain stderr): the text says its level itself.
    log::warning(log::Type::kSeq, "WARNING: unsafe volatile sequence numbers: outbound SAs start at 1 in every "
                 "run, so a restart repeats (key, IV) pairs of static keys and exposes their traffic; for labs only");
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
  seq_slots.assign(gw.tunnels.size(), SeqSlot{});
  seq_gen.assign(gw.tunnels.size(), 0);
  if (!seq_store) return true;
  seq_writer = std::thread([this] { seq_writer_main(); });
  std::string e;
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    if (!sa_out[t]) continue;  // keyed by IKE: each SA begins when it is installed (keying.cpp)
    if (!seq_begin(gw.tunnels[t].out, *sa_out[t], &seq_res[t], &e)) {
      *err = fmt::format("tunnel '{}' outbound SA: {}", gw.tunnels[t].name, e);
      return false;
    }
    log::debug(log::Type::kSeq, "tunnel '{}': outbound sequence numbers continue after {}, reserved up to {}",
               gw.tunnels[t].name, sa_out[t]->last_seq(), sa_out[t]->seq_limit());
  }
  return true;
}

void Dataplane::Impl::seq_writer_main() {
  std::unique_lock lk(seq_mu);
  for (;;) {
    SeqSlot* job = nullptr;
    for (SeqSlot& sl : seq_slots)
      if (sl.busy && !sl.done) job = &sl;
    if (job == nullptr) {
      if (seq_quit) return;
      seq_cv.wait(lk);
      continue;
    }
    const seqstate::Fingerprint fp = job->fp;
    const uint64_t next = job->next;
    lk.unlock();
    std::string e;
    const bool ok = seq_store->save(fp, next, &e);  // the slow part, off main
    lk.lock();
    job->done = true;
    job->ok = ok;
    job->err = std::move(e);
  }
}

void Dataplane::Impl::seq_stop() noexcept {
  if (!seq_writer.joinable()) return;
  {
    std::lock_guard lk(seq_mu);
    seq_quit = true;  // the writer finishes what is in flight, then leaves
  }
  seq_cv.notify_all();
  seq_writer.join();
}

// Main, every loop: takes in the writes that finished (a limit is raised only once it is on disk), and hands the
// writer the extensions now due. Never waits for the disk.
void Dataplane::Impl::seq_poll(double now_s) {
  if (!seq_store) return;
  bool wake = false;
  std::lock_guard lk(seq_mu);
  for (size_t t = 0; t < seq_res.size(); ++t) {
    SeqSlot& sl = seq_slots[t];
    seqstate::Reservation* r = seq_res[t].get();
    if (sl.busy && sl.done) {
      sl.busy = sl.done = false;
      if (sl.gen == seq_gen[t] && r != nullptr && sa_out[t]) {
        if (sl.ok) {
          r->commit(sl.next);
          sa_out[t]->set_seq_limit(sl.next);  // durable: the workers may use it
          if (seq_failing[t])
            log::notice(log::Type::kSeq, "tunnel '{}': sequence reservation works again", gw.tunnels[t].name);
          seq_failing[t] = 0;
        } else {
          if (!seq_failing[t])
            log::error(log::Type::kSeq, "tunnel '{}': cannot reserve more sequence numbers ({}); past {} its packets "
                       "drop as out_seq_unreserved until the write succeeds", gw.tunnels[t].name, sl.err, r->limit());
          seq_failing[t] = 1;
        }
      }
    }
    if (sl.busy || r == nullptr || !sa_out[t]) continue;
    uint64_t next = 0;
    if (!r->plan(sa_out[t]->last_seq(), now_s, &next)) continue;
    sl.busy = true;
    sl.gen = seq_gen[t];
    sl.fp = r->key();
    sl.next = next;
    wake = true;
  }
  if (wake) seq_cv.notify_one();
}

}  // namespace mg::dp
