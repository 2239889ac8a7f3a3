"""The interactive console of `wsx connect`, driven under a pseudo-terminal.

The console starts only when stdin and stdout are both terminals and --jsonl is not given;
otherwise a terminal on stdin is read as a pipe (one message per line, EOF on Ctrl-D).

The output is run through a small line-oriented terminal model (carriage
return, backspace, erase-to-end-of-line, cursor left/right), so assertions see
the lines a user would see rather than readline's redraw sequences.
"""
import asyncio
import codecs
import fcntl
import json
import os
import re
import select
import shutil
import stat
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

WSX = os.environ.get("WSX", "wsx")
DEADLINE = 15.0  # seconds for any single expectation
COLUMNS, ROWS = 160, 50


class MiniTerm:
    """Turns terminal output into the lines it leaves on screen.

    Enough of a terminal for readline on a wide screen: printable text
    overwrites at the cursor, CR goes to column 0, LF commits the line, BS and
    CSI C/D move the cursor, CSI K erases to the end of the line. Other escape
    sequences are dropped.
    """

    CSI = re.compile(r"\x1b\[([0-9;?]*)([ -/]*)([@-~])")
    PARTIAL_CSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*)?$")

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.lines = []     # committed lines
        self.line = []      # the current line, one character per cell
        self.col = 0
        self.pending = ""   # an escape sequence cut between reads

    def feed(self, data):
        text = self.pending + self.decoder.decode(data)
        self.pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = self.CSI.match(text, i)
                if m:
                    self._csi(m.group(1), m.group(3))
                    i = m.end()
                    continue
                if self.PARTIAL_CSI.match(text, i):
                    self.pending = text[i:]  # cut short; wait for the rest
                    return
                i += 2  # ESC = / ESC > and other two-byte sequences
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.lines.append("".join(self.line).rstrip())
                self.line = []
                self.col = 0
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\x07":
                pass
            elif ch >= " ":
                if self.col >= len(self.line):
                    self.line.extend(" " * (self.col - len(self.line) + 1))
                self.line[self.col] = ch
                self.col += 1
            i += 1

    def _csi(self, params, final):
        n = int(params) if params.isdigit() else 1
        if final == "K":
            if params in ("", "0"):
                del self.line[self.col:]
            elif params == "2":
                self.line = []
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)

    def current(self):
        return "".join(self.line).rstrip()


class Console:
    """`wsx connect` running on a pseudo-terminal."""

    def __init__(self, args, env, stdout=None):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.proc = subprocess.Popen([WSX, "connect", *args], stdin=slave, stdout=slave if stdout is None else stdout,
                                     stderr=slave,
                                     env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.term = MiniTerm()
        self.raw = b""
        self.eof = False
        self.seen = 0  # committed lines already matched by expect_line

    def pump(self, timeout):
        """Reads what is available within `timeout` seconds; False at end of output."""
        if self.eof:
            return False
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            data = b""
        if not data:
            self.eof = True
            return False
        self.raw += data
        self.term.feed(data)
        return True

    def wait_for(self, condition, what):
        deadline = _now() + DEADLINE
        while not condition():
            left = deadline - _now()
            if left <= 0 or not self.pump(min(left, 0.5)) and not condition():
                raise AssertionError(f"timed out waiting for {what}; screen so far:\n" + self.screen())
        return True

    def expect_line(self, pattern):
        """Waits for a committed line matching `pattern` after the last one matched; returns its index."""
        rx = re.compile(pattern)

        def found():
            for i in range(self.seen, len(self.term.lines)):
                if rx.search(self.term.lines[i]):
                    self.seen = i + 1
                    return True
            return False

        self.wait_for(found, f"a line matching {pattern!r}")
        return self.seen - 1

    def expect_prompt(self, text=""):
        """Waits until the line being edited shows the prompt followed by `text`."""
        want = ("> " + text).rstrip()
        self.wait_for(lambda: self.term.current() == want, f"the prompt {want!r}")

    def type(self, data):
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def wait_exit(self):
        """Drains the output until the process ends; returns its exit status."""
        deadline = _now() + DEADLINE
        while self.proc.poll() is None:
            left = deadline - _now()
            if left <= 0:
                raise AssertionError("wsx connect did not exit; screen so far:\n" + self.screen())
            if not self.pump(min(left, 0.2)):
                try:
                    self.proc.wait(timeout=max(0.0, deadline - _now()))
                except subprocess.TimeoutExpired:
                    pass
        while self.pump(0):
            pass
        return self.proc.returncode

    def screen(self):
        return "\n".join(self.term.lines[-40:] + [self.term.current()])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def _now():
    return time.monotonic()


class EchoServer:
    """`wsx serve` on a free port."""

    def __init__(self):
        self.proc = subprocess.Popen([WSX, "serve", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = None
        deadline = _now() + DEADLINE
        buf = b""
        fd = self.proc.stderr.fileno()
        while self.url is None:
            left = deadline - _now()
            if left <= 0:
                self.close()
                raise AssertionError(f"wsx serve did not report its port: {buf!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.close()
                    raise AssertionError(f"wsx serve exited: {buf!r}")
                buf += chunk
                m = re.search(rb"listening on (ws://127\.0\.0\.1:\d+)", buf)
                if m:
                    self.url = m.group(1).decode()
        # Keep reading so the server never blocks on a full stderr pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            while os.read(self.proc.stderr.fileno(), 4096):
                pass
        except OSError:
            pass

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


class PushServer:
    """A python websockets server that echoes, records what it receives and
    can push messages to the client on demand."""

    def __init__(self):
        import websockets  # python3-websockets
        self.received = []
        self.client = None
        self.connected = threading.Event()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def handler(ws, *_):
            self.client = ws
            self.connected.set()
            try:
                async for msg in ws:
                    self.received.append(msg)
                    await ws.send(msg)
            except websockets.ConnectionClosed:
                pass  # the test killed the client

        async def main():
            self.server = await websockets.serve(handler, "127.0.0.1", 0)
            self.url = "ws://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
            started.set()

        def run():
            self.loop.run_until_complete(main())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not started.wait(DEADLINE):
            raise AssertionError("the websockets server did not start")

    def push(self, message):
        if not self.connected.wait(DEADLINE):
            raise AssertionError("wsx connect never connected to the websockets server")
        asyncio.run_coroutine_threadsafe(self.client.send(message), self.loop).result(DEADLINE)

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(DEADLINE)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)


class ReplTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wsx-repl-")
        self.history = os.path.join(self.tmp, "state", "history")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.tmp,
            "TERM": "xterm",
            "INPUTRC": "/dev/null",  # no personal key bindings
            "LANG": "C.UTF-8",
        }
        self.cleanups = []
        self.server = EchoServer()
        self.cleanups.append(self.server.close)

    def tearDown(self):
        for c in reversed(self.cleanups):
            c()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def console(self, url=None, *extra):
        c = Console([url or self.server.url, "--history-file", self.history, "--no-color", *extra], self.env)
        self.cleanups.append(c.close)
        c.expect_line(r"^\* connected")
        c.expect_prompt()
        return c

    def test_text_is_echoed_as_incoming(self):
        c = self.console()
        c.type("hello\r")
        c.expect_line(r"^> hello$")
        c.expect_line(r"^< hello$")
        c.expect_prompt()

    def test_json_is_pretty_printed(self):
        c = self.console()
        c.type('{"a":1,"b":[true]}\r')
        i = c.expect_line(r"^< \{$")
        c.expect_line(r"^\s+\}$")
        lines = [line.strip() for line in c.term.lines[i:c.seen]]
        self.assertEqual(lines, ["< {", '"a": 1,', '"b": [', "true", "]", "}"])

    def test_ping_reports_the_pong(self):
        c = self.console()
        c.type("/ping abc\r")
        c.expect_line(r"^\* .*pong.*abc")

    def test_binary_is_hex_dumped(self):
        c = self.console()
        c.type("/binary 00ff41\r")
        c.expect_line(r"^< binary, 3 bytes$")
        c.expect_line(r"^\s+00000000: 00ff 41\s+\.\.A$")

    def test_bad_hex_is_an_error(self):
        c = self.console()
        c.type("/binary 0g\r")
        c.expect_line(r"^! /binary: not hex")

    def test_double_slash_sends_text_starting_with_slash(self):
        c = self.console()
        c.type("//ping x\r")
        c.expect_line(r"^< /ping x$")

    def test_unknown_command_points_at_help(self):
        c = self.console()
        c.type("/frob\r")
        c.expect_line(r"^! unknown command /frob.*/help")
        c.type("/help\r")
        c.expect_line(r"/ping \[data\]")
        c.expect_line(r"/quit")

    def test_invalid_close_code_keeps_the_session(self):
        c = self.console()
        c.type("/close 1005\r")
        c.expect_line(r"^! /close: 1005 may not be sent")
        c.type("still here\r")
        c.expect_line(r"^< still here$")

    def test_close_ends_the_session_cleanly(self):
        c = self.console()
        c.type("/close 1000 bye\r")
        self.assertEqual(c.wait_exit(), 0, c.screen())
        # The user closed it: the console must not blame the server.
        self.assertIn("the server answered our Close 1000", c.screen())
        self.assertNotIn("closed by server", c.screen())

    def test_ctrl_d_quits(self):
        c = self.console()
        c.type("\x04")
        self.assertEqual(c.wait_exit(), 0, c.screen())

    def test_history_is_kept_between_runs(self):
        c = self.console()
        c.type("remember me\r")
        c.expect_line(r"^< remember me$")
        c.expect_prompt()
        c.type("\x04")
        self.assertEqual(c.wait_exit(), 0, c.screen())

        with open(self.history) as f:
            self.assertIn("remember me", f.read().splitlines())
        self.assertEqual(stat.S_IMODE(os.stat(self.history).st_mode), 0o600)

        c = self.console()
        c.type("\x1b[A")  # Up: the last line of the previous run
        c.expect_prompt("remember me")
        c.type("\r")
        c.expect_line(r"^< remember me$")

    def test_incoming_message_does_not_disturb_the_line_being_typed(self):
        push = PushServer()
        self.cleanups.append(push.close)
        c = self.console(push.url)
        c.type("draft")
        c.expect_prompt("draft")
        push.push("pushed")
        c.expect_line(r"^< pushed$")
        c.expect_prompt("draft")
        c.type(" done\r")
        c.expect_line(r"^< draft done$")
        self.assertEqual(push.received, ["draft done"])

    def test_remote_escape_sequences_are_neutralised(self):
        push = PushServer()
        self.cleanups.append(push.close)
        c = self.console(push.url)
        push.push("\x1b[2Jboom\x07")
        c.expect_line(r"^< \\x1b\[2Jboom\\x07$")
        self.assertNotIn(b"\x1b[2Jboom", c.raw)

    def test_keepalive_pongs_are_not_printed(self):
        c = self.console(None, "--ping-interval", "100ms")
        # Poll /stats (bounded) until several keepalive pongs have come back.
        deadline = _now() + DEADLINE
        pongs = 0
        while pongs < 3 and _now() < deadline:
            c.type("/stats\r")
            i = c.expect_line(r"received:")
            c.expect_prompt()  # the whole report is on screen
            m = re.search(r"pings:\s+\d+ sent, (\d+) pongs", "\n".join(c.term.lines[i + 1:]))
            pongs = int(m.group(1)) if m else 0
        self.assertGreaterEqual(pongs, 3, c.screen())
        c.type("/ping mine\r")
        c.expect_line(r"^\* pong 'mine'")
        pong_lines = [l for l in c.term.lines if "pong '" in l]
        self.assertEqual(pong_lines, [l for l in pong_lines if "'mine'" in l], c.screen())

    def test_pipe_mode_escapes_remote_text_on_a_terminal(self):
        push = PushServer()
        self.cleanups.append(push.close)
        c = Console([push.url, "--no-interactive"], self.env)
        self.cleanups.append(c.close)
        push.push("\x1b]0;pwned\x07\x1b[2Jboom")
        c.expect_line(r"^\\x1b\]0;pwned\\x07\\x1b\[2Jboom$")
        self.assertNotIn(b"\x1b]0;pwned", c.raw)
        self.assertNotIn(b"\x1b[2J", c.raw)

    def test_stdout_not_a_terminal_is_pipe_mode(self):
        # `wsx connect URL > log.txt` typed on a terminal: the file gets the data, nothing else.
        path = os.path.join(self.tmp, "log.txt")
        with open(path, "wb") as log:
            c = Console([self.server.url, "--history-file", self.history], self.env, stdout=log)
        self.cleanups.append(c.close)

        def logged():
            with open(path, "rb") as f:
                return f.read()

        c.type("hello\n")
        c.wait_for(lambda: logged() == b"hello\n", "the echo alone in log.txt")
        c.type("\x04")  # EOF on the terminal's line discipline: pipe mode's end of input
        self.assertEqual(c.wait_exit(), 0, c.screen())
        self.assertEqual(logged(), b"hello\n")
        self.assertNotIn("connected", c.screen())

    def test_jsonl_on_a_terminal_is_pipe_mode(self):
        c = Console([self.server.url, "--history-file", self.history, "--jsonl"], self.env)
        self.cleanups.append(c.close)

        def echoed():
            for line in c.term.lines:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("type") == "text" and e.get("dir") == "in" and e.get("data") == "hi":
                    return True
            return False

        c.type("hi\n")
        c.wait_for(echoed, "the JSON line of the echo")
        c.type("\x04")
        self.assertEqual(c.wait_exit(), 0, c.screen())
        self.assertNotIn("* connected", c.screen())
        self.assertFalse([l for l in c.term.lines if l.startswith("> ")], c.screen())

    def test_interactive_and_jsonl_cannot_be_combined(self):
        r = subprocess.run([WSX, "connect", self.server.url, "-i", "--jsonl"], capture_output=True, timeout=DEADLINE)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--jsonl", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
