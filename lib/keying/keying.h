// mg::keying — the keying interface: how a keying daemon (strongSwan's charon with ike/kernel-meshgate) installs,
// rekeys, queries and deletes meshgate's SAs at run time. The wire format is keying_wire.h (plain C, shared with
// the plugin); this header is meshgate's side: the one validation of a message, reply encoding, and the socket
// server main polls. No DPDK, no threads: main calls Server::poll() from its loop.
//
// Ownership: a Request owns copies of what it read, key bytes included; the caller wipes them (wipe()) as soon as
// the SA is made. Nothing here logs, and no error text ever holds key bytes.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "keying/keying_wire.h"

namespace mg::keying {

// key || salt bytes for a wire cipher (0: not a cipher).
size_t key_len(uint8_t cipher) noexcept;
const char* cipher_name(uint8_t cipher) noexcept;
const char* type_name(uint16_t type) noexcept;

struct Request {
  uint16_t type = 0;
  uint32_t seq = 0;
  mg_keying_sa sa{};            // MG_KEY_ADD_SA
  mg_keying_spi_req spi{};      // MG_KEY_GET_SPI
  mg_keying_update update{};    // MG_KEY_UPDATE_SA
  mg_keying_ref ref{};          // MG_KEY_DEL_SA, MG_KEY_QUERY_SA
  void wipe() noexcept;         // the key bytes
};

// Checks one datagram field by field: magic, version, a request type, the exact length of that type, and each
// field's range (direction, cipher, key length for the cipher, SPI non-zero, flags 0/1, ports with UDP
// encapsulation only, address family, replay window 0 or a power of two 64..65536 inbound and 0 outbound,
// padding zero). True: *out holds the request. False: *status is the reply status, *why says what is wrong (never
// key bytes), and out->seq/out->type hold the header's when it was readable, for the reply.
bool validate(const uint8_t* msg, size_t len, Request* out, int32_t* status, std::string* why) noexcept;

// A reply datagram for request (type, seq).
std::vector<uint8_t> encode_reply(uint16_t type, uint32_t seq, const mg_keying_reply& r);
std::vector<uint8_t> encode_expire(const mg_keying_expire& e);
// A reply with status and reason (truncated to fit, NUL-terminated).
mg_keying_reply reply(int32_t status, uint32_t spi, const std::string& reason);

// The listening socket and its connections. Owned by main; not thread-safe.
class Server {
 public:
  struct Peer {
    pid_t pid = 0;
    uid_t uid = 0;
    uint64_t conn = 0;  // this connection's number (from 1, never reused while the server lives)
  };
  // Answers one request; returns the reply. The request's key bytes are wiped after it returns.
  using Handler = std::function<mg_keying_reply(const Request&, const Peer&)>;

  Server() = default;
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens at `path` (mode 0600; its directory is made 0700 when missing). A stale socket there is replaced only
  // when it is a socket owned by this user that nobody answers on; anything else is an error naming it.
  bool open(const std::string& path, std::string* err);
  void close() noexcept;
  bool is_open() const noexcept { return fd_ >= 0; }
  const std::string& path() const noexcept { return path_; }

  // Accepts connections (only root or this process's user: SO_PEERCRED), reads every datagram waiting, validates
  // it and answers: invalid ones without calling `h`. Never blocks. Returns the number of requests handled.
  int poll(const Handler& h);
  // Sends an unsolicited EXPIRE to every connection.
  void broadcast_expire(const mg_keying_expire& e);

  struct Counters {
    uint64_t connections = 0, refused_peers = 0, requests = 0, invalid = 0, replies_failed = 0;
  };
  const Counters& counters() const noexcept { return c_; }
  size_t clients() const noexcept { return clients_.size(); }
  // Whether connection `conn` (Peer::conn) is still open: SAs a daemon installed outlive it, and the caller tells
  // the ones whose daemon is gone from the others.
  bool connected(uint64_t conn) const noexcept;

 private:
  struct Client {
    int fd;
    Peer peer;
  };
  int fd_ = -1;
  std::string path_;
  std::vector<Client> clients_;
  Counters c_;
  uint64_t next_conn_ = 0;
};

}  // namespace mg::keying
