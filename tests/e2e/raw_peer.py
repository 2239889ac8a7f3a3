"""Raw WebSocket peers for the protocol conformance tests, and liveness checks.

- Splitter: how a peer writes a byte stream: whole, one byte per send(), or seeded random chunks.
- SplitMode: a TestCase mixin; the class picks the mode, every test's description names it
  (and, for random chunks, the seed that replays it: WSX_SPLIT_SEED=N).
- ScriptedServer: answers the upgrade itself, writes scripted frames through a Splitter and
  records what the client sends back (its Close code, its pongs, whether it closed first).
- Target / idle_problems / stop_problems: after a hostile case, is the process still alive?
Every wait has a deadline; only 127.0.0.1 is used."""
import base64
import hashlib
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time

import wsxtest

MODES = ("whole", "bytes", "random")
MAX_CHUNK = 64  # random chunks are 1..MAX_CHUNK bytes: frame headers and payloads split anywhere
SMALL_STREAM = 2048  # streams up to this size pause between chunks (see Splitter.send)
SPLIT_PAUSE = 0.001
BYTEWISE_LIMIT = 64 << 10  # one-byte writes up to here; the rest of a large write goes in 4 KiB pieces


class Splitter:
    """Writes byte streams to a socket in one of MODES. Chunking is a property of the writer,
    so every frame a test sends (and the upgrade request) is split the same way."""

    def __init__(self, mode="whole", seed=0):
        assert mode in MODES, mode
        self.mode = mode
        self.seed = seed
        self.rng = random.Random(seed)

    def prepare(self, sock):
        """Without TCP_NODELAY the kernel would coalesce the small writes again."""
        if self.mode != "whole":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def chunks(self, data):
        data = memoryview(bytes(data))
        if self.mode == "whole" or len(data) <= 1:
            yield data
            return
        i = 0
        while i < len(data):
            if self.mode == "bytes":
                # Beyond BYTEWISE_LIMIT, one-byte writes cost seconds and test no new parser state.
                n = 1 if i < BYTEWISE_LIMIT else 4096
            else:
                n = self.rng.randint(1, MAX_CHUNK)
            yield data[i:i + n]
            i += n

    def send(self, sock, data):
        # For a short stream (a frame or a handful of them) a 1 ms pause between chunks makes it
        # likely that the peer reads each chunk on its own. It only makes the split likely: no
        # result depends on it, and the peer may still read several chunks at once.
        pause = self.mode != "whole" and len(data) <= SMALL_STREAM
        for k, part in enumerate(self.chunks(data)):
            if pause and k:
                time.sleep(SPLIT_PAUSE)
            sock.sendall(part)

    def describe(self):
        if self.mode == "random":
            return f"random chunks of 1..{MAX_CHUNK} bytes, seed {self.seed} (replay: WSX_SPLIT_SEED={self.seed})"
        return {"whole": "each frame in one write", "bytes": "one byte per write"}[self.mode]


class SplitMode:
    """TestCase mixin: `mode` is set by the class; self.split() makes the test's writer. The seed
    is chosen when the test is made, so it shows in the description of a failure."""

    mode = "whole"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        env = os.environ.get("WSX_SPLIT_SEED")
        self.seed = int(env) if env else random.randrange(1 << 32)
        self._splitters = 0

    def split(self):
        # Each writer of a test gets its own, reproducible stream of chunk sizes.
        self._splitters += 1
        return Splitter(self.mode, self.seed + self._splitters - 1)

    def describe_mode(self):
        return Splitter(self.mode, self.seed).describe()

    def shortDescription(self):
        return f"[{self.describe_mode()}]"


# Frames ------------------------------------------------------------------------------------------
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None):
    """One frame; `mask` is a 4-byte key (client frames) or None."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_frame(code, reason=b""):
    return frame(CLOSE, struct.pack("!H", code) + reason)


def parse_frames(data):
    """Whole frames at the start of `data`: ([(fin, opcode, payload unmasked)], rest)."""
    frames = []
    while len(data) >= 2:
        n, head = data[1] & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                break
            n, head = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, head = struct.unpack("!Q", data[2:10])[0], 10
        key = b"\0\0\0\0"
        if data[1] & 0x80:
            key, head = data[head:head + 4], head + 4
        if len(data) < head + n:
            break
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[head:head + n]))
        frames.append((bool(data[0] & 0x80), data[0] & 0x0F, payload))
        data = data[head + n:]
    return frames, data


def whole_frames(data):
    """(first byte, payload length, mask key or None) of each whole frame in `data`."""
    out = []
    while len(data) >= 2:
        n, head = data[1] & 0x7F, 2
        if n == 126:
            n, head = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, head = struct.unpack("!Q", data[2:10])[0], 10
        key = None
        if data[1] & 0x80:
            key, head = data[head:head + 4], head + 4
        if len(data) < head + n:
            break
        out.append((data[0], n, key))
        data = data[head + n:]
    return out


def frame_heads(data):
    """The first byte (FIN, RSV, opcode) and payload length of each whole frame in `data`."""
    return [(b, n) for b, n, _ in whole_frames(data)]


def read_upgrade_key(sock):
    """Reads an upgrade request from `sock` (its timeout bounds each read); returns its
    Sec-WebSocket-Key, or None when the peer ended first or sent none."""
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        req += chunk
    keys = [l.split(b":", 1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")]
    return keys[0] if keys else None


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


# A scripted server for client-side tests -------------------------------------------------------
class Conn:
    """What one client did: its frames (in order), the code of its first Close (None without
    one), and whether it ended TCP before sending a Close; `raw`: every byte it sent after the
    upgrade request (frame_heads shows the RSV bits)."""

    def __init__(self):
        self.frames = []
        self.raw = bytearray()
        self.close_code = None
        self.eof_without_close = False
        self.script_cut = False
        self.error = None

    def pongs(self):
        return [p for _, op, p in self.frames if op == PONG]


class ScriptedServer:
    """Accepts up to `max_conns` connections on 127.0.0.1; for each: answers the upgrade with 101,
    writes `script` through a Splitter from `make_split()`, then reads the client's frames. A
    complete data message is passed to `reply(opcode, payload)`, whose bytes are written back the
    same way. The client's Close is answered with its own code (unless the script closed first)
    and the server then ends TCP. Nothing here lives longer than `lifetime` seconds."""

    def __init__(self, script, make_split, reply=None, max_conns=1, lifetime=20.0):
        self.script = script
        self.make_split = make_split
        self.reply = reply
        self.max_conns = max_conns
        self.deadline = time.monotonic() + lifetime
        self.conns = []
        self.done = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        workers = []
        while len(self.conns) < self.max_conns and time.monotonic() < self.deadline and not self.done.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            c = Conn()
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(sock, c), daemon=True)
            t.start()
            workers.append(t)
        for t in workers:
            t.join(max(0.0, self.deadline - time.monotonic()))

    def _recv(self, sock):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("server lifetime over")
        sock.settimeout(min(left, 0.5))
        try:
            return sock.recv(65536)
        except socket.timeout:
            return None

    def _serve(self, sock, c):
        split = self.make_split()
        buf = b""
        with sock:
            try:
                split.prepare(sock)
                while b"\r\n\r\n" not in buf:
                    chunk = self._recv(sock)
                    if chunk == b"":
                        return
                    buf += chunk or b""
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                key = next(line.split(b":", 1)[1].strip() for line in lines
                           if line.lower().startswith(b"sec-websocket-key:"))
                split.send(sock, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n"
                                 + self.answer_fields(lines) + b"\r\n")
                sent_close = self._script_closes()
                try:
                    split.send(sock, self.script)
                except (BrokenPipeError, ConnectionResetError):
                    c.script_cut = True  # the client left mid-script; what it sent first is still to read
                self._read_client(sock, c, buf, split, sent_close)
            except (OSError, TimeoutError, StopIteration) as e:
                c.error = repr(e)

    def answer_fields(self, request_lines):
        """Header lines (each ending in CRLF) the 101 carries besides the handshake's own."""
        return b""

    def _script_closes(self):
        frames, _ = parse_frames(bytes(self.script))
        return any(op == CLOSE for _, op, _ in frames)

    def _read_client(self, sock, c, buf, split, sent_close):
        message = b""
        c.raw += buf
        while True:
            frames, buf = parse_frames(buf)
            for fin, op, payload in frames:
                c.frames.append((fin, op, payload))
                if op == CLOSE and c.close_code is None:
                    c.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    if not sent_close and not c.script_cut:
                        split.send(sock, close_frame(c.close_code) if len(payload) >= 2 else frame(CLOSE))
                    return  # the closing handshake is over: the server ends TCP first
                if op in (TEXT, BINARY, CONT):
                    message += payload
                    if op != CONT:
                        opcode = op
                    if fin and self.reply:
                        split.send(sock, self.reply(opcode, message))
                    if fin:
                        message = b""
            try:
                chunk = self._recv(sock)
            except ConnectionResetError:
                chunk = b""
            if chunk == b"":
                c.eof_without_close = True
                return
            buf += chunk or b""
            c.raw += chunk or b""

    def close(self):
        self.done.set()
        self.thread.join(max(1.0, self.deadline - time.monotonic() + 1))
        self.listener.close()


# Liveness ----------------------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")
IDLE_WINDOW = 0.5  # seconds of measurement, not synchronisation
IDLE_MAX_TICKS = 5  # an idle process uses (almost) nothing; a spinning one a whole window's worth


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[11]) + int(fields[12])


def idle_problems(procs):
    """Measures every process's CPU over IDLE_WINDOW; one problem per process that was busy."""
    before = [cpu_ticks(p.pid) for p in procs]
    time.sleep(IDLE_WINDOW)  # the measurement window itself
    problems = []
    for p, b in zip(procs, before):
        a = cpu_ticks(p.pid)
        if a is not None and b is not None and a - b >= IDLE_MAX_TICKS:
            problems.append(f"{name_of(p)} is not idle: {a - b} ticks of CPU in {IDLE_WINDOW}s "
                            f"({100 * (a - b) / TICK / IDLE_WINDOW:.0f}% of a core)")
    return problems


def name_of(popen):
    args = popen.args
    return f"wsx {args[1]}" if len(args) > 1 else str(args)


def stop_problems(procs, timeout=5.0):
    """SIGTERM to each process in turn (front first): each must exit 0 within `timeout`. Any still
    running then is killed. Returns the problems."""
    problems = []
    for p in procs:
        if p.poll() is not None:
            problems.append(f"{name_of(p)} had already exited ({p.returncode})")
            continue
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(timeout)
            if code != 0:
                problems.append(f"{name_of(p)} exited {code} on SIGTERM, wanted 0")
        except subprocess.TimeoutExpired:
            busy = idle_problems([p])
            p.kill()
            p.wait(5)
            problems.append(f"{name_of(p)} still running {timeout}s after SIGTERM ("
                            + (busy[0].split(": ", 1)[1] if busy else "idle") + "; killed)")
    return problems


class Target:
    """What the server-side cases talk to: the process in front (and those behind it), its URL,
    and their stderr lines (read all along, so a full pipe never stalls them)."""

    def __init__(self, url, procs):
        self.url = url
        self.procs = procs  # wsxtest.Process, front first
        self.logs = [wsxtest.LineCollector(p.proc.stderr) for p in procs]
        self.stopped = False

    @property
    def popens(self):
        return [p.proc for p in self.procs]

    # A hung or spinning server never answers; a loaded machine (two test processes per core,
    # the sanitizer build) can take over a second to, so the bound is generous.
    FRESH_CLIENT_TIMEOUT = 5.0

    def echo_problems(self, timeout=FRESH_CLIENT_TIMEOUT):
        from serve_helpers import RawWS
        t0 = time.monotonic()
        w = RawWS.__new__(RawWS)  # so that a socket whose upgrade times out is closed too
        try:
            w.__init__(self.url, timeout=timeout)
            w.send_text("alive?")
            got = w.recv_message(max(0.01, t0 + timeout - time.monotonic()))
        except (AssertionError, OSError, TimeoutError, EOFError) as e:
            return [f"a fresh client was not echoed within {timeout}s: {e!r:.200}"]
        finally:
            if hasattr(w, "sock"):
                w.close()
        if got != (TEXT, b"alive?"):
            return [f"a fresh client got {got!r} instead of its echo"]
        return []

    def liveness_problems(self):
        """(b) idle, then (a) a fresh client is answered. Exited processes are problems too."""
        gone = [f"{name_of(p)} exited ({p.returncode})" for p in self.popens if p.poll() is not None]
        return gone or idle_problems(self.popens) + self.echo_problems()

    def stop(self, timeout=5.0):
        """SIGTERM (see stop_problems); once only: a stopped target has no more problems to report."""
        if self.stopped:
            return []
        self.stopped = True
        problems = stop_problems(self.popens, timeout)
        for p, log in zip(self.procs, self.logs):
            log.wait_for_end(5)  # every process has ended: its stderr ends too
            p.proc.stderr.close()
        return problems

    def log_tail(self, n=5):
        lines = [l.decode("utf-8", "replace") for log in self.logs for l in log.lines[-n:]]
        return f"last log lines: {' | '.join(lines)}" if lines else ""


class ServedCase(SplitMode):
    """The scaffolding of server-side case classes (mix in before wsxtest.WsxTestCase): one
    `wsx serve` per class (start_target; `server_args` are its options), replaced when a case
    leaves it not alive; sockets a case opens are registered with `opened` and closed before
    the liveness check, which every case gets (assert_alive, at its end or in tearDown)."""

    mode = "whole"
    server_args = []

    @classmethod
    def start_target(cls, *extra):
        """Starts what the cases talk to; `extra` are options for it (e.g. a message size limit)."""
        p = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", *cls.server_args, *extra])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        return Target(url, [p])

    @classmethod
    def setUpClass(cls):
        cls.target = cls.start_target()

    @classmethod
    def tearDownClass(cls):
        problems = cls.target.stop()
        if problems:
            raise AssertionError(f"[{cls.mode}] SIGTERM at the end of the class: " + "; ".join(problems))

    def setUp(self):
        super().setUp()
        self._socks = []
        self._checked = True

    def tearDown(self):
        super().tearDown()
        if not self._checked:  # cases that did not check liveness themselves
            self.assert_alive()

    def opened(self, w):
        """Registers a connection of this case's (closed before the liveness check); returns it."""
        self._socks.append(w)
        self._checked = False
        return w

    def assert_alive(self, problems=(), target=None):
        """Closes this test's connections, then checks liveness; fails with every problem seen
        (those of the case first). A class server that is not alive is replaced."""
        for w in self._socks:
            w.close()
        self._socks = []
        self._checked = True
        target = target or self.target
        problems = list(problems)
        alive = target.liveness_problems()
        if alive:
            log = target.log_tail()
            alive += target.stop(timeout=3)
            if target is type(self).target:
                type(self).target = self.start_target()
            alive += [log] if log else []
        if problems or alive:
            self.fail(f"[{self.describe_mode()}] " + "; ".join(problems + alive))

    @staticmethod
    def send_to_the_end(send, *args):
        """send(*args), when the server may end the connection before the last byte is written
        (it failed the connection, or the closing handshake is over): what it answered counts."""
        try:
            send(*args)
        except (BrokenPipeError, ConnectionResetError):
            pass
