"""wsx proxy: distribution over three `wsx serve` backends for each balance mode, and sticky
keys on the consistent-hash ring (a fourth backend takes about a quarter of them)."""
import collections

import wsxtest
from proxy_helpers import (metric, wait_until, backend_of, backends_of, held_backends_of, start_port_backend, start_proxy)


class BalanceTest(wsxtest.WsxTestCase):
    def backends(self, n=3):
        return [start_port_backend(self) for _ in range(n)]

    def test_round_robin_takes_turns(self):
        bs = self.backends()
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--balance", "round-robin")
        got = backends_of(url, 12)
        ports = [p for _, _, p in bs]
        self.assertEqual(collections.Counter(got), {p: 4 for p in ports})
        # Strict turns: every window of three saw three different backends.
        for i in range(0, 12, 3):
            self.assertEqual(set(got[i:i + 3]), set(ports))

    def test_least_conn_fills_the_emptiest(self):
        bs = self.backends()
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--balance", "least-conn")
        # Connections held open: each new one goes where the fewest are.
        got = held_backends_of(url, 15)
        self.assertEqual(collections.Counter(got), {p: 5 for _, _, p in bs})

    def test_least_conn_avoids_a_busy_backend(self):
        bs = self.backends()
        busy = bs[0]
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--balance", "least-conn", "--metrics")
        import asyncio
        import websockets

        async def scenario():
            held = []
            try:
                # Hold connections until three sit on the busy backend.
                while sum(1 for p in held if p[1] == busy[2]) < 3:
                    ws = await websockets.connect(url, open_timeout=5)
                    held.append((ws, int(await asyncio.wait_for(ws.recv(), 5))))
                # Release every connection except those on the busy backend.
                for ws, p in held:
                    if p != busy[2]:
                        await ws.close()
                for _, u, _ in bs[1:]:
                    wait_until(lambda: metric(url, "wsx_proxy_backend_connections", u) == 0, what="closes counted")
                fresh = []
                for _ in range(4):
                    async with websockets.connect(url, open_timeout=5) as ws:
                        fresh.append(int(await asyncio.wait_for(ws.recv(), 5)))
                return fresh
            finally:
                for ws, _ in held:
                    await ws.close()
        fresh = asyncio.run(asyncio.wait_for(scenario(), 30))
        self.assertNotIn(busy[2], fresh)

    def test_random_reaches_every_backend(self):
        bs = self.backends()
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--balance", "random")
        got = collections.Counter(backends_of(url, 60))
        for _, _, p in bs:
            self.assertGreaterEqual(got[p], 8, got)  # expected 20 each; 8 is far in the tail

    def sticky_map(self, url, keys, how):
        out = {}
        for k in keys:
            if how == "query":
                out[k] = backend_of(f"{url}/?user={k}")
            elif how == "header":
                out[k] = backend_of(url + "/", {"X-User": k})
            else:
                out[k] = backend_of(url + "/", {"Cookie": f"a=1; sid={k}"})
        return out

    def test_sticky_keys_stay_and_a_fourth_backend_takes_a_quarter(self):
        bs = self.backends(4)
        three = sum((["--to", u] for _, u, _ in bs[:3]), [])
        # The ring is built from the backends' URLs, whose ports differ from run to run. With 200
        # keys the share that moves to a fourth backend stayed within 13-39% over 2,000 simulated
        # sets of ports (80 keys went as low as 10%).
        keys = [f"user{i}" for i in range(200)]
        p1, url = start_proxy(self, *three, "--sticky", "query:user")
        first = self.sticky_map(url, keys, "query")
        self.assertEqual(len(set(first.values())), 3, "every backend owns some keys")
        again = self.sticky_map(url, keys, "query")
        self.assertEqual(first, again, "sticky keys stay on their backend")
        p1.stop()
        _, url4 = start_proxy(self, *three, "--to", bs[3][1], "--sticky", "query:user")
        after = self.sticky_map(url4, keys, "query")
        moved = [k for k in keys if after[k] != first[k]]
        self.assertTrue(all(after[k] == bs[3][2] for k in moved), "keys move only to the new backend")
        self.assertGreater(len(moved), len(keys) * 0.10, moved)
        self.assertLess(len(moved), len(keys) * 0.42, moved)

    def test_sticky_header_and_cookie(self):
        bs = self.backends()
        to = sum((["--to", u] for _, u, _ in bs), [])
        keys = [f"k{i}" for i in range(12)]
        for how, opt in (("header", "header:X-User"), ("cookie", "cookie:sid")):
            with self.subTest(how=how):
                _, url = start_proxy(self, *to, "--sticky", opt)
                self.assertEqual(self.sticky_map(url, keys, how), self.sticky_map(url, keys, how))


if __name__ == "__main__":
    wsxtest.main()
