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
// Prints one JSON line: {"messages": N, "seconds": S, "rate": N/S, "bytes": B, "errors": E, ...}.
//
// It checks the work before it counts it: a handshake counts only with a "101" status and the
// right Sec-WebSocket-Accept, followed by the server's Close; an echo only when it is one whole
// message of the opcode and payload sent (latency: the very message sent on that connection, in
// order); when the time is up it stops sending and waits (5 s at most) for every echo still due,
// and what never comes is lost. Every such failure is an error: counted in "errors", the first
// ones described on stderr, and the exit status is 1 when there was any.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace {
using clk = std::chrono::steady_clock;

// Every failure of the work counts here; the first few are described on stderr.
std::size_t errors = 0;

void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void error(const char* fmt, ...) {
    if (++errors <= 10) {
        std::va_list ap;
        va_start(ap, fmt);
        std::fputs("serve_loadgen: error: ", stderr);
        std::vfprintf(stderr, fmt, ap);
        std::fputc('\n', stderr);
        va_end(ap);
    } else if (errors == 11) {
        std::fputs("serve_loadgen: (further errors are counted, not shown)\n", stderr);
    }
}

std::string frame(unsigned char opcode, std::string_view payload) {
    std::string f;
    const std::size_t size = payload.size();
    f.push_back(static_cast<char>(0x80 | opcode));
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
    f.append(payload);
    return f;
}

const char* request =
    "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
// RFC 6455's example: the accept value for the key above.
constexpr std::string_view accept_value = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct conn {
    int fd = -1;
    bool open = false;
    std::string in, out;
    // The message being assembled from fragments (opcode 0: none).
    unsigned char msg_op = 0;
    std::string msg;
    std::size_t outstanding = 0;              // echo modes: messages sent, not yet echoed
    std::deque<unsigned long long> pending;   // latency mode: send stamps not yet echoed, in order
};

int open_conn(const sockaddr_in& addr) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        std::perror("serve_loadgen: connect");
        std::exit(1);
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{5, 0};  // blocking reads (upgrade, handshake mode) give up after 5 s
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

void write_all(int fd, const std::string& s) {
    std::size_t off = 0;
    int idle = 0;
    while (off < s.size()) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, 1000) == 0 && ++idle == 10) {
                std::fprintf(stderr, "serve_loadgen: error: the server took no data for 10 s\n");
                std::exit(1);
            }
            continue;
        }
        if (n <= 0) {
            std::perror("serve_loadgen: write");
            std::exit(1);
        }
        idle = 0;
        off += static_cast<std::size_t>(n);
    }
}

// Reads an HTTP response head (blocking, 5 s at most per read); empty if the server closed first.
// Whatever follows the head is left in `rest`.
std::string read_head(int fd, std::string& rest) {
    std::string buf;
    char tmp[4096];
    std::size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n <= 0) return {};
        buf.append(tmp, static_cast<std::size_t>(n));
    }
    rest = buf.substr(end + 4);
    buf.resize(end + 2);
    return buf;
}

// Empty when `head` is a valid answer to `request`; otherwise what is wrong with it.
std::string check_upgrade(const std::string& head) {
    if (head.empty()) return "the server closed the connection (or sent nothing for 5 s) before a response";
    if (head.compare(0, 13, "HTTP/1.1 101 ") != 0) return "upgrade refused: " + head.substr(0, head.find('\r'));
    std::string lower(head);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    auto at = lower.find("\r\nsec-websocket-accept:");
    if (at == std::string::npos) return "101 without Sec-WebSocket-Accept";
    auto v = head.substr(at + 23, head.find('\r', at + 2) - (at + 23));
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t") + 1);
    if (v != accept_value) return "wrong Sec-WebSocket-Accept: " + v;
    return {};
}

// Blocking upgrade: returns the bytes that followed the 101 response; exits on failure.
std::string upgrade(int fd) {
    write_all(fd, request);
    std::string rest;
    auto what = check_upgrade(read_head(fd, rest));
    if (!what.empty()) {
        std::fprintf(stderr, "serve_loadgen: error: %s\n", what.c_str());
        std::exit(1);
    }
    return rest;
}

// Consumes the complete frames in c.in; calls on_message(opcode, payload) for each whole data
// message (fragments joined). Frames no server may send, and a Close, are errors; after a Close
// or a protocol error the connection is no use (returns false).
template <class F>
bool parse(conn& c, F&& on_message) {
    std::size_t pos = 0;
    bool ok = true;
    while (ok) {
        if (c.in.size() - pos < 2) break;
        auto b0 = static_cast<unsigned char>(c.in[pos]);
        auto b1 = static_cast<unsigned char>(c.in[pos + 1]);
        std::size_t len = b1 & 0x7f, hdr = 2;
        if (len == 126) {
            if (c.in.size() - pos < 4) break;
            len = (static_cast<std::size_t>(static_cast<unsigned char>(c.in[pos + 2])) << 8) |
                  static_cast<unsigned char>(c.in[pos + 3]);
            hdr = 4;
        } else if (len == 127) {
            if (c.in.size() - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(c.in[pos + 2 + static_cast<std::size_t>(i)]);
            hdr = 10;
        }
        if (c.in.size() - pos < hdr + len) break;
        std::string_view payload(c.in.data() + pos + hdr, len);
        pos += hdr + len;
        const bool fin = b0 & 0x80;
        const unsigned char op = b0 & 0x0f;
        if ((b0 & 0x70) || (b1 & 0x80)) {
            error("a frame with reserved bits set or masked by the server (0x%02x 0x%02x)", b0, b1);
            ok = false;
        } else if (op == 0x8) {
            unsigned code = len >= 2 ? (static_cast<unsigned>(static_cast<unsigned char>(payload[0])) << 8) |
                                           static_cast<unsigned char>(payload[1])
                                     : 1005;
            error("the server closed the connection (Close %u)", code);
            ok = false;
        } else if (op == 0x9) {
            write_all(c.fd, frame(0xA, payload));  // a Ping is answered, not counted
        } else if (op == 0xA) {
        } else if (op == 0x1 || op == 0x2) {
            if (c.msg_op) {
                error("a new message began before the previous one ended");
                ok = false;
            } else if (fin) {
                on_message(op, payload);
            } else {
                c.msg_op = op;
                c.msg.assign(payload);
            }
        } else if (op == 0x0) {
            if (!c.msg_op) {
                error("a continuation frame outside a message");
                ok = false;
            } else {
                c.msg.append(payload);
                if (fin) {
                    on_message(c.msg_op, std::string_view(c.msg));
                    c.msg_op = 0;
                    c.msg.clear();
                }
            }
        } else {
            error("a frame with the unknown opcode %u", op);
            ok = false;
        }
    }
    c.in.erase(0, pos);
    return ok;
}

// Reads what is available on a non-blocking connection into c.in; false at end of stream or error.
bool read_some(conn& c, std::vector<char>& buf) {
    for (;;) {
        ssize_t r = ::read(c.fd, buf.data(), buf.size());
        if (r > 0) {
            c.in.append(buf.data(), static_cast<std::size_t>(r));
            if (static_cast<std::size_t>(r) < buf.size()) return true;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        if (r < 0 && errno == EINTR) continue;
        error("the server ended a connection mid-run (%s)", r == 0 ? "end of stream" : std::strerror(errno));
        return false;
    }
}

void drop(int ep, conn& c) {
    ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.open = false;
}

std::vector<conn> open_all(const sockaddr_in& addr, int conns, int ep) {
    std::vector<conn> cs(static_cast<std::size_t>(conns));
    for (int i = 0; i < conns; ++i) {
        auto& c = cs[static_cast<std::size_t>(i)];
        c.fd = open_conn(addr);
        c.in = upgrade(c.fd);
        c.open = true;
        ::fcntl(c.fd, F_SETFL, O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<uint32_t>(i);
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    }
    return cs;
}

int finish(const char* json_tail, std::size_t messages, double seconds, std::size_t bytes) {
    std::printf("{\"messages\": %zu, \"seconds\": %.3f, \"rate\": %.1f, \"bytes\": %zu, \"errors\": %zu%s}\n", messages,
                seconds, seconds > 0 ? static_cast<double>(messages) / seconds : 0.0, bytes, errors, json_tail);
    if (errors) std::fprintf(stderr, "serve_loadgen: %zu error(s)\n", errors);
    return errors ? 1 : 0;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s HOST PORT text|binary|handshake|latency|idle CONNS INFLIGHT SIZE SECONDS\n", argv[0]);
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
    if (conns < 1 || seconds <= 0 || (mode != "text" && mode != "binary" && mode != "handshake" && mode != "latency" &&
                                      mode != "idle")) {
        std::fprintf(stderr, "serve_loadgen: bad arguments\n");
        return 2;
    }
    char tail[160];
    const auto drain_for = std::chrono::seconds(5);

    if (mode == "idle") {
        // CONNS upgraded connections that stay silent for SECONDS (for memory per idle connection).
        std::vector<int> fds;
        for (int i = 0; i < conns; ++i) {
            int fd = open_conn(addr);
            if (!upgrade(fd).empty()) {
                std::fprintf(stderr, "serve_loadgen: error: data before any message was sent\n");
                return 1;
            }
            fds.push_back(fd);
        }
        std::printf("ready %d\n", conns);
        std::fflush(stdout);
        ::usleep(static_cast<useconds_t>(seconds * 1e6));
        return 0;
    }
    if (mode == "handshake") {
        // CONNS workers in lock step: each round opens CONNS connections, upgrades, closes them.
        // A handshake counts once the server answered 101 with the right accept value and then
        // answered the client's Close with its own and ended the connection.
        std::size_t done = 0;
        auto t0 = clk::now();
        std::string close_frame("\x88\x82\0\0\0\0\x03\xe8", 8);
        while (std::chrono::duration<double>(clk::now() - t0).count() < seconds) {
            struct client {
                int fd;
                bool ok = true, seen_close = false;
            };
            std::vector<client> round;
            for (int i = 0; i < conns; ++i) {
                round.push_back({open_conn(addr)});
                write_all(round.back().fd, request);
            }
            for (auto& c : round) {
                std::string rest;
                auto what = check_upgrade(read_head(c.fd, rest));
                if (!what.empty()) {
                    error("handshake: %s", what.c_str());
                    c.ok = false;
                    continue;
                }
                write_all(c.fd, close_frame);
                c.seen_close = !rest.empty();  // the start of the server's Close may follow the head
                if (c.seen_close && static_cast<unsigned char>(rest[0]) != 0x88) {
                    error("handshake: a frame other than Close after the 101");
                    c.ok = false;
                }
            }
            for (auto& c : round) {
                char tmp[256];
                ssize_t n = 0;
                while (c.ok && (n = ::read(c.fd, tmp, sizeof tmp)) > 0) {
                    if (!c.seen_close && static_cast<unsigned char>(tmp[0]) != 0x88) {
                        error("handshake: a frame other than Close in answer to the client's Close");
                        c.ok = false;
                    }
                    c.seen_close = true;
                }
                if (!c.ok) {
                } else if (n < 0) {
                    error("handshake: the server did not end the connection within 5 s of the Close (%s)",
                          std::strerror(errno));
                } else if (!c.seen_close) {
                    error("handshake: the server ended the connection without answering the Close");
                } else {
                    ++done;
                }
                ::close(c.fd);
            }
        }
        double el = std::chrono::duration<double>(clk::now() - t0).count();
        std::snprintf(tail, sizeof tail, ", \"all\": %zu", done);
        return finish(tail, done, el, 0);
    }

    int ep = ::epoll_create1(0);
    std::vector<epoll_event> evs(256);
    if (mode == "latency") {
        // Open loop at a fixed total rate; each payload carries its send time, and each echo must
        // be the oldest message still unanswered on its connection.
        const double rate = inflight;
        auto cs = open_all(addr, conns, ep);
        size = std::max<std::size_t>(size, 20);
        std::vector<double> lat;
        std::size_t bytes = 0, sent = 0, received = 0, lost = 0, next_conn = 0;
        std::vector<char> buf(1 << 16);
        auto t0 = clk::now();
        auto ns_since = [&](clk::time_point t) {
            return static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(t - t0).count());
        };
        const double warm = 0.5;
        std::string payload(size, 'x');
        auto outstanding = [&] {
            std::size_t n = 0;
            for (auto& c : cs) n += c.open ? c.pending.size() : 0;
            return n;
        };
        clk::time_point drain_until{};
        while (true) {
            auto now = clk::now();
            double el = std::chrono::duration<double>(now - t0).count();
            const bool sending = el < warm + seconds;
            if (!sending) {
                if (drain_until == clk::time_point{}) drain_until = now + drain_for;
                if (outstanding() == 0 || now >= drain_until) break;
            }
            auto due = sending ? static_cast<std::size_t>(el * rate) : sent;
            while (sent < due) {
                auto& c = cs[next_conn];
                next_conn = (next_conn + 1) % cs.size();
                if (!c.open) continue;
                auto stamp_ns = ns_since(clk::now());
                char stamp[32];
                std::snprintf(stamp, sizeof stamp, "%020llu", stamp_ns);
                std::copy(stamp, stamp + 20, payload.begin());
                write_all(c.fd, frame(0x1, payload));
                c.pending.push_back(stamp_ns);
                ++sent;
            }
            // Sleep until the next send is due (epoll_wait's 1 ms granularity would send 1 ms
            // worth of messages in one burst), or until an echo arrives.
            const double wait_s = sending ? std::clamp(static_cast<double>(sent + 1) / rate -
                                                           std::chrono::duration<double>(clk::now() - t0).count(),
                                                       0.0, 0.001)
                                          : 0.01;
            const timespec ts{0, static_cast<long>(wait_s * 1e9)};
            int n = ::epoll_pwait2(ep, evs.data(), static_cast<int>(evs.size()), &ts, nullptr);
            for (int i = 0; i < n; ++i) {
                auto& c = cs[evs[static_cast<std::size_t>(i)].data.u32];
                bool ok = read_some(c, buf);
                auto recv_ns = ns_since(clk::now());
                ok = parse(c, [&](unsigned char op, std::string_view p) {
                    // The echo's stamp names the message; those sent before it on this connection
                    // and still unanswered were skipped by the server: each one is lost.
                    const unsigned long long sent_ns =
                        p.size() >= 20 ? std::strtoull(std::string(p.substr(0, 20)).c_str(), nullptr, 10) : 0;
                    auto it = std::find(c.pending.begin(), c.pending.end(), sent_ns);
                    if (it == c.pending.end()) {
                        error("an echo of no message sent and unanswered on its connection (opcode %u, %zu bytes)", op,
                              p.size());
                        return;
                    }
                    if (auto skipped = static_cast<std::size_t>(it - c.pending.begin())) {
                        error("%zu message(s) not echoed, while a later one was", skipped);
                        errors += skipped - 1;
                        lost += skipped;
                    }
                    c.pending.erase(c.pending.begin(), it + 1);
                    char stamp[32];
                    std::snprintf(stamp, sizeof stamp, "%020llu", sent_ns);
                    if (op != 0x1 || p.size() != size || p.substr(0, 20) != std::string_view(stamp, 20) ||
                        p.substr(20) != std::string_view(payload).substr(20)) {
                        error("an echo that is not the message sent (opcode %u, %zu bytes)", op, p.size());
                        return;
                    }
                    ++received;
                    bytes += p.size();
                    if (sent_ns >= static_cast<unsigned long long>(warm * 1e9))
                        lat.push_back(static_cast<double>(recv_ns - sent_ns) / 1000.0);
                }) && ok;
                if (!ok) {
                    drop(ep, c);
                }
            }
        }
        std::size_t unanswered = 0;
        for (auto& c : cs) unanswered += c.pending.size();
        if (unanswered) error("%zu message(s) never echoed (5 s after the last send)", unanswered);
        if (unanswered) errors += unanswered - 1;
        lost += unanswered;
        std::sort(lat.begin(), lat.end());
        auto pct = [&](double q) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * static_cast<double>(lat.size())))]; };
        if (lat.empty()) error("no echo arrived in the measured window");
        std::snprintf(tail, sizeof tail, ", \"sent\": %zu, \"received\": %zu, \"lost\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f",
                      sent, received, lost, pct(0.50), pct(0.99));
        return finish(tail, lat.size(), seconds, bytes);
    }

    const unsigned char opcode = mode == "binary" ? 0x2 : 0x1;
    const std::string payload(size, 'x');
    const std::string one = frame(opcode, payload);
    auto cs = open_all(addr, conns, ep);
    for (auto& c : cs) {
        std::string burst;
        for (int k = 0; k < inflight; ++k) burst += one;
        write_all(c.fd, burst);  // small enough for the socket buffer in every configuration used
        c.outstanding = static_cast<std::size_t>(inflight);
    }
    std::size_t messages = 0, bytes = 0, all = 0, sent = static_cast<std::size_t>(conns) * static_cast<std::size_t>(inflight);
    std::vector<char> buf(1 << 20);
    auto t0 = clk::now();
    bool warm = false, sending = true;
    clk::time_point start, end, drain_until;
    auto outstanding = [&] {
        std::size_t n = 0;
        for (auto& c : cs) n += c.open ? c.outstanding : 0;
        return n;
    };
    while (true) {
        auto now = clk::now();
        if (!warm && now - t0 > std::chrono::milliseconds(500)) {
            warm = true;  // skip start-up
            messages = bytes = 0;
            start = now;
        }
        if (sending && warm && std::chrono::duration<double>(now - start).count() >= seconds) {
            sending = false;  // the window ends: from here on, only the echoes still due are awaited
            end = now;
            drain_until = now + drain_for;
        }
        if (!sending && (outstanding() == 0 || now >= drain_until)) break;
        int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
        for (int i = 0; i < n; ++i) {
            auto& c = cs[evs[static_cast<std::size_t>(i)].data.u32];
            bool ok = read_some(c, buf);
            std::size_t got = 0;
            ok = parse(c, [&](unsigned char op, std::string_view p) {
                if (c.outstanding == 0) {
                    error("an echo of a message that was not sent (or was answered already)");
                    return;
                }
                --c.outstanding;
                if (op != opcode || p != payload) {
                    error("an echo that is not the message sent (opcode %u, %zu bytes; sent opcode %u, %zu bytes)", op,
                          p.size(), opcode, payload.size());
                    return;
                }
                ++got;
                if (sending) bytes += p.size();
            }) && ok;
            if (sending) messages += got;
            all += got;
            if (!ok) {
                drop(ep, c);
                continue;
            }
            if (sending && got) {
                c.out.clear();
                for (std::size_t k = 0; k < got; ++k) c.out += one;
                write_all(c.fd, c.out);
                c.outstanding += got;
                sent += got;
            }
        }
    }
    std::size_t lost = 0;
    for (auto& c : cs) lost += c.outstanding;
    if (lost) error("%zu message(s) never echoed (5 s after the window ended)", lost);
    if (lost) errors += lost - 1;
    if (all == 0) error("no echo arrived");
    double el = std::chrono::duration<double>(end - start).count();
    std::snprintf(tail, sizeof tail, ", \"all\": %zu, \"sent\": %zu, \"lost\": %zu", all, sent, lost);
    return finish(tail, messages, el, bytes);
}
