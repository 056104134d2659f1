// The keying socket: SOCK_SEQPACKET (message boundaries kept, connection-oriented so the plugin knows when meshgate
// went away), non-blocking, polled by main. Peers are checked with SO_PEERCRED: keys may come only from root or
// from meshgate's own user.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "keying/keying.h"

namespace mg::keying {

namespace {

void wipe(void* p, size_t n) noexcept {
  volatile uint8_t* b = static_cast<volatile uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = 0;
}

bool make_addr(const std::string& path, sockaddr_un* a, std::string* err) {
  std::memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a->sun_path) {
    *err = "keying socket path '" + path + "' is empty or longer than " + std::to_string(sizeof a->sun_path - 1);
    return false;
  }
  std::memcpy(a->sun_path, path.data(), path.size());
  return true;
}

// Whether something answers at `a` (a live meshgate already listening there).
bool answered(const sockaddr_un& a) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

Server::~Server() { close(); }

bool Server::open(const std::string& path, std::string* err) {
  close();
  sockaddr_un a;
  if (!make_addr(path, &a, err)) return false;
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    struct stat ds;
    if (::stat(dir.c_str(), &ds) != 0) {
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        *err = "keying socket directory " + dir + ": " + std::strerror(errno);
        return false;
      }
    } else if (!S_ISDIR(ds.st_mode)) {
      *err = "keying socket directory " + dir + " is not a directory";
      return false;
    }
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid()) {
      *err = "keying socket " + path + " exists and is not a socket of ours (owner uid " + std::to_string(st.st_uid) +
             "): not replaced";
      return false;
    }
    if (answered(a)) {
      *err = "keying socket " + path + ": another process is listening there (a second meshgate on one socket?)";
      return false;
    }
    ::unlink(path.c_str());  // stale: ours, and nobody answers
  }
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("keying socket: ") + std::strerror(errno);
    return false;
  }
  const mode_t old = ::umask(0177);  // created 0600: no window in which others could connect
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 8) != 0) {
    *err = "keying socket " + path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  fd_ = fd;
  path_ = path;
  return true;
}

void Server::close() noexcept {
  for (const Client& c : clients_) ::close(c.fd);
  clients_.clear();
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
    fd_ = -1;
  }
}

bool Server::connected(uint64_t conn) const noexcept {
  for (const Client& c : clients_)
    if (c.peer.conn == conn) return true;
  return false;
}

int Server::poll(const Handler& h) {
  if (fd_ < 0) return 0;
  for (;;) {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) break;
    ucred cr{};
    socklen_t l = sizeof cr;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &l) != 0 || (cr.uid != 0 && cr.uid != ::geteuid()) ||
        clients_.size() >= 8) {
      ++c_.refused_peers;
      ::close(c);
      continue;
    }
    ++c_.connections;
    clients_.push_back(Client{c, Peer{cr.pid, cr.uid, ++next_conn_}});
  }
  int handled = 0;
  alignas(8) uint8_t buf[MG_KEYING_MAX_MSG + 1];
  for (size_t i = 0; i < clients_.size();) {
    Client& cl = clients_[i];
    bool gone = false;
    for (int k = 0; k < 16; ++k) {  // bounded per poll: one client cannot hold main's loop
      const ssize_t n = ::recv(cl.fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        gone = true;
        break;
      }
      if (n < 0) break;
      ++c_.requests;
      Request req;
      int32_t status = 0;
      std::string why;
      mg_keying_reply r{};
      // MSG_TRUNC: n is the datagram's real length, so an oversized one is refused rather than read in part.
      const bool fits = size_t(n) <= MG_KEYING_MAX_MSG;
      if (fits && validate(buf, size_t(n), &req, &status, &why)) {
        r = h(req, cl.peer);
        ++handled;
      } else {
        ++c_.invalid;
        r = reply(fits ? status : int32_t(MG_KEY_E_MALFORMED), 0,
                  fits ? why : "longer than " + std::to_string(MG_KEYING_MAX_MSG) + " bytes");
      }
      req.wipe();
      wipe(buf, sizeof buf);
      const std::vector<uint8_t> out = encode_reply(req.type, req.seq, r);
      if (::send(cl.fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(out.size()))
        ++c_.replies_failed;
    }
    if (gone) {
      ::close(cl.fd);
      clients_.erase(clients_.begin() + long(i));
    } else {
      ++i;
    }
  }
  return handled;
}

void Server::broadcast_expire(const mg_keying_expire& e) {
  const std::vector<uint8_t> out = encode_expire(e);
  for (const Client& c : clients_)
    if (::send(c.fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(out.size())) ++c_.replies_failed;
}

}  // namespace mg::keying
