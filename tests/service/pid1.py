"""A real systemd as PID 1 of a PID and mount namespace, for the service tests on machines whose PID 1 is not systemd
(containers, CI sandboxes). It runs the host's /lib/systemd/systemd, so units behave as under a booted systemd:
Type=notify, the watchdog, Restart=, ExecReload, StateDirectory=, the sandboxing (ProtectSystem=, PrivateTmp=,
capabilities), journald.

The namespace must not touch the host, whose file systems it shares:
  - /run, /tmp, /var/tmp, /var/lib and /var/log are fresh tmpfs mounts inside it (mount propagation private), so
    no unit's cleanup can reach the host's files there;
  - every unit file on the host is masked in its /run/systemd/system except journald's and the ones `keep` names:
    no tmpfiles, udev, sysctl, modules, repart, timesync, dpdk-init or any other daemon starts, whatever a unit's
    dependencies pull in (targets and slices are only groupings and are left).
/dev/shm and the network namespace stay the host's: a gateway started inside is reached by meshgatectl outside.
Cgroups the manager makes are removed after it is killed.

  with Pid1(keep=["meshgate@.service"], units={"x.service": "..."}) as sd:
      sd.systemctl("start", "meshgate@demo")      # (rc, stdout, stderr)
"""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
KEEP_ALWAYS = ("systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket")
MASK_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".automount", ".swap", ".device")
TARGET = "mg-test.target"


def available():
    """Why a namespaced systemd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for p in ("/lib/systemd/systemd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/systemctl"):
        if not os.path.exists(p):
            return f"{p} is missing"
    if not os.path.isdir("/sys/fs/cgroup"):
        return "no /sys/fs/cgroup"
    return None


def unit_names():
    names = set()
    for d in UNIT_DIRS:
        for p in glob.glob(os.path.join(d, "*")):
            n = os.path.basename(p)
            if n.endswith(MASK_SUFFIXES) and os.path.isfile(p):
                names.add(n)
    return names


def cgroup_dirs():
    return set(glob.glob("/sys/fs/cgroup/*/system.slice") + glob.glob("/sys/fs/cgroup/*/init.scope") +
               glob.glob("/sys/fs/cgroup/system.slice") + glob.glob("/sys/fs/cgroup/init.scope") +
               glob.glob("/sys/fs/cgroup/*/user.slice") + glob.glob("/sys/fs/cgroup/*/machine.slice"))


class Pid1:
    def __init__(self, keep=(), units=None, boot_timeout=60):
        self.keep = set(keep) | set(KEEP_ALWAYS)
        self.units = dict(units or {})
        self.boot_timeout = boot_timeout
        self.proc = None
        self.pid = None
        self.tmp = None

    def __enter__(self):
        self.cgroups_before = cgroup_dirs()
        self.tmp = tempfile.mkdtemp(prefix="mg-pid1-")
        setup = os.path.join(self.tmp, "units")
        os.makedirs(setup)
        for n in sorted(unit_names() - self.keep):
            os.symlink("/dev/null", os.path.join(setup, n))
        for n, text in self.units.items():
            with open(os.path.join(setup, n), "w") as f:
                f.write(text)
        with open(os.path.join(setup, TARGET), "w") as f:
            f.write("[Unit]\nDescription=meshgate service tests\n")
        # The units go into the new /run before /tmp (where they were made) is replaced in turn.
        script = f"""set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system
cp -a {setup}/. /run/systemd/system/
for d in /tmp /var/tmp /var/lib /var/log; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
chmod 1777 /tmp /var/tmp
exec /lib/systemd/systemd --system --unit={TARGET}
"""
        self.console = open(os.path.join(self.tmp, "console"), "w")
        self.proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--mount-proc",
                                      "--propagation", "private", "bash", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        t_end = time.monotonic() + self.boot_timeout
        while time.monotonic() < t_end:
            self.pid = self._find_pid1()
            if self.pid:
                rc, out, _ = self.systemctl("is-system-running", timeout=10)
                if out.strip() in ("running", "degraded"):
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"systemd did not come up in a namespace: {self.console_text()[-1500:]}")

    def _find_pid1(self):
        """The manager: the child of unshare's forked child whose NSpid ends in 1."""
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                with open(status) as f:
                    text = f.read()
            except OSError:
                continue
            ns = [ln for ln in text.splitlines() if ln.startswith("NSpid:")]
            ppid = [ln for ln in text.splitlines() if ln.startswith("PPid:")]
            if not ns or not ppid or ns[0].split()[-1] != "1" or len(ns[0].split()) < 3:
                continue
            if self._descends_from(int(ppid[0].split()[1])):
                return int(status.split("/")[2])
        return None

    def _descends_from(self, pid):
        for _ in range(4):
            if pid == self.proc.pid:
                return True
            try:
                with open(f"/proc/{pid}/status") as f:
                    pid = int(next(ln for ln in f if ln.startswith("PPid:")).split()[1])
            except (OSError, StopIteration):
                return False
        return False

    def console_text(self):
        try:
            with open(os.path.join(self.tmp, "console")) as f:
                return f.read()
        except OSError:
            return ""

    def run(self, argv, timeout=60):
        """argv inside the namespace (its /run, /tmp, PID 1)."""
        p = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p"] + list(argv), capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def systemctl(self, *args, timeout=60):
        return self.run(["systemctl", "--no-pager", *args], timeout=timeout)

    def show(self, unit, *props):
        _, out, _ = self.systemctl("show", unit, "-p", ",".join(props))
        return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)

    def journal(self, unit, *args):
        _, out, _ = self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, *args], timeout=60)
        return out

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)   # unshare and its child; PID 1's death ends the rest
            except ProcessLookupError:
                pass
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=30)
        # Every process of the namespace is gone once PID 1 is; then the cgroups it made can go (deepest first).
        t_end = time.monotonic() + 20
        for top in sorted(cgroup_dirs() - self.cgroups_before):
            for d, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                while time.monotonic() < t_end:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
        self.console.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
