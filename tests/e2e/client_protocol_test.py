"""RFC 6455 from the client side: a scripted raw server (raw_peer.ScriptedServer) writes valid and
hostile frames, whole, one byte per write or in random chunks (one class each, at the bottom),
to `wsx connect` (with -n and in plain pipe mode) and to `wsx bench`.

- Valid scripts (control frames between fragments, a ping inside a fragmented message): every
  message arrives intact, every ping is answered with its pong.
- Hostile scripts: connect exits 7 within about a second (not 8 at --timeout), with one stderr
  line naming the cause and the close code; the server receives the client's Close with that
  code before the connection ends; every valid message before the fault is on stdout. bench
  ends on time with the fault counted under `protocol` (or `inflate`).
- Either way no client process is left behind: one still running at the deadline is measured
  (spinning or waiting), killed, and reported."""
import json
import os
import re
import struct
import subprocess
import time

import wsxtest
from raw_peer import (BINARY, CLOSE, CONT, PING, PONG, TEXT, ScriptedServer, SplitMode, close_frame, frame,
                      idle_problems)

BEFORE = frame(TEXT, "before")  # a valid message ahead of each fault: it must reach stdout
# seconds: a protocol error ends a run at once (process start included; sanitizer builds start slowly)
QUICK = 4.0 if wsxtest.SANITIZED else 2.0
DEADLINE = 10.0  # seconds: past connect's --timeout 5s, so a timeout shows as one

# name: (script, messages that reach stdout, pings the client must answer). The server closes
# with 1000 after the script.
VALID = {
    "split_ping_inside_a_fragmented_message":
        ([frame(TEXT, "chop", fin=False), frame(PING, "p"), frame(CONT, "ped")], ["chopped"], [b"p"]),
    "control_frames_between_fragments":
        ([frame(TEXT, "a", fin=False), frame(PING, "1"), frame(CONT, "b", fin=False), frame(PONG, "unasked"),
          frame(PING, ""), frame(CONT, "c", fin=False), frame(PING, "3" * 125), frame(CONT, "d")],
         ["abcd"], [b"1", b"", b"3" * 125]),
    "utf8_split_across_fragments":
        ([frame(TEXT, b"\xe2", fin=False), frame(PING, "u"), frame(CONT, b"\x82", fin=False), frame(CONT, b"\xac")],
         ["€"], [b"u"]),
    "8000_fragments":
        ([frame(TEXT if i == 0 else CONT, bytes([65 + i % 26]) * 11, fin=i == 7999) for i in range(8000)],
         ["".join(chr(65 + i % 26) * 11 for i in range(8000))], []),
    "close_then_more_data":  # a server that sends Close and keeps sending: nothing after it counts
        ([frame(TEXT, "one"), close_frame(1000), frame(TEXT, "after"), frame(TEXT, b"\xff"), frame(0x3)], ["one"], []),
}

MASK = b"\x01\x02\x03\x04"
# name: (script after BEFORE, Close code the client must send, what its error line must name,
# extra connect options)
HOSTILE = {
    "text_not_utf8": ([b"\x81\x02\xff\xfe"], 1007, r"(?i)utf-?8", []),
    "invalid_utf8_in_fragments": ([frame(TEXT, "ok", fin=False), frame(CONT, b"\xff")], 1007, r"(?i)utf-?8", []),
    "invalid_utf8_across_a_fragment_boundary":
        ([frame(TEXT, b"\xe2\x82", fin=False), frame(PING, "p"), frame(CONT, b"\x28")], 1007, r"(?i)utf-?8", []),
    "rsv1_without_extension": ([frame(TEXT, "x", rsv=4)], 1002, r"(?i)reserved|rsv", []),
    "rsv2": ([frame(TEXT, "x", rsv=2)], 1002, r"(?i)reserved|rsv", []),
    "rsv3": ([frame(BINARY, "x", rsv=1)], 1002, r"(?i)reserved|rsv", []),
    "reserved_opcode": ([frame(0x3)], 1002, r"(?i)opcode", []),
    "reserved_control_opcode": ([frame(0xB)], 1002, r"(?i)opcode", []),
    "fragmented_ping": ([frame(PING, "p", fin=False)], 1002, r"(?i)fragment", []),
    "fragmented_ping_inside_a_fragmented_message":
        ([frame(TEXT, "a", fin=False), frame(PING, "p", fin=False), frame(CONT, "b")], 1002, r"(?i)fragment", []),
    "ping_over_125_bytes": ([frame(PING, "p" * 126)], 1002, r"(?i)control|125|size", []),
    "masked_server_frame": ([frame(TEXT, "masked", mask=MASK)], 1002, r"(?i)mask", []),
    "continuation_without_start": ([frame(CONT, "orphan")], 1002, r"(?i)continuation", []),
    "new_message_inside_a_fragmented_one": ([frame(TEXT, "a", fin=False), frame(TEXT, "b")], 1002,
                                            r"(?i)continuation|fragment|data frame", []),
    "length_with_the_top_bit_set": ([b"\x82\x7f" + struct.pack("!Q", 1 << 63)], 1002, r"(?i)length|size", []),
    "close_with_1_byte_payload": ([frame(CLOSE, b"\x03")], 1002, r"(?i)close", []),
    "close_code_999": ([close_frame(999)], 1002, r"(?i)close", []),
    "close_code_1005": ([close_frame(1005)], 1002, r"(?i)close", []),
    "close_code_1006": ([close_frame(1006)], 1002, r"(?i)close", []),
    "close_code_5000": ([close_frame(5000)], 1002, r"(?i)close", []),
    "close_reason_not_utf8": ([close_frame(1000, b"\xff")], 1007, r"(?i)utf-?8", []),
    "frame_over_max_message_size": ([frame(TEXT, "x" * 1025)], 1009, r"(?i)too big|max-message-size|1009",
                                    ["--max-message-size", "1KiB"]),
    "fragments_over_max_message_size":
        ([frame(TEXT, "z" * 400, fin=False), frame(PING, "p"), frame(CONT, "z" * 400, fin=False),
          frame(CONT, "z" * 400)], 1009, r"(?i)too big|max-message-size|1009", ["--max-message-size", "1KiB"]),
    "length_alone_over_max_message_size": ([b"\x82\x7f" + struct.pack("!Q", 1 << 40) + b"\0" * 16], 1009,
                                           r"(?i)too big|max-message-size|1009", []),
}


def short(value, n=60):
    r = repr(value)
    return r if len(r) <= n else r[:n] + "..."


class Run:
    """A finished (or killed) client run."""

    def __init__(self, code, out, err, took, hung=None):
        self.code, self.out, self.err, self.took, self.hung = code, out, err, took, hung

    def __str__(self):
        state = f"HUNG ({self.hung})" if self.hung else f"exit {self.code} after {self.took:.1f}s"
        return f"{state}; stderr {self.err.decode(errors='replace')[-300:]!r}"


class ClientProtocolTest(SplitMode, wsxtest.WsxTestCase):
    mode = "whole"

    def serve(self, script, reply=None, max_conns=1):
        srv = ScriptedServer(b"".join(script), self.split, reply=reply, max_conns=max_conns)
        self.addCleanup(srv.close)
        return srv

    def run_client(self, *args, deadline=DEADLINE):
        """Runs wsx with a stdin that stays open, so only wsx's own rules end it. At the deadline
        the process is measured (busy or waiting), killed and reported as hung."""
        r, w = os.pipe()
        t0 = time.monotonic()
        try:
            p = subprocess.Popen([wsxtest.WSX, *args], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            os.close(r)
        try:
            out, err = p.communicate(timeout=deadline)
            return Run(p.returncode, out, err, time.monotonic() - t0)
        except subprocess.TimeoutExpired:
            busy = idle_problems([p])
            p.kill()
            out, err = p.communicate()
            return Run(None, out, err, time.monotonic() - t0,
                       hung=f"still running after {deadline:.0f}s, " + (busy[0] if busy else "idle"))
        finally:
            os.close(w)

    def connect_runs(self, count):
        """The two ways connect is run: until N messages (N more than can come, for a fault), and
        plain pipe mode."""
        return {"-n": ["-n", str(count), "--timeout", "5s"], "pipe": []}

    def report(self, srv, run, problems):
        srv.thread.join(5)
        if problems:
            c = srv.conns[0] if srv.conns else None
            seen = f"server saw {len(c.frames)} frames, Close {c.close_code}" if c else "no connection"
            self.fail(f"[{self.describe_mode()}] " + "; ".join(problems) + f" ({run}; {seen})")

    # Valid scripts --------------------------------------------------------------------------
    def check_valid(self, name):
        script, messages, pings = VALID[name]
        for how, extra in self.connect_runs(len(messages)).items():
            with self.subTest(connect=how):
                srv = self.serve(script + [close_frame(1000)])
                run = self.run_client("connect", srv.url, *extra)
                srv.thread.join(5)
                c = srv.conns[0] if srv.conns else None
                problems = []
                if run.hung:
                    problems.append("connect did not exit")  # what it wrote to stdout may be lost
                elif run.code != 0:
                    problems.append("wanted exit 0")
                if not run.hung and run.out.decode(errors="replace").split("\n") != messages + [""]:
                    problems.append(f"stdout {short(run.out)}, wanted {short(messages)}")
                if c is None or c.pongs() != pings:
                    problems.append(f"pongs {short(c and c.pongs())}, wanted {short(pings)}")
                if c is None or c.close_code != 1000:
                    problems.append(f"client Close {c and c.close_code}, wanted 1000")
                self.report(srv, run, problems)

    # Hostile scripts ------------------------------------------------------------------------
    def check_hostile(self, name):
        script, code, cause, extra_opts = HOSTILE[name]
        for how, extra in self.connect_runs(2).items():
            with self.subTest(connect=how):
                srv = self.serve([BEFORE] + script)
                run = self.run_client("connect", srv.url, *extra, *extra_opts)
                srv.thread.join(5)
                c = srv.conns[0] if srv.conns else None
                problems = []
                if run.hung:
                    problems.append("connect did not exit")  # its stdout and stderr say nothing then
                else:
                    if run.code != 7:
                        problems.append(f"exit {run.code}, wanted 7")
                    elif run.took > QUICK:
                        problems.append(f"exit 7 only after {run.took:.1f}s")
                    lines = run.err.decode(errors="replace").splitlines()
                    if len(lines) != 1 or not lines[0].startswith("wsx: error:") or str(code) not in lines[0] \
                            or not re.search(cause, lines[0]):
                        problems.append(f"stderr is not one error line naming {cause!r} and {code}")
                    if run.out != b"before\n":
                        problems.append(f"stdout {short(run.out)}, wanted b'before\\n'")
                if c is None or c.close_code != code:
                    problems.append(f"client Close {c and c.close_code}, wanted {code}"
                                    + (" (TCP ended without a Close)" if c and c.eof_without_close else ""))
                self.report(srv, run, problems)

    # bench ----------------------------------------------------------------------------------
    def run_bench(self, srv, *args):
        path = os.path.join(self.tmp, "bench.json")
        run = self.run_client("bench", srv.url, "-c", "1", "-d", "2s", "--json", path, *args, deadline=15)
        result = None
        if os.path.exists(path):
            with open(path) as f:
                result = json.load(f)
        return run, result

    def check_bench_hostile(self, name):
        script, code, cause, extra_opts = HOSTILE[name]
        srv = self.serve(script, max_conns=50)
        run, result = self.run_bench(srv)
        srv.done.set()
        problems = []
        if run.hung:
            problems.append("bench did not end")
        elif run.took > 6:
            problems.append(f"bench took {run.took:.1f}s for -d 2s")
        errors = (result or {}).get("errors", {})
        if not (errors.get("protocol", 0) + errors.get("inflate", 0)):
            problems.append("no error under protocol or inflate")
        if problems:
            problems.append(f"errors {errors!r}")
        self.report(srv, run, problems)

    def test_bench_echo_in_fragments_with_pings_between(self):
        def reply(op, payload):
            third = max(1, len(payload) // 3)
            return b"".join([frame(op, payload[:third], fin=False), frame(PING, "b"),
                             frame(CONT, payload[third:2 * third], fin=False), frame(PONG, "x"),
                             frame(CONT, payload[2 * third:])])
        srv = self.serve([], reply=reply, max_conns=1)
        run, result = self.run_bench(srv)
        srv.done.set()
        srv.thread.join(5)
        problems = []
        if run.hung or run.code != 0:
            problems.append("wanted exit 0")
        if not result or result.get("errors") or not result["messages"]["received"]:
            problems.append(f"errors {(result or {}).get('errors')!r}, "
                            f"received {(result or {}).get('messages', {}).get('received')}")
        pongs = srv.conns[0].pongs() if srv.conns else []
        if not pongs or set(pongs) != {b"b"}:
            problems.append(f"pongs {pongs[:5]!r}")
        self.report(srv, run, problems)


def _add_cases():
    for name in VALID:
        setattr(ClientProtocolTest, f"test_connect_{name}", lambda self, n=name: self.check_valid(n))
    for name in HOSTILE:
        setattr(ClientProtocolTest, f"test_connect_{name}", lambda self, n=name: self.check_hostile(n))
        if not HOSTILE[name][3]:  # cases that need client options bench does not have run for connect only
            setattr(ClientProtocolTest, f"test_bench_{name}", lambda self, n=name: self.check_bench_hostile(n))


_add_cases()


class ClientProtocolBytewiseTest(ClientProtocolTest):
    mode = "bytes"


class ClientProtocolRandomChunksTest(ClientProtocolTest):
    mode = "random"


if __name__ == "__main__":
    wsxtest.main()
