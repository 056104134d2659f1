"""The notify socket of systemd's Type=notify, owned by a test: every datagram a service sends, with the sender's
pid (SCM_CREDENTIALS), as systemd itself receives them. Used by test_notify.py and test_package.py."""
import socket
import struct
import threading
import time


class Listener:
    """The notify socket: every datagram as (monotonic time, sender pid, [lines])."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.msgs, self.lock, self.stop = [], threading.Lock(), False
        self.on_ready = None          # called in this thread when READY=1 arrives (before anything else is read)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        creds_len = struct.calcsize("3i")
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds_len))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:creds_len])[0]
            lines = data.decode(errors="replace").split("\n")
            now = time.monotonic()
            if "READY=1" in lines and self.on_ready:
                self.on_ready()
            with self.lock:
                self.msgs.append((now, pid, lines))

    def snapshot(self):
        with self.lock:
            return list(self.msgs)

    def wait_for(self, pred, timeout, after=0.0):
        """The first message after `after` (monotonic) for which pred(lines) holds, or None at the timeout."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            for m in self.snapshot():
                if m[0] > after and pred(m[2]):
                    return m
            time.sleep(0.02)
        return None

    def count(self, key, t0, t1):
        return sum(1 for t, _, lines in self.snapshot() if t0 <= t < t1 and key in lines)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()
