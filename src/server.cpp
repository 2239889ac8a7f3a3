#include "server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <memory>

#include <boost/beast/http/rfc7230.hpp>
#include <fmt/format.h>

#include "exit_code.hpp"

namespace wsx {

http_response make_response(http::status status, std::string body, unsigned version) {
    http_response res{status, version};
    res.set(http::field::server, "wsx/" WSX_VERSION);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (!body.empty() && body.back() != '\n') body += '\n';
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

namespace {

http_response bad_request(std::string body) {
    auto res = make_response(http::status::bad_request, std::move(body));
    res.keep_alive(false);
    return res;
}

bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/// Fields a request carries at most once. With two, whoever reads the request picks one, and
/// a proxy or cache in front may have picked the other: the first Authorization or Origin
/// decides here while another component checked the last (RFC 9110 5.3; Host: RFC 9112 3.2;
/// Origin: RFC 6454 7.3; Sec-WebSocket-Key: RFC 6455 11.3.1).
constexpr http::field once_only_fields[] = {http::field::host, http::field::authorization, http::field::origin,
                                            http::field::sec_websocket_key, http::field::sec_websocket_version};

}  // namespace

bool valid_websocket_key(std::string_view key) {
    // 16 bytes are 128 bits: 21 characters of 6 bits, a 22nd holding the last 2 bits (its
    // other 4 zero), then "==".
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
    if (!std::all_of(key.begin(), key.begin() + 22, is_base64_char)) return false;
    const char last = key[21];
    return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

std::optional<http_response> invalid_upgrade_response(const http_request& req) {
    if (req.version() != 11) return bad_request("a WebSocket upgrade must be an HTTP/1.1 request");
    for (const auto field : once_only_fields)
        if (req.count(field) > 1) return bad_request(fmt::format("more than one {} header", http::to_string(field)));
    if (req.find(http::field::host) == req.end()) return bad_request("missing Host header");
    const auto key = req.find(http::field::sec_websocket_key);
    if (key == req.end()) return bad_request("missing Sec-WebSocket-Key header");
    if (!valid_websocket_key(std::string_view(key->value().data(), key->value().size())))
        return bad_request("invalid Sec-WebSocket-Key: not the base64 encoding of 16 bytes");
    const auto version = req.find(http::field::sec_websocket_version);
    if (version == req.end()) return bad_request("missing Sec-WebSocket-Version header");
    if (version->value() != "13") {
        auto res = make_response(http::status::upgrade_required, "unsupported Sec-WebSocket-Version: this server speaks 13");
        res.set(http::field::sec_websocket_version, "13");
        res.keep_alive(false);
        return res;
    }
    return std::nullopt;
}

std::optional<http_response> malformed_request_response(const error_code& ec) {
    static constexpr std::pair<http::error, std::string_view> problems[] = {
        {http::error::bad_line_ending, "a line does not end with CRLF"},
        {http::error::bad_method, "bad method in the request line"},
        {http::error::bad_target, "bad target in the request line"},
        {http::error::bad_version, "bad HTTP version in the request line"},
        {http::error::bad_field, "invalid character in a header field name"},
        {http::error::bad_value, "control character (such as NUL) in a header field value"},
        {http::error::bad_obs_fold, "bad folded header line"},
        {http::error::bad_content_length, "bad Content-Length"},
        {http::error::multiple_content_length, "more than one Content-Length"},
        {http::error::bad_transfer_encoding, "bad Transfer-Encoding"},
        {http::error::bad_chunk, "bad chunk in the body"},
        {http::error::bad_chunk_extension, "bad chunk extension in the body"},
    };
    for (const auto& [e, what] : problems)
        if (ec == e) return bad_request(fmt::format("malformed request: {}", what));
    return std::nullopt;
}

server::server(net::io_context& ioc, server_options opts, session_handler_factory factory)
    : server(ioc, {&ioc}, std::move(opts), std::move(factory)) {}

server::server(net::io_context& acceptor_ioc, std::vector<net::io_context*> workers, server_options opts,
               session_handler_factory factory)
    : ioc_(acceptor_ioc), workers_(std::move(workers)), opts_(std::move(opts)), factory_(std::move(factory)) {
    if (workers_.empty()) workers_.push_back(&ioc_);
    acceptor_ = std::make_shared<tcp::acceptor>(*workers_[0]);
    unix_acceptor_ = std::make_shared<net::local::stream_protocol::acceptor>(*workers_[0]);
}

server::~server() {
    stopped_ = true;
    error_code ec;
    acceptor_->close(ec);
    unix_acceptor_->close(ec);
    remove_unix_socket();
}

namespace {

enum class probe_result { absent, stale, live };

/// Whether something listens on the unix socket at `path`: a connect that succeeds (or finds
/// the backlog full) means yes; "connection refused" means the socket file is left over from
/// a process that is gone. Other errors (e.g. no permission) are thrown: we cannot tell, so
/// the file must not be touched.
probe_result probe_unix_socket(const std::string& path, const std::string& where) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());  // listen_unix() checked that it fits
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw failure(exit_code::failure, fmt::format("cannot listen on {}: {} (socket)", where, std::strerror(errno)));
    const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    const int err = r == 0 ? 0 : errno;
    ::close(fd);
    if (r == 0 || err == EAGAIN || err == EINPROGRESS) return probe_result::live;
    if (err == ECONNREFUSED) return probe_result::stale;
    if (err == ENOENT) return probe_result::absent;
    throw failure(exit_code::failure,
                  fmt::format("cannot listen on {}: a socket file is there and checking whether it is in use failed ({}): "
                              "remove it if no process uses it, or choose another path",
                              where, std::strerror(err)));
}

}  // namespace

void limit_request_parser(http::request_parser<http::string_body>& parser, std::size_t max_bytes) {
    parser.header_limit(static_cast<std::uint32_t>(max_bytes));
    parser.body_limit(max_bytes);
}

void server::listen_unix() {
    const std::string& path = opts_.listen.unix_path;
    const std::string where = "unix:" + path;
    if (opts_.tls)
        throw failure(exit_code::usage, fmt::format("cannot listen on {}: TLS over a unix socket is not supported", where));
    if (path.size() > max_unix_path || path.find('\0') != std::string::npos)
        throw failure(exit_code::usage, fmt::format("cannot listen on {}: not a usable socket path (at most {} bytes, no NUL)",
                                                    where, max_unix_path));
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw failure(exit_code::failure,
                          fmt::format("cannot listen on {}: the file exists and is not a socket (it was left alone): "
                                      "choose another path",
                                      where));
        switch (probe_unix_socket(path, where)) {
        case probe_result::live:
            throw failure(exit_code::failure,
                          fmt::format("cannot listen on {}: another process is listening on it: stop it or choose another path",
                                      where));
        case probe_result::stale: {
            // Left by a process that is gone: replace it, unless it changed in the meantime.
            struct stat again{};
            if (::lstat(path.c_str(), &again) == 0 && S_ISSOCK(again.st_mode) && again.st_dev == st.st_dev &&
                again.st_ino == st.st_ino && ::unlink(path.c_str()) != 0) {
                const int err = errno;
                if (err != ENOENT)
                    throw failure(exit_code::failure, fmt::format("cannot listen on {}: cannot remove the stale socket file: {}",
                                                                  where, std::strerror(err)));
            }
            break;
        }
        case probe_result::absent: break;
        }
    }
    error_code ec;
    auto fail = [&](std::string_view step) {
        throw failure(exit_code::failure, fmt::format("cannot listen on {}: {} ({})", where, ec.message(), step));
    };
    net::local::stream_protocol::endpoint ep(path);
    unix_acceptor_->open(ep.protocol(), ec);
    if (ec) fail("socket");
    // bind() creates the file with 0777 & ~umask: with --unix-mode, the umask is set so that it
    // is created with exactly that mode (no window in which it is more open). The umask is
    // process-wide, so this runs before any other thread of the server starts.
    const int mode = opts_.listen.unix_mode;
    const mode_t old_mask = mode >= 0 ? ::umask(static_cast<mode_t>(~mode & 0777)) : 0;
    unix_acceptor_->bind(ep, ec);
    if (mode >= 0) ::umask(old_mask);
    if (ec) fail("bind");
    struct stat bound{};
    if (::lstat(path.c_str(), &bound) == 0) {
        unix_bound_ = true;
        unix_dev_ = bound.st_dev;
        unix_ino_ = bound.st_ino;
    }
    unix_acceptor_->listen(net::socket_base::max_listen_connections, ec);
    if (ec) fail("listen");
}

void server::remove_unix_socket() {
    if (!unix_bound_) return;
    unix_bound_ = false;
    struct stat st{};
    const auto& path = opts_.listen.unix_path;
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == unix_dev_ && st.st_ino == unix_ino_)
        ::unlink(path.c_str());
}

void server::listen() {
    if (is_unix()) return listen_unix();
    error_code ec;
    auto addr = net::ip::make_address(opts_.listen.host == "localhost" ? "127.0.0.1" : opts_.listen.host, ec);
    if (ec)
        throw failure(exit_code::usage, fmt::format("cannot listen on '{}': not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)",
                                                    opts_.listen.host));
    tcp::endpoint ep(addr, opts_.listen.port);
    auto fail = [&](std::string_view step) {
        throw failure(exit_code::failure, fmt::format("cannot listen on {}: {} ({})", format_host_port(opts_.listen.host, opts_.listen.port),
                                                      listen_problem(ec), step));
    };
    auto& acceptor = *acceptor_;
    acceptor.open(ep.protocol(), ec);
    if (ec) fail("socket");
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
    // Linux hands TCP_NODELAY on to every accepted socket: one setsockopt here instead of one
    // per connection (handle() sets it on other systems).
    acceptor.set_option(tcp::no_delay(true), ec);
    acceptor.bind(ep, ec);
    if (ec) fail("bind");
    acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) fail("listen");
    local_port_ = acceptor.local_endpoint(ec).port();
}

tcp::endpoint server::local_endpoint() const {
    error_code ec;
    return acceptor_->local_endpoint(ec);
}

std::string server::url() const {
    if (is_unix()) return fmt::format("ws+unix://{}:/", opts_.listen.unix_path);
    auto ep = local_endpoint();
    return fmt::format("{}://{}", opts_.tls ? "wss" : "ws", format_host_port(ep.address().to_string(), ep.port()));
}

std::string listen_problem(const error_code& ec) {
    if (ec == net::error::address_in_use)
        return ec.message() + ": another process listens on that port; stop it, or choose another port (0 picks a free one)";
    if (ec == net::error::access_denied)
        return ec.message() + ": ports below 1024 need privileges; choose a port above 1023";
    if (ec == boost::system::errc::address_not_available)
        return ec.message() + ": this machine has no such address; use one of its own, 127.0.0.1 or 0.0.0.0";
    return ec.message();
}

void server::start() { do_accept(); }

void server::stop() {
    stopped_ = true;
    // The acceptor belongs to the first worker's thread: closing it from another one would
    // race with an accept completing there.
    auto close = [a = acceptor_, u = unix_acceptor_] {
        error_code ec;
        a->close(ec);
        u->close(ec);
    };
    auto ex = workers_[0]->get_executor();
    if (ex.running_in_this_thread() || workers_[0]->stopped()) {
        close();
    } else {
        // Whoever stops the server may then say that new connections are refused (serve's
        // shutdown notice): wait until they are. Bounded, so that a stop never hangs on a worker
        // that is not running.
        auto closed = std::make_shared<std::promise<void>>();
        auto done = closed->get_future();
        net::post(ex, [close = std::move(close), closed] {
            close();
            closed->set_value();
        });
        done.wait_for(std::chrono::seconds(1));
    }
    remove_unix_socket();
}

void server::do_accept() {
    const std::size_t worker = next_worker_;
    next_worker_ = (next_worker_ + 1) % workers_.size();
    auto& target = *workers_[worker];
    // Out of descriptors (EMFILE) and the like: retry shortly instead of spinning.
    auto retry = [this] {
        auto t = std::make_shared<net::steady_timer>(*workers_[0], std::chrono::milliseconds(50));
        t->async_wait([this, t](error_code) {
            if (!stopped_) do_accept();
        });
    };
    if (is_unix()) {
        unix_acceptor_->async_accept(target, [this, worker, &target, retry](error_code ec, net::local::stream_protocol::socket socket) {
            if (ec == net::error::operation_aborted || !unix_acceptor_->is_open() || stopped_) return;
            if (ec) return retry();
            net::co_spawn(target, handle_unix(std::move(socket), worker), net::detached);
            do_accept();
        });
        return;
    }
    acceptor_->async_accept(target, remote_, [this, worker, &target, retry](error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor_->is_open() || stopped_) return;
        if (ec) return retry();
        net::co_spawn(target, handle(std::move(socket), remote_, worker), net::detached);
        do_accept();
    });
}

net::awaitable<void> server::handle(tcp::socket socket, tcp::endpoint remote, std::size_t worker) {
#ifndef __linux__
    error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
#endif
    peer_info peer;
    peer.address = remote.address().to_string();
    peer.port = remote.port();
    peer.local_port = local_port_;
    peer.worker = worker;
    if (opts_.tls) {
        peer.tls = true;
        co_await serve_tls(std::move(socket), std::move(peer));
    } else {
        co_await serve_tcp(std::move(socket), std::move(peer));
    }
}

net::awaitable<void> server::handle_unix(net::local::stream_protocol::socket socket, std::size_t worker) {
    peer_info peer;
    peer.address = "unix:" + opts_.listen.unix_path;
    peer.is_unix = true;
    peer.worker = worker;
    // The only thing known about a unix peer is who it is: the kernel's credentials of the
    // process that connected (what --exec children see as WSX_PEER_PID/UID/GID).
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred) {
        peer.vars["peer_pid"] = std::to_string(cred.pid);
        peer.vars["peer_uid"] = std::to_string(cred.uid);
        peer.vars["peer_gid"] = std::to_string(cred.gid);
    }
    co_await serve_unix(std::move(socket), std::move(peer));
}

}  // namespace wsx
