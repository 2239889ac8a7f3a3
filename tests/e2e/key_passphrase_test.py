"""An encrypted client key (--key) or server key (--tls-key): its passphrase comes from
--key-passphrase-file (--tls-key-passphrase-file), or is asked once on the terminal; without
either, one line says how to give it (exit 2), never an OpenSSL "UI routines" error. The server here requires a client certificate, so a connection that
succeeds proves the key was opened."""
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WSX, WsxTestCase, certs, main  # noqa: E402

PASSPHRASE = "correct horse battery"
PROMPT = re.compile(rb"(?i)pass ?phrase[^\r\n]*: ?")


class KeyPassphrase(WsxTestCase):
    def setUp(self):
        super().setUp()
        c = certs()
        self.cert = c["client"]
        # The test client key, encrypted (PKCS#8, AES-256) with PASSPHRASE.
        self.key = os.path.join(self.tmp, "client-encrypted.key")
        subprocess.run(["openssl", "pkey", "-in", c["client_key"], "-aes256", "-passout", "pass:" + PASSPHRASE,
                        "-out", self.key], check=True, capture_output=True, timeout=30)
        with open(self.key) as f:
            self.assertIn("ENCRYPTED", f.read())
        self.passfile = os.path.join(self.tmp, "passphrase")
        with open(self.passfile, "w") as f:
            f.write(PASSPHRASE + "\n")
        _, url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"], "--client-ca", c["ca"])
        self.url = url.replace("ws://", "wss://")

    def connect_args(self, *extra):
        return ["connect", self.url, "--cacert", certs()["ca"], "--cert", self.cert, "--key", self.key,
                "--send", "hello", "--expect", "hello", "-n", "1", *extra]

    def run_detached(self, *args):
        """wsx without a controlling terminal (a new session), stdin not a terminal."""
        return subprocess.run([WSX, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              start_new_session=True)

    def test_passphrase_file_opens_the_key(self):
        r = self.run_detached(*self.connect_args("--key-passphrase-file", self.passfile))
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hello\n")

    def test_without_a_terminal_or_file_one_line_says_how(self):
        r = self.run_detached(*self.connect_args())
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("is encrypted", errors[0])
        self.assertIn("--key-passphrase-file FILE", errors[0])
        self.assertNotIn(b"UI routines", r.stderr)

    def test_wrong_passphrase_is_refused_before_connecting(self):
        wrong = os.path.join(self.tmp, "wrong")
        with open(wrong, "w") as f:
            f.write("not it\n")
        r = self.run_detached(*self.connect_args("--key-passphrase-file", wrong))
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("does not open the key", errors[0])

    def test_passphrase_file_without_key_is_a_usage_error(self):
        r = self.run_detached("connect", self.url, "--key-passphrase-file", self.passfile, "--insecure",
                              "--send", "x", "-n", "1")
        self.assertExit(r, 2)
        self.assertIn("--key-passphrase-file needs --key", r.stderr.decode())

    def test_bench_and_proxy_take_the_passphrase_file_too(self):
        r = self.run_detached("bench", self.url, "--cacert", certs()["ca"], "--cert", self.cert, "--key", self.key,
                              "--key-passphrase-file", self.passfile, "-c", "1", "-n", "5")
        self.assertExit(r, 0)
        r = self.run_detached("proxy", "--listen", "127.0.0.1:1", "--to", self.url, "--cacert", certs()["ca"],
                              "--cert", self.cert, "--key", self.key)
        self.assertExit(r, 2)
        self.assertIn("--key-passphrase-file FILE", r.stderr.decode())

    def encrypted(self, key, passphrase, name):
        path = os.path.join(self.tmp, name)
        subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:" + passphrase, "-out", path],
                       check=True, capture_output=True, timeout=30)
        return path

    def test_server_key_takes_a_passphrase_file(self):
        c = certs()
        key = self.encrypted(c["server_key"], PASSPHRASE, "server-encrypted.key")
        r = self.run_detached("serve", "127.0.0.1:0", "--tls-cert", c["server"], "--tls-key", key, "--oneshot")
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("--tls-key-passphrase-file FILE", errors[0])
        p = self.start([WSX, "serve", "127.0.0.1:0", "--tls-cert", c["server"], "--tls-key", key,
                        "--tls-key-passphrase-file", self.passfile], start_new_session=True)
        url = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)").group(1) + "/"
        r = self.wsx("connect", url, "--cacert", c["ca"], "--send", "hi", "--expect", "hi", "-n", "1", timeout=30)
        self.assertExit(r, 0)

    def test_proxy_refuses_two_keys_with_different_passphrases(self):
        c = certs()
        server_key = self.encrypted(c["server_key"], "another one", "server-encrypted.key")
        other = os.path.join(self.tmp, "other-passphrase")
        with open(other, "w") as f:
            f.write("another one\n")
        r = self.run_detached("proxy", "--listen", "wss://127.0.0.1:0", "--tls-cert", c["server"],
                              "--tls-key", server_key, "--tls-key-passphrase-file", other, "--to", self.url,
                              "--cacert", c["ca"], "--cert", self.cert, "--key", self.key,
                              "--key-passphrase-file", self.passfile)
        self.assertExit(r, 2)
        self.assertIn("different passphrases", r.stderr.decode())

    def test_terminal_is_asked_once(self):
        # Under a pseudo-terminal (the controlling terminal of a new session) wsx prompts on it:
        # once, however many times the key is read (the check before connecting, the connection).
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(WSX, [WSX, *self.connect_args()])
            finally:
                os._exit(127)
        output = b""
        prompts = 0
        answered = False
        deadline = time.monotonic() + 30
        status = None
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break
                    output += chunk
                    # Any passphrase prompt (OpenSSL's own says "pass phrase") is answered, so
                    # that a second one is counted rather than waited on.
                    while len(PROMPT.findall(output)) > prompts:
                        prompts += 1
                        # Typed once the prompt has turned echo off (the master shows the
                        # terminal's modes), as a person would: an answer typed earlier is echoed.
                        echo_off_by = time.monotonic() + 5
                        while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < echo_off_by:
                            time.sleep(0.01)
                        os.write(fd, PASSPHRASE.encode() + b"\n")
                        answered = True
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    # Drain what is left.
                    while select.select([fd], [], [], 0.2)[0]:
                        try:
                            chunk = os.read(fd, 4096)
                        except OSError:
                            break
                        if not chunk:
                            break
                        output += chunk
                    break
        finally:
            if status is None:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
                _, status = os.waitpid(pid, 0)
            os.close(fd)
        text = output.decode(errors="replace")
        self.assertTrue(answered, f"no passphrase prompt; output: {text!r}")
        self.assertEqual(prompts, 1, f"asked {prompts} times: {text!r}")
        self.assertIn("Passphrase for --key " + self.key, text)
        self.assertNotIn(PASSPHRASE, text, "the passphrase was echoed")
        self.assertTrue(os.WIFEXITED(status), text)
        self.assertEqual(os.WEXITSTATUS(status), 0, text)
        self.assertIn("hello", text)


if __name__ == "__main__":
    main()
