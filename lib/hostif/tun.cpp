// A tunnel's kernel interface: a TUN device of its own (hostif.h Tun).
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

#include "hostif/hostif.h"

namespace mg::hostif {

std::unique_ptr<Tun> Tun::open(const std::string& name, std::string* err) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *err = "tunnel interface '" + name + "': not a kernel interface name";
    return nullptr;
  }
  if (if_nametoindex(name.c_str()) != 0) {
    *err = "tunnel interface '" + name + "': an interface of that name exists already (not ours: remove it or "
           "choose another name)";
    return nullptr;
  }
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *err = "tunnel interface '" + name + "': /dev/net/tun: " + std::strerror(errno);
    return nullptr;
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    *err = "tunnel interface '" + name + "': TUNSETIFF: " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  const int ifindex = int(if_nametoindex(name.c_str()));
  if (ifindex == 0) {
    *err = "tunnel interface '" + name + "': made, but the kernel does not know its index";
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<Tun>(new Tun(fd, ifindex, name));
}

Tun::~Tun() {
  if (fd_ >= 0) ::close(fd_);
}

long Tun::read(uint8_t* buf, size_t cap) noexcept {
  const ssize_t n = ::read(fd_, buf, cap);
  if (n >= 0) return long(n);
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

bool Tun::write(const uint8_t* p, size_t n) noexcept {
  return ::write(fd_, p, n) == ssize_t(n);
}

bool Tun::disable_ipv6(std::string* err) noexcept {
  const std::string path = "/proc/sys/net/ipv6/conf/" + name_ + "/disable_ipv6";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return true;  // no IPv6 in this kernel (or namespace)
    *err = path + ": " + std::strerror(errno);
    return false;
  }
  const bool ok = ::write(fd, "1", 1) == 1;
  if (!ok) *err = path + ": " + std::strerror(errno);
  ::close(fd);
  return ok;
}

}  // namespace mg::hostif
