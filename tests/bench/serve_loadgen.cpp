// A small epoll WebSocket echo load generator for tests/bench/serve_bench.py: independent of
// wsx's own code, so it can measure any echo server. Single-threaded.
//
//   serve_loadgen HOST PORT MODE CONNS INFLIGHT SIZE SECONDS
//     MODE: text | binary (echo throughput, INFLIGHT messages outstanding per connection)
//           handshake (CONNS concurrent clients, each: connect, upgrade, close; INFLIGHT ignored)
//           idle (CONNS upgraded silent connections held for SECONDS; prints "ready N")
//           latency (open loop: INFLIGHT messages per second in total, spread over CONNS, each
//                    sent at its own due time (no bursts: the loop sleeps until the next one is
//                    due with nanosecond timeouts); prints p50/p99 round trip in us)
// Prints one JSON line: {"messages": N, "seconds": S, "rate": N/S, "bytes": B}.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace {
using clk = std::chrono::steady_clock;

std::string frame(bool binary, std::size_t size) {
    std::string f;
    f.push_back(static_cast<char>(binary ? 0x82 : 0x81));
    if (size < 126) {
        f.push_back(static_cast<char>(0x80 | size));
    } else if (size < 65536) {
        f.push_back(static_cast<char>(0x80 | 126));
        f.push_back(static_cast<char>(size >> 8));
        f.push_back(static_cast<char>(size & 0xff));
    } else {
        f.push_back(static_cast<char>(0x80 | 127));
        for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
    }
    f.append(4, '\0');            // masking key 0: the payload goes unchanged (still a masked frame)
    f.append(size, 'x');
    return f;
}

const char* request =
    "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct conn {
    int fd = -1;
    bool upgraded = false;
    std::string in, out;
};

int open_conn(const sockaddr_in& addr) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        std::perror("connect");
        std::exit(1);
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void write_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EAGAIN) {
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, 1000);
            continue;
        }
        if (n <= 0) {
            std::perror("write");
            std::exit(1);
        }
        off += static_cast<std::size_t>(n);
    }
}

// Blocking upgrade: read until the end of the 101 response; returns leftover bytes.
std::string upgrade(int fd) {
    write_all(fd, request);
    std::string buf;
    char tmp[4096];
    while (buf.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n <= 0) {
            std::fprintf(stderr, "upgrade failed\n");
            std::exit(1);
        }
        buf.append(tmp, static_cast<std::size_t>(n));
    }
    if (buf.compare(0, 12, "HTTP/1.1 101") != 0) {
        std::fprintf(stderr, "upgrade refused: %s\n", buf.substr(0, buf.find('\r')).c_str());
        std::exit(1);
    }
    return buf.substr(buf.find("\r\n\r\n") + 4);
}

// Counts complete server frames in `in`, consuming them; `on_payload` sees each payload.
template <class F>
std::size_t parse(std::string& in, std::size_t& bytes, F&& on_payload) {
    std::size_t count = 0, pos = 0;
    for (;;) {
        if (in.size() - pos < 2) break;
        auto b1 = static_cast<unsigned char>(in[pos + 1]);
        std::size_t len = b1 & 0x7f, hdr = 2;
        if (len == 126) {
            if (in.size() - pos < 4) break;
            len = (static_cast<unsigned char>(in[pos + 2]) << 8) | static_cast<unsigned char>(in[pos + 3]);
            hdr = 4;
        } else if (len == 127) {
            if (in.size() - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(in[pos + 2 + i]);
            hdr = 10;
        }
        if (in.size() - pos < hdr + len) break;
        on_payload(std::string_view(in.data() + pos + hdr, len));
        pos += hdr + len;
        bytes += len;
        ++count;
    }
    in.erase(0, pos);
    return count;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s HOST PORT text|binary|handshake CONNS INFLIGHT SIZE SECONDS\n", argv[0]);
        return 2;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
    ::inet_pton(AF_INET, argv[1], &addr.sin_addr);
    std::string mode = argv[3];
    int conns = std::atoi(argv[4]), inflight = std::atoi(argv[5]);
    std::size_t size = std::strtoull(argv[6], nullptr, 10);
    double seconds = std::atof(argv[7]);

    if (mode == "idle") {
        // CONNS upgraded connections that stay silent for SECONDS (for memory per idle connection).
        std::vector<int> fds;
        for (int i = 0; i < conns; ++i) {
            int fd = open_conn(addr);
            upgrade(fd);
            fds.push_back(fd);
        }
        std::printf("ready %d\n", conns);
        std::fflush(stdout);
        ::usleep(static_cast<useconds_t>(seconds * 1e6));
        return 0;
    }
    if (mode == "handshake") {
        // CONNS workers in lock step: each round opens CONNS connections, upgrades, closes them.
        std::size_t done = 0;
        auto t0 = clk::now();
        std::string close_frame("\x88\x82\0\0\0\0\x03\xe8", 8);
        while (std::chrono::duration<double>(clk::now() - t0).count() < seconds) {
            std::vector<int> fds;
            for (int i = 0; i < conns; ++i) {
                int fd = open_conn(addr);
                write_all(fd, request);
                fds.push_back(fd);
            }
            for (int fd : fds) {
                std::string buf;
                char tmp[4096];
                while (buf.find("\r\n\r\n") == std::string::npos) {
                    ssize_t n = ::read(fd, tmp, sizeof tmp);
                    if (n <= 0) return 1;
                    buf.append(tmp, static_cast<std::size_t>(n));
                }
                write_all(fd, close_frame);
            }
            for (int fd : fds) {
                char tmp[256];
                while (::read(fd, tmp, sizeof tmp) > 0) {
                }
                ::close(fd);
                ++done;
            }
        }
        double el = std::chrono::duration<double>(clk::now() - t0).count();
        std::printf("{\"messages\": %zu, \"seconds\": %.3f, \"rate\": %.1f, \"bytes\": 0, \"all\": %zu}\n", done, el,
                    done / el, done);
        return 0;
    }

    if (mode == "latency") {
        // Open loop at a fixed total rate; each payload carries its send time.
        const double rate = inflight;
        std::vector<conn> cs(static_cast<std::size_t>(conns));
        int ep = ::epoll_create1(0);
        for (int i = 0; i < conns; ++i) {
            auto& c = cs[static_cast<std::size_t>(i)];
            c.fd = open_conn(addr);
            c.in = upgrade(c.fd);
            ::fcntl(c.fd, F_SETFL, O_NONBLOCK);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u32 = static_cast<uint32_t>(i);
            ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
        }
        size = std::max<std::size_t>(size, 20);
        std::vector<double> lat;
        std::size_t bytes = 0, sent = 0, next_conn = 0;
        std::vector<epoll_event> evs(256);
        std::vector<char> buf(1 << 16);
        auto t0 = clk::now();
        auto ns_since = [&](clk::time_point t) {
            return static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(t - t0).count());
        };
        const double warm = 0.5;
        while (true) {
            auto now = clk::now();
            double el = std::chrono::duration<double>(now - t0).count();
            if (el >= warm + seconds) break;
            auto due = static_cast<std::size_t>(el * rate);
            while (sent < due) {
                char stamp[32];
                std::snprintf(stamp, sizeof stamp, "%020llu", ns_since(clk::now()));
                std::string f = frame(false, size);
                std::copy(stamp, stamp + 20, f.end() - static_cast<std::ptrdiff_t>(size));
                write_all(cs[next_conn].fd, f);
                next_conn = (next_conn + 1) % cs.size();
                ++sent;
            }
            // Sleep until the next send is due (epoll_wait's 1 ms granularity would send 1 ms
            // worth of messages in one burst), or until an echo arrives.
            const double wait_s = std::clamp(static_cast<double>(sent + 1) / rate -
                                                 std::chrono::duration<double>(clk::now() - t0).count(),
                                             0.0, 0.001);
            const timespec ts{0, static_cast<long>(wait_s * 1e9)};
            int n = ::epoll_pwait2(ep, evs.data(), static_cast<int>(evs.size()), &ts, nullptr);
            for (int i = 0; i < n; ++i) {
                auto& c = cs[evs[static_cast<std::size_t>(i)].data.u32];
                ssize_t r;
                while ((r = ::read(c.fd, buf.data(), buf.size())) > 0) c.in.append(buf.data(), static_cast<std::size_t>(r));
                auto recv_ns = ns_since(clk::now());
                parse(c.in, bytes, [&](std::string_view p) {
                    unsigned long long sent_ns = std::strtoull(std::string(p.substr(0, 20)).c_str(), nullptr, 10);
                    if (sent_ns >= static_cast<unsigned long long>(warm * 1e9))
                        lat.push_back(static_cast<double>(recv_ns - sent_ns) / 1000.0);
                });
            }
        }
        std::sort(lat.begin(), lat.end());
        auto pct = [&](double q) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * lat.size()))]; };
        std::printf("{\"messages\": %zu, \"seconds\": %.3f, \"rate\": %.1f, \"bytes\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
                    lat.size(), seconds, lat.size() / seconds, bytes, pct(0.50), pct(0.99));
        return 0;
    }

    const std::string one = frame(mode == "binary", size);
    std::vector<conn> cs(static_cast<std::size_t>(conns));
    int ep = ::epoll_create1(0);
    for (int i = 0; i < conns; ++i) {
        auto& c = cs[static_cast<std::size_t>(i)];
        c.fd = open_conn(addr);
        c.in = upgrade(c.fd);
        ::fcntl(c.fd, F_SETFL, O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<uint32_t>(i);
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    }
    for (auto& c : cs) {
        std::string burst;
        for (int k = 0; k < inflight; ++k) burst += one;
        write_all(c.fd, burst);  // small enough for the socket buffer in every configuration used
    }
    std::size_t messages = 0, bytes = 0, all = 0;  // all: also those of the warm-up
    std::vector<epoll_event> evs(256);
    std::vector<char> buf(1 << 20);
    auto t0 = clk::now();
    bool warm = false;
    clk::time_point start;
    while (true) {
        auto now = clk::now();
        if (!warm && now - t0 > std::chrono::milliseconds(500)) {
            warm = true;  // skip start-up
            messages = bytes = 0;
            start = now;
        }
        if (warm && std::chrono::duration<double>(now - start).count() >= seconds) break;
        int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
        for (int i = 0; i < n; ++i) {
            auto& c = cs[evs[static_cast<std::size_t>(i)].data.u32];
            for (;;) {
                ssize_t r = ::read(c.fd, buf.data(), buf.size());
                if (r > 0) {
                    c.in.append(buf.data(), static_cast<std::size_t>(r));
                    if (static_cast<std::size_t>(r) < buf.size()) break;
                    continue;
                }
                if (r == 0) {
                    std::fprintf(stderr, "server closed a connection\n");
                    return 1;
                }
                break;
            }
            std::size_t got = parse(c.in, bytes, [](std::string_view) {});
            messages += got;
            all += got;
            c.out.clear();
            for (std::size_t k = 0; k < got; ++k) c.out += one;
            if (!c.out.empty()) write_all(c.fd, c.out);
        }
    }
    double el = std::chrono::duration<double>(clk::now() - start).count();
    std::printf("{\"messages\": %zu, \"seconds\": %.3f, \"rate\": %.1f, \"bytes\": %zu, \"all\": %zu}\n", messages, el,
                messages / el, bytes, all);
    return 0;
}
