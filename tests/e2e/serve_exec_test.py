"""wsx serve --exec: CGI environment, lines both ways, exit status → close code, stderr,
--max-forks, killing children of departed clients, and no zombies ever."""
import os
import sys
import time

import shlex

import wsxtest
from wsxtest import wait_until
from serve_helpers import RawWS, close_and_collect


def sh(script):
    """--exec arguments running `script` with sh -c (one string: its words start with '-')."""
    return ["sh -c " + shlex.quote(script)]


def children(pid):
    """(pid, state) of every live process whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0]))
    return out


def process_group(pgid):
    """Pids of the live (not zombie) processes in process group `pgid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


class ExecTest(wsxtest.WsxTestCase):
    def test_environment_and_lines(self):
        script = ('echo "$REMOTE_ADDR|$SERVER_PORT|$SCRIPT_NAME|$PATH_INFO|$QUERY_STRING|$HTTP_X_TEST|$WSX_SCHEME|'
                  '$REQUEST_METHOD|${REMOTE_PORT:+port}|$FOO|$BAR"; read line; echo "got $line"')
        env = dict(os.environ, FOO="foo-value", BAR="bar-value")
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--path", "/app", "--passenv", "FOO", "--exec",
                        *sh(script)], env=env)
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:(\d+))")
        port = url.group(2)
        ws = RawWS(url.group(1), "/app?a=1&b=two", headers={"X-Test": "hello"})
        op, payload = ws.recv_message()
        self.assertEqual(payload.decode(), f"127.0.0.1|{port}|/app||a=1&b=two|hello|ws|GET|port|foo-value|")
        ws.send_text("hi there")
        self.assertEqual(ws.recv_message(), (1, b"got hi there"))
        self.assertEqual(ws.expect_close(), (1000, ""))
        ws.close()

    def test_proxy_header_does_not_become_http_proxy(self):
        # httpoxy: a client must not choose the child's outgoing proxy.
        p, url = self.start_server("--exec", *sh('echo "[${HTTP_PROXY-unset}] [$HTTP_X_OK]"'))
        ws = RawWS(url, headers={"Proxy": "http://127.0.0.1:9/", "X-Ok": "yes"})
        self.assertEqual(ws.recv_message(), (1, b"[unset] [yes]"))
        ws.close()

    def test_path_info_without_path_option(self):
        p, url = self.start_server("--exec", *sh('echo "$PATH_INFO"'))
        ws = RawWS(url, "/a/b%20c")
        self.assertEqual(ws.recv_message(), (1, b"/a/b c"))
        ws.close()

    def test_exit_status_becomes_close_code(self):
        for script, code, reason in (("exit 0", 1000, ""), ("exit 3", 1011, "exit 3"), ("kill -9 $$", 1011, "signal 9")):
            with self.subTest(script=script):
                p, url = self.start_server("--exec", *sh(script))
                ws = RawWS(url)
                self.assertEqual(ws.expect_close(), (code, reason))
                ws.close()
                p.stop()

    def test_access_log_has_the_code_sent_when_the_client_closed_first(self):
        # The client's Close (1000) gives the child its EOF; it exits 3, so the Close is
        # answered with 1011 "exit 3", and the access log says so rather than the client's 1000.
        for fmt in ("text", "json"):
            with self.subTest(log_format=fmt):
                p, url = self.start_server("--log-format", fmt, "--exec", *sh("cat >/dev/null; exit 3"))
                ws = RawWS(url)
                ws.send_text("x")
                ws.send_close(1000)
                self.assertEqual(ws.expect_close(10), (1011, "exit 3"))
                ws.close()
                if fmt == "text":
                    m = p.wait_for(r'"/" .* code=(\d+)')
                    self.assertEqual(m.group(1), "1011", m.string)
                    self.assertIn('reason="exit 3"', m.string)
                else:
                    import json
                    m = p.wait_for(r'"type":\s*"close"')
                    entry = json.loads(m.string)
                    self.assertEqual((entry["code"], entry["reason"]), (1011, "exit 3"))

    def test_words_after_double_dash_are_the_command(self):
        # Arguments that look like options (-c, -n) and quotes reach the child unchanged.
        p, url = self.start_server("--exec", "--", "sh", "-c", "read x; echo \"[$x]\" \"$1\"", "argv0", "it's -n")
        ws = RawWS(url)
        ws.send_text("abc")
        self.assertEqual(ws.recv_message(), (1, b"[abc] it's -n"))
        self.assertEqual(ws.expect_close(), (1000, ""))

    def test_shell_style_single_string(self):
        p, url = self.start_server("--exec", "sh -c 'read x; echo \"[$x]\"'")
        ws = RawWS(url)
        ws.send_text("abc")
        self.assertEqual(ws.recv_message(), (1, b"[abc]"))
        self.assertEqual(ws.expect_close(), (1000, ""))

    def test_stderr_to_log_or_client(self):
        p, url = self.start_server("--exec", *sh("echo oops >&2; echo out"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"out"))
        self.assertEqual(ws.expect_close()[0], 1000)
        p.wait_for(r"\[\d+\] oops$")
        p2, url2 = self.start_server("--pass-stderr", "--exec", *sh("echo oops >&2; sleep 0.2; echo out"))
        ws2 = RawWS(url2)
        self.assertEqual(ws2.recv_message(), (1, b"oops"))
        self.assertEqual(ws2.recv_message(), (1, b"out"))

    def test_invalid_utf8_lines_go_as_binary(self):
        # A text message must be UTF-8 (RFC 6455): such a line goes as a binary message, so the
        # client does not fail the connection with 1007 and the lines after it still arrive.
        script = r"printf 'caf\303\251\n\377\376bad\nok\n'; printf '\376err\n' >&2; printf 'tail\377'"
        for extra in ([], ["--pass-stderr"]):
            with self.subTest(extra=extra):
                p, url = self.start_server(*extra, "--exec", *sh(script))
                ws = RawWS(url)
                got, m = ws.messages_until_close()
                self.assertEqual(m[1], 1000)
                expected = [(1, "café".encode()), (2, b"\xff\xfebad"), (1, b"ok"), (2, b"tail\xff")]
                if extra:
                    self.assertIn((2, b"\xfeerr"), got)  # stderr and stdout interleave freely
                    got.remove((2, b"\xfeerr"))
                self.assertEqual(got, expected)
                ws.close()
                p.stop()

    def test_stdin_backlog_pauses_reading(self):
        # A child that does not read: the server stops reading its client instead of keeping
        # every message in memory, and carries on once the child reads.
        import select
        import struct
        fifo = os.path.join(self.tmp, "go")
        os.mkfifo(fifo)
        count, size = 100, 1 << 20
        total = count * size
        p, url = self.start_server("--binary", "--exec", *sh(f"cat {fifo} >/dev/null; head -c {total} | wc -c"))
        ws = RawWS(url)
        frame = struct.pack("!BBQ", 0x82, 0x80 | 127, size) + b"\0\0\0\0" + b"x" * size  # zero mask
        base = wsxtest.rss_kib(p.proc.pid)
        peak = base
        sent = 0
        ws.sock.setblocking(False)

        def pump(stall):
            nonlocal sent, peak
            view = memoryview(frame)
            while sent < count * len(frame):
                _, writable, _ = select.select([], [ws.sock], [], stall)
                if not writable:
                    return False
                sent += ws.sock.send(view[sent % len(frame):])
                peak = max(peak, wsxtest.rss_kib(p.proc.pid))
            return True

        self.assertFalse(pump(1.0), "the server read 100 MiB its child did not take")
        self.assertLess(sent, total // 2)
        if not wsxtest.SANITIZED:
            self.assertLess(peak - base, 40 * 1024, f"server grew by {peak - base} KiB")
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the child waits on it: let it read
        os.close(fd)
        self.assertTrue(pump(10.0), "reading did not resume")
        ws.sock.setblocking(True)
        ws.sock.settimeout(30)
        self.assertEqual(ws.recv_message(30), (2, f"{total}\n".encode()))
        self.assertEqual(ws.expect_close(30), (1000, ""))
        if not wsxtest.SANITIZED:
            self.assertLess(peak - base, 40 * 1024, f"server grew by {peak - base} KiB")
        ws.close()

    def test_long_output_line_is_split_at_max_message_size(self):
        # 3 MB without a newline, with --max-message-size 1MiB: 1 MiB messages, never one 3 MB one.
        n = 3_000_000
        p, url = self.start_server("--max-message-size", "1MiB", "--exec",
                                   *sh(f"head -c {n} /dev/zero | tr '\\0' a; printf 'b\\303\\251\\n'"))
        ws = RawWS(url)
        got, m = ws.messages_until_close()
        self.assertEqual(m[1], 1000)
        self.assertEqual([len(x[1]) for x in got], [1 << 20, 1 << 20, n + 3 - 2 * (1 << 20)])
        self.assertEqual({x[0] for x in got}, {1})
        self.assertEqual(b"".join(x[1] for x in got), b"a" * n + "bé".encode())
        ws.close()

    def test_output_for_messages_before_close_still_arrives(self):
        # 2000 lines and the Close in one write: the child's answers to all of them come first.
        import struct
        p, url = self.start_server("--exec", "cat")
        ws = RawWS(url)
        frames = b"".join(struct.pack("!BB", 0x81, 0x80 | len(f"line {i}")) + b"\0\0\0\0" + f"line {i}".encode()
                          for i in range(2000))
        ws.sock.sendall(frames + struct.pack("!BB", 0x88, 0x80 | 2) + b"\0\0\0\0" + struct.pack("!H", 1000))
        got = []
        while True:
            m = ws.recv_message()
            if m[0] == "close":
                break
            got.append(m[1].decode())
        self.assertEqual(got, [f"line {i}" for i in range(2000)])
        self.assertEqual(m[1], 1000)
        self.assertTrue(ws.wait_eof(5))
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child reaped")

    def test_compressed_client_gets_the_output_for_messages_before_its_close(self):
        # With permessage-deflate the Close waits for the child as well: its answers to every
        # line sent before the Close arrive first, then the Close (the client's own 4001 echoed:
        # the child ended well after its EOF, as without compression).
        import asyncio

        import websockets

        p, url = self.start_server("--compress", "--exec", "cat")

        async def talk():
            ws = await websockets.connect(url, compression="deflate", max_size=None)
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            for i in range(200):
                await ws.send(f"line {i}")
            got, close_code = await close_and_collect(ws, code=4001)
            return ext, got, close_code

        ext, got, code = asyncio.run(asyncio.wait_for(talk(), 30))
        self.assertIn("permessage-deflate", ext)
        self.assertEqual(got, [f"line {i}" for i in range(200)])
        self.assertEqual(code, 4001)
        wait_until(lambda: not children(p.proc.pid), what="child reaped")

    def test_child_that_ignores_eof_is_stopped_after_close(self):
        # A child that never finishes is stopped (--close-grace after its EOF, well within the
        # 5 s close timeout), and the client's Close is answered with its own code.
        p, url = self.start_server("--kill-grace", "200ms", "--exec", *sh("echo up; exec sleep 60"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"up"))
        t0 = time.monotonic()
        ws.send_close(4000)
        self.assertEqual(ws.expect_close(10), (4000, ""))
        self.assertLess(time.monotonic() - t0, 8)
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child stopped")
        p.wait_for(r"code=4000")

    def test_child_that_ignores_stdin_is_stopped_after_close_grace(self):
        # It never reads its stdin: --close-grace after its EOF it gets SIGTERM, and the Close is
        # answered then with the client's code (not after the 5 s close timeout).
        p, url = self.start_server("--close-grace", "300ms", "--exec", "--", "sh", "-c", "echo up; exec sleep 100")
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"up"))
        ws.send_text("not read")
        t0 = time.monotonic()
        ws.send_close(4001)
        self.assertEqual(ws.expect_close(10), (4001, ""))
        self.assertLess(time.monotonic() - t0, 4.0)  # well before the 5 s close timeout, with room for load
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child stopped")

    def test_child_that_ignores_sigterm_gets_sigkill_after_close(self):
        # SIGTERM at --close-grace after the EOF, SIGKILL --kill-grace later.
        p, url = self.start_server("--close-grace", "300ms", "--kill-grace", "300ms", "--exec",
                                   *sh("trap '' TERM; echo up; while :; do sleep 0.05; done"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"up"))
        t0 = time.monotonic()
        ws.send_close(1000)
        self.assertEqual(ws.expect_close(10), (1000, ""))
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.5, "two graces: SIGTERM was ignored")
        self.assertLess(elapsed, 3)
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child killed")

    def test_streaming_child_does_not_delay_the_close(self):
        # A child that prints a line a second and never reads its stdin: `connect -n 1` gets its
        # line, sends Close, and the server answers within the default --close-grace (250 ms)
        # instead of waiting --kill-grace (5 s) for the child. The child, and the `sleep` it
        # runs, are gone afterwards: no zombie, no orphan left in its process group.
        pidfile = os.path.join(self.tmp, "child.pid")
        p, url = self.start_server("--exec", *sh(f"echo $$ > {pidfile}; while :; do echo tick; sleep 1; done"))
        t0 = time.monotonic()
        r = self.wsx_open_stdin("connect", url, "-n", "1", timeout=30)
        elapsed = time.monotonic() - t0
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"tick\n")
        self.assertLess(elapsed, 4.0, "the Close waited for the child")
        with open(pidfile) as f:
            group = int(f.read())
        wait_until(lambda: not children(p.proc.pid), what="child reaped")
        wait_until(lambda: not process_group(group), what="no process left in the child's group")
        p.wait_for(r'"/" .* code=1000$')

    def test_lines_written_before_and_while_stopping_precede_the_close(self):
        # What the child wrote before the Close, and what it writes as it is stopped (its TERM
        # trap), reaches the client before the Close answer, which carries the client's code.
        p, url = self.start_server("--exec", *sh("trap 'echo bye; exit 0' TERM; echo one; echo two; echo three; "
                                                 "while :; do sleep 0.05; done"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"one"))
        t0 = time.monotonic()
        ws.send_close(4000)
        got, close = ws.messages_until_close()
        self.assertLess(time.monotonic() - t0, 4.0)
        self.assertEqual(got, [(1, b"two"), (1, b"three"), (1, b"bye")])
        self.assertEqual(close, ("close", 4000, ""))
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child stopped")

    def test_child_that_takes_no_input_does_not_delay_the_close(self):
        # 256 KiB the child never reads (more than a pipe holds) before the Close: its EOF cannot
        # be written after them, so after --close-grace without progress its input is given up and
        # it is stopped; the Close is answered then, not after the 5 s close timeout.
        p, url = self.start_server("--exec", *sh("echo up; exec sleep 100"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"up"))
        for _ in range(4):
            ws.send_text("x" * 65536)
        t0 = time.monotonic()
        ws.send_close(4002)
        self.assertEqual(ws.expect_close(10), (4002, ""))
        self.assertLess(time.monotonic() - t0, 4.0, "the Close waited for the close timeout")
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child stopped")

    def test_a_child_still_reading_after_the_close_gets_all_its_input(self):
        # The child reads slowly (4 KiB every 20 ms): input it is still taking is not given up
        # after --close-grace, however long the whole takes; it ends well, so the answer echoes
        # the client's code.
        child = ("import os, sys, time\nn = 0\nwhile True:\n    b = os.read(0, 4096)\n    if not b: break\n"
                 "    n += len(b)\n    time.sleep(0.02)\nprint(n, flush=True)\n")
        p, url = self.start_server("--close-grace", "600ms", "--exec", "--", sys.executable, "-c", child)
        ws = RawWS(url)
        for _ in range(4):
            ws.send_text("x" * 65535)
        ws.send_close(4002)
        got, close = ws.messages_until_close()
        self.assertEqual(got, [(1, b"262144")])  # 4 x 65535 bytes and their 4 newlines
        self.assertEqual(close, ("close", 4002, ""))
        ws.close()
        wait_until(lambda: not children(p.proc.pid), what="child stopped")

    def test_close_grace_lets_a_child_finish_its_last_lines(self):
        # A child that takes a moment after its EOF (a summary) is given --close-grace for it.
        p, url = self.start_server("--close-grace", "3s", "--exec", *sh("cat >/dev/null; sleep 0.5; echo summary"))
        ws = RawWS(url)
        ws.send_text("x")
        ws.send_close(1000)
        got, close = ws.messages_until_close()
        self.assertEqual(got, [(1, b"summary")])
        self.assertEqual(close, ("close", 1000, ""))
        ws.close()

    def test_close_grace_needs_exec(self):
        r = self.wsx("serve", "127.0.0.1:0", "--close-grace", "1s")
        self.assertExit(r, 2)
        self.assertIn(b"--close-grace only applies to --exec", r.stderr)

    def test_help_example_answers_each_line(self):
        # The example of `wsx serve --help`: a filter that buffers its output needs stdbuf.
        help_text = self.wsx("serve", "--help").stdout.decode()
        self.assertIn("--exec 'stdbuf -oL tr a-z A-Z'", help_text)
        p, url = self.start_server("--exec", "stdbuf -oL tr a-z A-Z")
        ws = RawWS(url)
        ws.send_text("hello")
        self.assertEqual(ws.recv_message(), (1, b"HELLO"))
        ws.send_text("again")
        self.assertEqual(ws.recv_message(), (1, b"AGAIN"))
        ws.send_close()
        self.assertEqual(ws.expect_close(), (1000, ""))
        ws.close()

    def test_binary_mode(self):
        p, url = self.start_server("--binary", "--exec", "head -c 5")
        ws = RawWS(url)
        ws.send_frame(0x2, b"\x00\x01\x02\x03\x04")
        op, payload = ws.recv_message()
        self.assertEqual((op, payload), (2, b"\x00\x01\x02\x03\x04"))
        self.assertEqual(ws.expect_close()[0], 1000)

    def test_missing_program_is_a_usage_error(self):
        r = self.wsx("serve", "127.0.0.1:0", "--exec", "/nonexistent/prog")
        self.assertExit(r, 2)
        self.assertIn(b"not an executable file", r.stderr)

    def test_nothing_after_double_dash_is_a_usage_error(self):
        r = self.wsx("serve", "127.0.0.1:0", "--exec", "--")
        self.assertExit(r, 2)
        self.assertIn(b"--exec: no command given", r.stderr)

    def test_max_forks_refuses_with_503(self):
        p, url = self.start_server("--max-forks", "1", "--exec", "cat")
        ws = RawWS(url)
        ws.send_text("one")
        self.assertEqual(ws.recv_message(), (1, b"one"))  # the child is surely running now
        second = RawWS(url, expect_upgrade=False)
        self.assertEqual(second.status, 503)
        self.assertIn("too many processes", second.buf.decode() + second.response_head)
        self.assertRegex(second.response_head, r"(?i)(^|\r\n)retry-after: 1(\r\n|$)")
        ws.send_close()
        ws.expect_close()
        ws.close()
        # Once the first child has been reaped, a new client gets through.
        wait_until(lambda: not children(p.proc.pid), what="child reaped")
        third = RawWS(url)
        third.send_text("three")
        self.assertEqual(third.recv_message(), (1, b"three"))

    def test_max_forks_holds_under_concurrent_upgrades(self):
        # Eight upgrades sent at the same moment: exactly --max-forks of them get a process.
        import socket
        import base64
        p, url = self.start_server("--threads", "2", "--max-forks", "2", "--exec", "--", "sleep", "30")
        host, port = url[len("ws://"):].rstrip("/").split(":")
        socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(8)]
        try:
            requests = [(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode() for _ in socks]
            for sock, req in zip(socks, requests):
                sock.sendall(req)
            statuses = []
            for sock in socks:
                head = b""
                deadline = time.monotonic() + 10
                while b"\r\n" not in head and time.monotonic() < deadline:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                statuses.append(int(head.split()[1]))
            self.assertEqual(sorted(statuses), [101, 101] + [503] * 6)
            wait_until(lambda: len(children(p.proc.pid)) == 2, what="two children")
            self.assertEqual(len(children(p.proc.pid)), 2)
        finally:
            for sock in socks:
                sock.close()
        # The slots come back once the children are gone.
        wait_until(lambda: not children(p.proc.pid), timeout=15, what="children reaped")
        ws = RawWS(url)
        self.assertEqual(ws.status, 101)
        ws.close()

    def test_child_killed_when_client_leaves(self):
        # The child ignores SIGTERM, so only SIGKILL after --kill-grace ends it.
        p, url = self.start_server("--kill-grace", "300ms", "--exec", *sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"))
        ws = RawWS(url)
        self.assertEqual(ws.recv_message(), (1, b"ready"))
        self.assertEqual(len(children(p.proc.pid)), 1)
        ws.close()
        wait_until(lambda: not children(p.proc.pid), timeout=10, what="child gone")

    def test_no_zombies_after_200_cycles(self):
        p, url = self.start_server("-q", "--exec", "cat")
        for i in range(200):
            ws = RawWS(url)
            if i % 2:
                ws.send_close()  # half leave politely, half just drop the connection
            ws.close()
            if i % 50 == 0:
                zombies = [c for c in children(p.proc.pid) if c[1] == "Z"]
                self.assertLessEqual(len(zombies), 5, f"zombies piling up: {zombies}")
        wait_until(lambda: not children(p.proc.pid), timeout=15, what="all children reaped")
        self.assertIsNone(p.proc.poll())


if __name__ == "__main__":
    wsxtest.main()
