"""Options that contradict each other are refused before anything connects: one `wsx: error:`
line naming both, exit 2 (before, one of them silently won)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WsxTestCase, main  # noqa: E402

# Nothing listens on port 1: a run that got past its checks would fail with exit 4, not 2.
URL = "ws://127.0.0.1:1/"


class OptionConflicts(WsxTestCase):
    def assertConflict(self, args, *names):
        r = self.wsx(*args, timeout=10)
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr.decode())
        for n in names:
            self.assertIn(n, errors[0])
        self.assertIn("cannot be combined", errors[0])

    def test_auth_and_token(self):
        self.assertConflict(["connect", URL, "--auth", "u:p", "--token", "t", "--send", "x"], "--auth", "--token")
        self.assertConflict(["bench", URL, "--auth", "u:p", "--token", "t", "-n", "1"], "--auth", "--token")

    def test_credentials_in_the_url_and_auth_or_token(self):
        self.assertConflict(["connect", "ws://u:p@127.0.0.1:1/", "--auth", "v:q", "--send", "x"],
                            "--auth", "user:pass@ in the URL")
        self.assertConflict(["connect", "ws://u:p@127.0.0.1:1/", "--token", "t", "--send", "x"],
                            "user:pass@ in the URL", "--token")

    def test_authorization_header_and_token(self):
        self.assertConflict(["connect", URL, "-H", "authorization: Bearer x", "--token", "t", "--send", "x"],
                            "--token", "--header Authorization")

    def test_token_in_the_query_goes_with_basic_auth(self):
        # --token-query puts the token in the URL: no clash with the Authorization header.
        r = self.wsx("connect", URL, "--auth", "u:p", "--token", "t", "--token-query", "access_token",
                     "--send", "x", timeout=10)
        self.assertExit(r, 4)

    def test_secret_and_its_file(self):
        # Given both ways, one would silently win; the file exists, so only the conflict is reported.
        path = os.path.join(self.tmp, "secret")
        with open(path, "w") as f:
            f.write("u:p\n")
        os.chmod(path, 0o600)
        self.assertConflict(["connect", URL, "--token", "t", "--token-file", path, "--send", "x"], "--token", "--token-file")
        self.assertConflict(["bench", URL, "--auth", "u:p", "--auth-file", path, "-n", "1"], "--auth", "--auth-file")
        self.assertConflict(["serve", "127.0.0.1:0", "--jwt-secret", "k", "--jwt-secret-file", path],
                            "--jwt-secret", "--jwt-secret-file")
        self.assertConflict(["relay", "127.0.0.1:0", "--basic-auth", "u:p", "--basic-auth-file", path],
                            "--basic-auth", "--basic-auth-file")

    def test_existing_pairs_are_still_refused(self):
        self.assertConflict(["connect", URL, "--hex", "--base64"], "--hex", "--base64")
        self.assertConflict(["connect", URL, "--binary", "--null"], "--binary", "--null")
        self.assertConflict(["connect", URL, "-i", "--no-interactive"], "--interactive", "--no-interactive")


if __name__ == "__main__":
    main()
