// A reference floor for tests/bench/serve_bench.py: the least work a WebSocket echo server can do
// per message on this machine, measured beside `wsx serve` so the distance to the ceiling set by
// the kernel is a figure, not an argument. Independent of wsx's own code. Single-threaded.
//
//   serve_floor [PORT]      (PORT 0, the default, picks a free port)
//     Binds 127.0.0.1, prints "listening on ws://127.0.0.1:PORT" on stderr, echoes every frame.
//   Build: g++ -O2 -std=c++20 -o serve_floor serve_floor.cpp -lcrypto
//
// Per ping-pong message it costs one recv and one send plus a share of one epoll_wait:
// level-triggered epoll with interest changed only under back-pressure, one shared 64 KiB read
// buffer (a recv returning less than asked means the socket is drained, so it is not called
// again; after a full one, level-triggered epoll reports the rest), every complete frame of a
// read echoed into one output buffer, and one send per batch.
// TCP_NODELAY is set on the listening socket, which Linux passes on to accepted sockets.
//
// It is a floor, an upper bound of what a server can reach here, NOT a server anyone should use:
// it echoes frame by frame (continuation frames too) without checking fragmentation rules, does
// not validate UTF-8 in text frames or Close payloads, checks little of the upgrade request
// beyond GET and Sec-WebSocket-Key, and refuses frames over 16 MiB (Close 1009).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {
constexpr std::size_t read_size = 64 * 1024;
constexpr std::size_t max_frame = 16 * 1024 * 1024;
constexpr std::size_t max_request = 16 * 1024;

/// A growable byte buffer that does not zero what it is about to overwrite (std::string would).
struct buffer {
    char* data = nullptr;
    std::size_t size = 0, cap = 0;
    char* grow(std::size_t n) {  // room for n more bytes; returns where they go
        if (size + n > cap) {
            cap = std::max(size + n, cap * 2);
            data = static_cast<char*>(std::realloc(data, cap));
            if (!data) std::abort();
        }
        char* at = data + size;
        size += n;
        return at;
    }
    void append(const char* p, std::size_t n) { std::memcpy(grow(n), p, n); }
};

struct conn {
    int fd = -1;
    bool upgraded = false;
    bool closing = false;    // close(fd) once `out` has gone
    bool writing = false;    // waiting for EPOLLOUT (not reading meanwhile)
    std::string in;          // an incomplete request or frame only
    std::string out;         // unsent output only
    std::size_t out_off = 0;
};

int ep = -1;
char rbuf[read_size];
buffer obuf;

void close_conn(conn* c) {
    ::close(c->fd);  // also leaves the epoll set
    delete c;
}

bool ieq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// Answers the upgrade request `req` (without its final blank line) into obuf; false if refused.
bool answer_upgrade(std::string_view req) {
    std::string_view key;
    if (req.substr(0, 4) == "GET ") {
        std::size_t pos = req.find("\r\n");
        while (pos != std::string_view::npos) {
            std::size_t next = req.find("\r\n", pos + 2);
            std::string_view line = req.substr(pos + 2, next == std::string_view::npos ? std::string_view::npos : next - pos - 2);
            std::size_t colon = line.find(':');
            if (colon != std::string_view::npos && ieq(trim(line.substr(0, colon)), "sec-websocket-key")) {
                key = trim(line.substr(colon + 1));
                break;
            }
            pos = next;
        }
    }
    if (key.empty() || key.size() > 64) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        obuf.append(bad, sizeof bad - 1);
        return false;
    }
    std::string src(key);
    src += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_Digest(src.data(), src.size(), digest, &dlen, EVP_sha1(), nullptr);
    unsigned char accept[64];
    int alen = EVP_EncodeBlock(accept, digest, static_cast<int>(dlen));
    static const char head[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    obuf.append(head, sizeof head - 1);
    obuf.append(reinterpret_cast<const char*>(accept), static_cast<std::size_t>(alen));
    obuf.append("\r\n\r\n", 4);
    return true;
}

/// Appends an unmasked server frame header: first byte b0, payload length len.
void put_header(unsigned char b0, std::size_t len) {
    char h[10];
    std::size_t n = 2;
    h[0] = static_cast<char>(b0);
    if (len < 126) {
        h[1] = static_cast<char>(len);
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = static_cast<char>(len >> 8);
        h[3] = static_cast<char>(len);
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<char>(len >> (8 * (7 - i)));
        n = 10;
    }
    obuf.append(h, n);
}

/// Appends the payload unmasked, 8 bytes at a time.
void put_unmasked(const char* src, std::size_t len, const char* key) {
    char* dst = obuf.grow(len);
    std::uint32_t k4;
    std::memcpy(&k4, key, 4);
    const std::uint64_t k8 = (static_cast<std::uint64_t>(k4) << 32) | k4;
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, src + i, 8);
        v ^= k8;
        std::memcpy(dst + i, &v, 8);
    }
    for (; i < len; ++i) dst[i] = static_cast<char>(src[i] ^ key[i & 3]);
}

void put_close(std::uint16_t code) {
    put_header(0x88, 2);
    char p[2] = {static_cast<char>(code >> 8), static_cast<char>(code)};
    obuf.append(p, 2);
}

/// Echoes every complete frame of `d` into obuf; returns the bytes consumed, and in `need` the
/// size of an incomplete frame left at the end. Sets c->closing on a Close frame or a protocol
/// error (the rest is then ignored).
std::size_t echo_frames(conn* c, std::string_view d, std::size_t& need) {
    std::size_t pos = 0;
    while (d.size() - pos >= 2) {
        const auto b0 = static_cast<unsigned char>(d[pos]), b1 = static_cast<unsigned char>(d[pos + 1]);
        const unsigned op = b0 & 0x0f;
        const bool control = op & 0x08;
        if ((b0 & 0x70) || !(b1 & 0x80) || (op > 2 && op < 8) || op > 10 || (control && (!(b0 & 0x80) || (b1 & 0x7f) > 125))) {
            put_close(1002);  // reserved bits, unmasked client frame, unknown opcode, bad control frame
            c->closing = true;
            return d.size();
        }
        std::size_t len = b1 & 0x7f, hdr = 2;
        if (len == 126) {
            if (d.size() - pos < 4) break;
            len = (static_cast<std::size_t>(static_cast<unsigned char>(d[pos + 2])) << 8) | static_cast<unsigned char>(d[pos + 3]);
            hdr = 4;
        } else if (len == 127) {
            if (d.size() - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(d[pos + 2 + i]);
            hdr = 10;
        }
        if (len > max_frame) {
            put_close(1009);
            c->closing = true;
            return d.size();
        }
        hdr += 4;  // masking key
        if (d.size() - pos < hdr + len) {
            need = hdr + len;
            break;
        }
        const char* key = d.data() + pos + hdr - 4;
        const char* payload = d.data() + pos + hdr;
        pos += hdr + len;
        if (op == 0x0a) continue;  // Pong: nothing to answer
        put_header(op == 0x09 ? static_cast<unsigned char>(0x8a) : b0, len);  // Ping -> Pong, else as received
        put_unmasked(payload, len, key);
        if (op == 0x08) {  // Close: echoed, then the connection ends
            c->closing = true;
            return d.size();
        }
    }
    return pos;
}

void want(conn* c, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = c;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/// Sends obuf (one send); keeps the rest and waits for EPOLLOUT if it does not all go.
void flush(conn* c) {
    std::size_t sent = 0;
    if (obuf.size) {
        ssize_t n = ::send(c->fd, obuf.data, obuf.size, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            close_conn(c);
            return;
        }
        sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    }
    if (sent < obuf.size) {
        c->out.assign(obuf.data + sent, obuf.size - sent);
        c->out_off = 0;
        c->writing = true;
        want(c, EPOLLOUT);
        return;
    }
    if (c->closing) close_conn(c);
}

void on_readable(conn* c) {
    ssize_t n = ::recv(c->fd, rbuf, read_size, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_conn(c);
        return;
    }
    // Parse straight from the shared buffer unless an incomplete request or frame is pending.
    std::string_view d(rbuf, static_cast<std::size_t>(n));
    const bool pending = !c->in.empty();
    if (pending) {
        c->in.append(rbuf, static_cast<std::size_t>(n));
        d = c->in;
    }
    obuf.size = 0;
    std::size_t used = 0;
    if (!c->upgraded) {
        std::size_t end = d.find("\r\n\r\n");
        if (end == std::string_view::npos) {
            if (d.size() > max_request) {
                answer_upgrade({});  // 400
                c->closing = true;
                c->in.clear();
                flush(c);
                return;
            }
            if (!pending) c->in.assign(d);
            return;
        }
        if (!answer_upgrade(d.substr(0, end))) {
            c->closing = true;
            c->in.clear();
            flush(c);
            return;
        }
        c->upgraded = true;
        used = end + 4;
    }
    std::size_t need = 0;  // an incomplete frame's size: room is made once rather than in steps
    used += echo_frames(c, d.substr(used), need);
    if (c->closing) {
        c->in.clear();
    } else if (pending) {
        c->in.erase(0, used);
        if (c->in.empty() && c->in.capacity() > read_size) std::string().swap(c->in);  // a large frame went
        if (c->in.capacity() < need) c->in.reserve(need);
    } else if (used < d.size()) {
        c->in.reserve(std::max(need, d.size() - used));
        c->in.append(d.data() + used, d.size() - used);
    }
    flush(c);
}

void on_writable(conn* c) {
    ssize_t n = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) close_conn(c);
        return;
    }
    c->out_off += static_cast<std::size_t>(n);
    if (c->out_off < c->out.size()) return;
    std::string().swap(c->out);  // drained: give the memory back
    c->out_off = 0;
    c->writing = false;
    if (c->closing) {
        close_conn(c);
        return;
    }
    want(c, EPOLLIN);
}
}  // namespace

int main(int argc, char** argv) {
    if (argc > 2) {
        std::fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
        return 2;
    }
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, SOMAXCONN) != 0) {
        std::perror("serve_floor: bind");
        return 1;
    }
    socklen_t alen = sizeof addr;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
    // OpenSSL sets itself up on first use (about 2 MiB): done now, so that memory per connection
    // measured from here on is the connections' own.
    unsigned char warm[EVP_MAX_MD_SIZE];
    EVP_Digest("", 0, warm, nullptr, EVP_sha1(), nullptr);
    std::memset(rbuf, 0, sizeof rbuf);
    std::fprintf(stderr, "listening on ws://127.0.0.1:%u\n", ntohs(addr.sin_port));
    std::fflush(stderr);

    ep = ::epoll_create1(0);
    epoll_event lev{};
    lev.events = EPOLLIN;
    lev.data.ptr = nullptr;  // the listening socket
    ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    epoll_event evs[512];
    for (;;) {
        int n = ::epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::perror("serve_floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            auto* c = static_cast<conn*>(evs[i].data.ptr);
            if (!c) {
                for (;;) {
                    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
                    if (fd < 0) break;  // EAGAIN, or out of descriptors: retried on the next event
                    c = new conn;
                    c->fd = fd;
                    epoll_event ev{};
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->writing) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(c);
            } else {
                on_readable(c);  // EPOLLIN, or EPOLLERR/EPOLLHUP: recv reports them
            }
        }
    }
}
