"""Small helper to run QEMU guests from the COLO tests and demo (stdlib only).

    from colo_vm import Vm, QmpError, guest_files

    g = guest_files()
    with Vm(["-M", "pc", "-m", "256", "-kernel", g["vmlinuz"],
             "-initrd", g["initrd"], "-append", "console=ttyS0"]) as vm:
        vm.serial_wait("COLO-GUEST: ready", 120)
        vm.serial_send("echo hello-$((6*7))")
        vm.serial_wait("hello-42", 30)
        print(vm.cmd("query-status")["status"])

Each Vm owns a temp dir (vm.tmpdir, vm.path(name)) holding its QMP socket, its
serial socket, its serial log and QEMU's stdout/stderr; shutdown() removes it.

Every wait takes a timeout and raises TimeoutError naming what it waited for;
nothing sleeps for a fixed time: guests under TCG run at unpredictable speed.

Threading: QMP (cmd, wait_event) is meant to be used from one thread.  The
serial console is drained by a background thread (so a guest writing to its
console never stalls on us), and serial_wait/serial_send may be used from any
thread.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from qmp import Qmp, QmpClosed, QmpError  # noqa: F401 (QmpError: for callers)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
# QEMU_COLO_BINARY: another QEMU, e.g. an installed one (tests/colo/test_install.py).
DEFAULT_BINARY = (os.environ.get("QEMU_COLO_BINARY") or
                  os.path.join(REPO_ROOT, "build", "qemu", "qemu-system-x86_64"))

# Firmware from Debian packages (seabios, ipxe-qemu, qemu-system-data).  QEMU
# run from its build tree only looks under <build>/qemu-bundle/, which the
# build links to these directories; a build dir without those links needs -L.
DEBIAN_FIRMWARE_DIRS = ["/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"]


def default_firmware_dirs(binary):
    """-L directories to pass: none if the binary's qemu-bundle has SeaBIOS."""
    bundle = os.path.join(os.path.dirname(os.path.abspath(binary)), "qemu-bundle")
    for sub in ("usr/share/seabios", "usr/share/qemu", "usr/local/share/qemu"):
        if os.path.exists(os.path.join(bundle, sub, "bios-256k.bin")):
            return []
    return DEBIAN_FIRMWARE_DIRS

DEFAULT_CMD_TIMEOUT = 60.0
POLL_INTERVAL = 0.05


def cache_dir():
    """Where guest/build-guest.sh and guest/build-bootsect.py put their output."""
    return os.path.join(os.environ.get("QEMU_COLO_CACHE") or
                        os.path.join(os.path.expanduser("~"), ".cache", "qemu-colo"),
                        "guest")


def guest_files(flavour="cloud"):
    """Paths of the cached test guest files (they may not exist yet);
    flavour: "cloud" or "generic" (tests/colo/guest/build-guest.sh)."""
    d = cache_dir()
    if flavour != "cloud":
        d = os.path.join(os.path.dirname(d), "guest-" + flavour)
    return {"vmlinuz": os.path.join(d, "vmlinuz"),
            "initrd": os.path.join(d, "initrd.gz"),
            "bootsect": os.path.join(d, "bootsect.img")}


class VmExited(RuntimeError):
    """QEMU exited while we were waiting on it."""


def wait_for(predicate, timeout, what, interval=POLL_INTERVAL):
    """Poll predicate() until it returns something truthy, and return that.

    Raises TimeoutError("... waiting for <what>") after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def _set_pdeathsig():
    # Runs in the child between fork and exec: QEMU gets SIGKILL if the test
    # process dies without cleaning up (e.g. killed by a CI timeout), like
    # libqtest does.  Note: "parent" is the thread that started the Vm.
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:       # never fail the exec over a safety net
        pass


_live_vms = weakref.WeakSet()


@atexit.register
def _cleanup_all():
    for vm in list(_live_vms):
        vm.shutdown()


class Vm:
    """One QEMU process, with QMP and a serial console on unix sockets.

    args:          extra QEMU arguments (more can be added with add_args()
                   before start(); use vm.path() for files in the temp dir).
    binary:        QEMU binary; default $QEMU_COLO_BINARY or
                   build/qemu/qemu-system-x86_64 of this repository.
    name:          used in temp dir names and messages.
    firmware_dirs: -L directories; None = Debian's firmware directories if
                   the binary's qemu-bundle lacks bios-256k.bin, else none.
    start_paused:  leave the guest paused after start().  Otherwise start()
                   issues "cont" (the helper always passes -S so that no
                   serial output is lost before its reader connects; with
                   -incoming, "cont" only means "run when migration ends",
                   exactly QEMU's behaviour without -S).
    prefix:        words put before the binary on the command line, e.g.
                   ["ip", "netns", "exec", "NS"] to run QEMU in a network
                   namespace (the prefix must exec QEMU, so that the pid,
                   kill() and the exit status are QEMU's own).
    """

    def __init__(self, args=(), binary=None, name="vm", firmware_dirs=None,
                 start_paused=False, prefix=(), env=None):
        self.name = name
        self.env = env              # QEMU's environment (None: ours)
        self.prefix = list(prefix)
        self.binary = binary or os.environ.get("QEMU_COLO_BINARY") or DEFAULT_BINARY
        self.args = list(args)
        self.firmware_dirs = (default_firmware_dirs(self.binary) if firmware_dirs is None
                              else firmware_dirs)
        self.start_paused = start_paused
        self.tmpdir = tempfile.mkdtemp(prefix="colo-%s-" % name)
        self.qmp_path = self.path("qmp.sock")
        self.serial_path = self.path("serial.sock")
        self.serial_log_path = self.path("serial.log")
        self.stderr_path = self.path("qemu.log")
        self.proc = None
        self._stderr = None
        self._events = []           # until QMP is connected
        self._qmp = None
        self._serial = None
        self._serial_buf = bytearray()
        self._serial_pos = 0        # serial_wait() searches from here
        self._serial_cond = threading.Condition()
        self._serial_eof = False
        self._serial_thread = None
        self._serial_log = None
        self._closed = False
        _live_vms.add(self)

    # ---- lifecycle -------------------------------------------------------

    def path(self, name):
        """A path inside this VM's temp dir (removed by shutdown())."""
        return os.path.join(self.tmpdir, name)

    def add_args(self, *args):
        self.args.extend(args)

    def command_line(self):
        cmd = self.prefix + [self.binary]
        for d in self.firmware_dirs:
            cmd += ["-L", d]
        # QEMU_COLO_ACCEL=kvm: the KVM runs (tests/colo/run-kvm-tests.sh).
        if os.environ.get("QEMU_COLO_ACCEL"):
            cmd += ["-accel", os.environ["QEMU_COLO_ACCEL"]]
        cmd += ["-S", "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                "-chardev", "socket,id=colo-serial0,path=%s,server=on,wait=off" % self.serial_path,
                "-serial", "chardev:colo-serial0"]
        return cmd + self.args

    def start(self, timeout=30):
        """Start QEMU, connect QMP and the serial console, then run the guest
        (unless start_paused)."""
        if self.proc:
            raise RuntimeError("%s already started" % self.name)
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     env=self.env, preexec_fn=_set_pdeathsig)
        deadline = time.monotonic() + timeout
        try:
            self._qmp = Qmp(self._connect(self.qmp_path, deadline, "QMP socket"),
                            self.name, alive=self._check_alive)
            try:
                self._qmp.greeting(deadline)
            except QmpClosed:
                raise self._closed_qmp("QMP greeting") from None
            self.cmd("qmp_capabilities")
            self._serial = self._connect(self.serial_path, deadline, "serial socket")
            self._serial_log = open(self.serial_log_path, "wb")
            self._serial_thread = threading.Thread(target=self._serial_reader,
                                                   name="%s-serial" % self.name, daemon=True)
            self._serial_thread.start()
            if not self.start_paused:
                self.cmd("cont")
            # Our own start-up (e.g. the RESUME of that "cont") is not news for
            # the caller: a later wait_event("RESUME") must see a new one.
            self.poll_events()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __enter__(self):
        if not self.proc:
            self.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def is_running(self):
        """True while the QEMU process exists (whatever the guest's state)."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Send a signal to QEMU (default SIGKILL: simulate a host dying)."""
        if self.is_running():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait for QEMU to exit; return its exit status (negative = signal)."""
        wait_for(lambda: self.proc.poll() is not None, timeout,
                 "%s (pid %d) to exit" % (self.name, self.proc.pid))
        return self.proc.returncode

    def shutdown(self, timeout=10):
        """Stop QEMU (QMP quit, then SIGTERM, then SIGKILL) and remove the temp
        dir.  Safe to call more than once, and on a VM that never started."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.is_running() and self._qmp:
                try:
                    self.cmd("quit", _timeout=min(timeout, 5))
                    self.proc.wait(timeout)
                except (OSError, QmpError, TimeoutError, VmExited, ValueError,
                        subprocess.TimeoutExpired):
                    pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self.is_running():
                    break
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc:
                self.proc.wait()
        finally:
            for s in (self._qmp and self._qmp.sock, self._serial):
                if s:
                    try:
                        # shutdown() wakes a recv() blocked in another thread;
                        # close() alone does not.
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
            if self._serial_thread:
                self._serial_thread.join(5)
            for f in (self._serial_log, self._stderr):
                if f:
                    f.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            _live_vms.discard(self)

    def qemu_log(self):
        """QEMU's own stdout/stderr so far (for error messages)."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _check_alive(self, what):
        if self.proc.poll() is not None:
            raise VmExited("%s exited with status %s while waiting for %s; QEMU said:\n%s"
                           % (self.name, self.proc.returncode, what, self.qemu_log().strip()))

    def _connect(self, path, deadline, what):
        # The socket file appears once QEMU has parsed its chardevs.
        last_error = None
        while True:
            self._check_alive(what)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError as e:
                s.close()
                last_error = e
            if time.monotonic() >= deadline:
                raise TimeoutError("%s: timed out waiting for %s (%s): %s"
                                   % (self.name, what, path, last_error))
            time.sleep(POLL_INTERVAL)

    # ---- QMP (qmp.Qmp, with QEMU's exit turned into VmExited) ------------

    @property
    def events(self):
        """Events received and not yet consumed."""
        return self._qmp.events if self._qmp else self._events

    @events.setter
    def events(self, value):
        if self._qmp:
            self._qmp.events = value
        else:
            self._events = value

    def _closed_qmp(self, what):
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)   # QMP closes just before QEMU exits
            except subprocess.TimeoutExpired:
                pass
        self._check_alive(what)
        return VmExited("%s: QMP connection closed while waiting for %s"
                        % (self.name, what))

    def _qmp_recv(self, deadline, what):
        """Next QMP message (reply or event), waiting until deadline."""
        try:
            return self._qmp.recv(deadline, what)
        except QmpClosed:
            raise self._closed_qmp(what) from None

    def cmd(self, name, _timeout=DEFAULT_CMD_TIMEOUT, **args):
        """Run a QMP command and return its 'return' value.

        Raises QmpError on an error reply.  Argument names are passed as
        given; for names with dashes use cmd("x", **{"node-name": "n"})."""
        try:
            return self._qmp.cmd(name, _timeout=_timeout, **args)
        except QmpClosed:
            if name == "quit":
                return {}
            raise self._closed_qmp("reply to QMP %s" % name) from None
        except VmExited:
            if name == "quit":
                return {}
            raise

    def hmp(self, command_line, _timeout=DEFAULT_CMD_TIMEOUT):
        """Run a human monitor command and return its text output."""
        return self.cmd("human-monitor-command", _timeout=_timeout,
                        **{"command-line": command_line})

    def wait_event(self, name, timeout, predicate=None):
        """Return (and consume) the first event called name, satisfying
        predicate(event) if given, that arrived since the last one consumed;
        events received meanwhile are kept in self.events."""
        try:
            return self._qmp.wait_event(name, timeout, predicate)
        except QmpClosed:
            raise self._closed_qmp("event %s" % name) from None

    def clear_events(self):
        """Forget the events received so far (call before triggering the
        action whose event you will wait for)."""
        self.poll_events()

    def poll_events(self):
        """Read the events QEMU already sent, without waiting; return and
        clear the buffered ones."""
        try:
            return self._qmp.poll_events()
        except QmpClosed:
            raise self._closed_qmp("pending events") from None

    def wait_for(self, predicate, timeout, what, interval=POLL_INTERVAL):
        """Like the module's wait_for(), but fails early if QEMU exits."""
        def check():
            self._check_alive(what)
            return predicate()
        return wait_for(check, timeout, "%s: %s" % (self.name, what), interval)

    # ---- serial console ----------------------------------------------------

    def _serial_reader(self):
        sock = self._serial
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            with self._serial_cond:
                if not data:
                    self._serial_eof = True
                    self._serial_cond.notify_all()
                    return
                self._serial_buf += data
                self._serial_log.write(data)
                self._serial_log.flush()
                self._serial_cond.notify_all()

    def serial_output(self):
        """Everything the guest wrote on its console so far (kept in memory
        for the VM's life; also in vm.serial_log_path until shutdown)."""
        with self._serial_cond:
            return self._serial_buf.decode("latin-1")

    def serial_mark(self):
        """Make serial_wait() ignore the output so far."""
        with self._serial_cond:
            self._serial_pos = len(self._serial_buf)

    def serial_wait(self, text, timeout):
        """Wait until text (a str, or a compiled str regex) appears on the
        console after the previous match; return the output from there up to
        the end of this match, and continue from there next time."""
        what = "%r on the serial console" % (getattr(text, "pattern", text),)
        deadline = time.monotonic() + timeout
        with self._serial_cond:
            # The buffer only grows: never search the same bytes twice (a
            # chatty guest wakes us once per chunk of output).
            search_from = self._serial_pos
            while True:
                buf = self._serial_buf
                if isinstance(text, str):
                    needle = text.encode("latin-1")
                    i = buf.find(needle, search_from)
                    end = i + len(needle) if i >= 0 else -1
                    search_from = max(search_from, len(buf) - len(needle) + 1)
                else:
                    # latin-1: one char per byte, so offsets match the buffer.
                    m = text.search(buf[self._serial_pos:].decode("latin-1"))
                    end = self._serial_pos + m.end() if m else -1
                if end >= 0:
                    seen = buf[self._serial_pos:end].decode("latin-1")
                    self._serial_pos = end
                    return seen
                if self._serial_eof:
                    # QEMU closes the console when it exits.
                    self._check_alive(what)
                    raise VmExited("%s: serial console closed while waiting for %s"
                                   % (self.name, what))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = buf[-500:].decode("latin-1")
                    raise TimeoutError("%s: timed out after %gs waiting for %s; last output:\n%s"
                                       % (self.name, timeout, what, tail))
                self._serial_cond.wait(remaining)

    def serial_send(self, line):
        """Type a line on the guest console."""
        self._serial.sendall(line.encode() + b"\n")


if __name__ == "__main__":
    # Tiny manual check: python3 colo_vm.py [qemu args...]
    with Vm(sys.argv[1:]) as vm:
        print(vm.cmd("query-status"))
