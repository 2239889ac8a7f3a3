#include "proxy_app.hpp"

#include <unistd.h>

#include <iostream>
#include <mutex>
#include <unordered_map>

#include <boost/algorithm/string.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "auth.hpp"
#include "client.hpp"
#include "event_json.hpp"
#include "exit_code.hpp"
#include "shutdown.hpp"

namespace wsx {

std::optional<upstream_target> parse_upstream(std::string_view text, std::string* error) {
    upstream_target t;
    t.name = std::string(text);
    if (text.starts_with("tcp://")) {
        auto rest = text.substr(6);
        if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
        std::string err;
        auto a = parse_listen_address(rest, &err, 0);
        if (!a || a->port == 0 || !a->unix_path.empty()) {
            *error = fmt::format("'{}': expected tcp://HOST:PORT", text);
            return std::nullopt;
        }
        t.tcp = true;
        t.host = a->host;
        t.port = a->port;
        return t;
    }
    if (!text.starts_with("ws://") && !text.starts_with("wss://") && !text.starts_with("ws+unix://")) {
        *error = fmt::format("'{}': an upstream is ws://, wss://, ws+unix://PATH:/ or tcp://HOST:PORT", text);
        return std::nullopt;
    }
    auto u = parse_ws_url(text, error);
    if (!u) return std::nullopt;
    t.url = *u;
    return t;
}

std::string rewrite_target(std::string_view client_target, std::string_view prefix, std::string_view upstream_path) {
    std::string_view path = client_target, query;
    if (auto q = client_target.find('?'); q != std::string_view::npos) {
        path = client_target.substr(0, q);
        query = client_target.substr(q);
    }
    std::string p(path);
    if (!prefix.empty() && prefix != "/") {
        std::string_view pre = prefix;
        if (pre.back() == '/') pre.remove_suffix(1);
        if (p == pre) p = "/";
        else if (p.starts_with(pre) && p[pre.size()] == '/') p = p.substr(pre.size());
    }
    const auto uq = upstream_path.find('?');
    std::string base(upstream_path.substr(0, uq));
    if (!base.empty() && base != "/") {
        if (base.back() == '/') base.pop_back();
        p = base + (p == "/" ? "" : p);
        if (p.empty()) p = "/";
    }
    // The upstream URL's query comes first, then the client's: both reach the upstream.
    std::string_view up_query = uq == std::string_view::npos ? std::string_view() : upstream_path.substr(uq + 1);
    std::string_view client_query = query.empty() ? query : query.substr(1);
    std::string q(up_query);
    if (!client_query.empty()) q += (q.empty() ? "" : "&") + std::string(client_query);
    return q.empty() ? p : p + "?" + q;
}

namespace {

using namespace std::chrono_literals;

/// Keeps a backend's connection count up while a proxied connection lives.
struct backend_slot {
    backend_slot(balancer& b, std::size_t i) : b(b), i(i) { b.opened(i); }
    ~backend_slot() { b.closed(i); }
    backend_slot(const backend_slot&) = delete;
    backend_slot& operator=(const backend_slot&) = delete;
    balancer& b;
    std::size_t i;
};

/// The answer to a client no upstream took.
struct refusal {
    http::status status;
    std::string body;
    /// The upstream's WWW-Authenticate and Retry-After fields, passed back as they came.
    std::vector<std::pair<std::string, std::string>> fields = {};
};

/// What the asynchronous upgrade check hands to the session handler.
struct upstream_conn {
    std::shared_ptr<ws_session> ws;
    std::optional<tcp::socket> sock;
    std::shared_ptr<backend_slot> slot;
};

struct noop_events final : channel_events {
    void on_message(std::string&&, bool) override {}
    void on_close(const close_info&) override {}
};

/// Closes the client at once (the upstream went away between the check and the handler).
struct refuse_events final : channel_events {
    void on_message(std::string&&, bool) override {}
    void on_close(const close_info&) override {}
};

std::string cookie_value(std::string_view header, std::string_view name) {
    std::vector<std::string> parts;
    boost::split(parts, header, boost::is_any_of(";"));
    for (auto& part : parts) {
        boost::trim(part);
        auto eq = part.find('=');
        if (eq != std::string::npos && part.compare(0, eq, name) == 0) return part.substr(eq + 1);
    }
    return {};
}

std::string strip_query_params(std::string_view target, std::initializer_list<std::string_view> names) {
    auto q = target.find('?');
    if (q == std::string_view::npos) return std::string(target);
    std::string out(target.substr(0, q));
    std::vector<std::string> parts;
    boost::split(parts, target.substr(q + 1), boost::is_any_of("&"));
    std::string kept;
    for (const auto& part : parts) {
        const auto key = std::string_view(part).substr(0, part.find('='));
        bool drop = false;
        for (auto n : names) drop = drop || key == n;
        if (drop || part.empty()) continue;
        kept += (kept.empty() ? "" : "&") + part;
    }
    if (!kept.empty()) out += "?" + kept;
    return out;
}

/// The engine shared by every listener: balancer, health checks, upstream connects, tap.
class proxy_core {
public:
    explicit proxy_core(proxy_options& o) : o_(o), balancer_(names(o.upstreams), o.balance) {
        if (!o.tap_path.empty()) tap_ = std::make_shared<tap_writer>(o.tap_path, o.tap);
    }

    balancer& lb() { return balancer_; }
    const std::shared_ptr<tap_writer>& tap() const { return tap_; }

    /// Starts health checks on `ioc`.
    void start_health(net::io_context& ioc) {
        health_ioc_ = &ioc;
        timer_ = std::make_unique<net::steady_timer>(ioc);
        arm_health(o_.health_interval.count() > 0 ? o_.health_interval : std::chrono::nanoseconds(500ms));
    }
    void stop() {
        stopped_ = true;
        timer_.reset();  // it lives on the main context, which may not outlive this core
    }

    /// The sticky key of a request, or nullopt (no sticky option, or the key is absent).
    std::optional<std::string> sticky_key(const http_request* req, const std::string& address) const {
        if (!o_.sticky) return std::nullopt;
        using k = sticky_source::kind;
        switch (o_.sticky->from) {
        case k::none: return std::nullopt;
        case k::ip: return address;
        case k::header:
            if (!req || (*req)[o_.sticky->name].empty()) return std::nullopt;
            return std::string((*req)[o_.sticky->name]);
        case k::cookie: {
            if (!req) return std::nullopt;
            auto v = cookie_value((*req)[http::field::cookie], o_.sticky->name);
            if (v.empty()) return std::nullopt;
            return v;
        }
        case k::query:
            if (!req) return std::nullopt;
            return query_param(req->target(), o_.sticky->name);
        }
        return std::nullopt;
    }

    client_options ws_client_options(const upstream_target& t, const http_request* req, const peer_info* peer) const {
        client_options c;
        c.url = t.url;
        c.tls = o_.upstream_tls;
        c.connect_timeout = o_.connect_timeout;
        c.session = o_.serve.server.session;
        c.session.ping_interval = c.session.ping_timeout = c.session.idle_timeout = {};
        // The upstream's pings are answered here unless a ws <-> ws bridge passes them on (connect).
        c.session.answer_pings = true;
        if (!req) return c;  // a health check or a tcp:// tunnel: wsx's own User-Agent
        c.user_agent.clear();
        std::string target(req->target());
        if (o_.strip_auth) target = strip_query_params(target, {"token", "access_token"});
        c.url.target = rewrite_target(target, o_.path_prefix, t.url.target);
        if (auto p = (*req)[http::field::sec_websocket_protocol]; !p.empty()) {
            std::vector<std::string> offers;
            boost::split(offers, p, boost::is_any_of(","));
            for (auto& s : offers) {
                boost::trim(s);
                if (!s.empty()) c.subprotocols.push_back(s);
            }
        }
        if (auto ua = (*req)[http::field::user_agent]; !ua.empty()) c.user_agent = std::string(ua);
        std::vector<std::string> names = {"Origin", "Cookie"};
        if (!o_.strip_auth) names.push_back("Authorization");
        names.insert(names.end(), o_.forward_headers.begin(), o_.forward_headers.end());
        for (const auto& n : names)
            if (auto v = (*req)[n]; !v.empty()) c.headers.emplace_back(n, std::string(v));
        // A unix socket client has no address to add; what it sent is passed on as it came.
        std::string xff(req->base()["X-Forwarded-For"]);
        if (!peer->is_unix) xff += (xff.empty() ? "" : ", ") + peer->address;
        if (!xff.empty()) c.headers.emplace_back("X-Forwarded-For", xff);
        c.headers.emplace_back("X-Forwarded-Proto", peer->tls ? "https" : "http");
        return c;
    }

    /// Connects a TCP upstream on the current executor. Throws wsx::failure.
    /// `timeout_option` names the option that sets `timeout`, for the hint of a timeout.
    static net::awaitable<tcp::socket> connect_tcp(const upstream_target& t, std::chrono::nanoseconds timeout,
                                                   const char* timeout_option = "--connect-timeout") {
        beast::tcp_stream stream(co_await net::this_coro::executor);
        co_await async_connect_tcp(stream, t.host, t.port, steady_clock::now() + timeout, t.name, timeout_option);
        stream.expires_never();
        co_return stream.release_socket();
    }

    /// Tries the candidates in order, up backends first and down ones as a last resort (one may
    /// be back before a check says so). A backend whose connect fails is marked down, and one
    /// that answers the upgrade with 5xx (busy) is passed over; either way the next one is tried.
    /// A 4xx answer is about the client's request: it goes back to the client as it came.
    /// Returns the connection, or the answer for the client (which names no upstream: their
    /// URLs may hold credentials; the log has the details).
    net::awaitable<std::variant<upstream_conn, refusal>> connect(const http_request* req, const peer_info& peer,
                                                                 std::string* subprotocol) {
        auto key = sticky_key(req, peer.address);
        auto order = balancer_.candidates(key ? &*key : nullptr, true);
        if (order.empty()) co_return refusal{http::status::bad_gateway, "no upstream is configured"};
        std::size_t busy = 0;
        for (auto i : order) {
            const auto& t = o_.upstreams[i];
            // The upstream URL carries the client's query: its credentials stay out of the log.
            std::string url_text;
            auto scrub = [&url_text](const char* what) {
                std::string s = what;
                if (url_text.empty()) return s;
                const std::string clean = redact_target(url_text);
                for (auto at = s.find(url_text); at != std::string::npos; at = s.find(url_text, at + clean.size()))
                    s.replace(at, url_text.size(), clean);
                return s;
            };
            try {
                upstream_conn c;
                if (t.tcp) {
                    c.sock.emplace(co_await connect_tcp(t, o_.connect_timeout));
                } else {
                    auto opts = ws_client_options(t, req, &peer);
                    url_text = opts.url.to_string();
                    // A WebSocket client's bridge passes pings and pongs on: the client answers.
                    if (req) opts.session.answer_pings = false;
                    auto r = co_await async_connect(opts);
                    if (subprotocol) *subprotocol = r.subprotocol;
                    c.ws = std::move(r.session);
                }
                if (!balancer_.backend(i).up.load() && !o_.serve.quiet) log(fmt::format("upstream {} is up again", t.name));
                balancer_.mark_up(i);
                c.slot = std::make_shared<backend_slot>(balancer_, i);
                co_return c;
            } catch (const upgrade_rejected& r) {
                const int st = r.status();
                if (st >= 400 && st < 500) {
                    // About this request (credentials, path): another backend would say the same.
                    if (!o_.serve.quiet) log(fmt::format("upstream {} refused a client: {}", t.name, scrub(r.what())));
                    // Its challenges and Retry-After go back too: a client answers a 401 through the proxy.
                    auto* full = dynamic_cast<const upgrade_refused*>(&r);
                    co_return refusal{static_cast<http::status>(st),
                                      fmt::format("upstream refused the upgrade: HTTP {} {}", st,
                                                  std::string(http::obsolete_reason(static_cast<http::status>(st)))),
                                      full ? full->fields() : std::vector<std::pair<std::string, std::string>>{}};
                }
                ++balancer_.backend(i).failures;
                if (st >= 500) {
                    // Busy or failing (503 at its connection limit): answered, so not down.
                    ++busy;
                    if (!o_.serve.quiet) log(fmt::format("upstream {} refused a client, trying the next: {}", t.name, scrub(r.what())));
                    continue;
                }
                // 2xx/3xx: not a WebSocket server (a plain web server, a redirect).
                balancer_.mark_down(i);
                if (!o_.serve.quiet) log(fmt::format("upstream {} is down: {} (not a WebSocket upgrade)", t.name, scrub(r.what())));
            } catch (const failure& f) {
                ++balancer_.backend(i).failures;
                const bool was_up = balancer_.backend(i).up.load();
                balancer_.mark_down(i);
                if (!o_.serve.quiet) log(fmt::format("upstream {} {}: {}", t.name, was_up ? "is down" : "is still down", scrub(f.what())));
            }
        }
        if (busy == order.size())
            co_return refusal{http::status::service_unavailable, "every upstream is busy: try again later",
                              {{"Retry-After", "1"}}};
        co_return refusal{http::status::bad_gateway, "no upstream could be reached"};
    }

    bridge_config bridge_cfg(std::uint64_t id, const std::shared_ptr<backend_slot>& slot) const {
        bridge_config cfg;
        cfg.id = id;
        cfg.backend = &balancer_.backend(slot->i);
        cfg.tap = tap_;
        cfg.fault = o_.fault;
        cfg.pause_bytes = std::min<std::size_t>(1u << 20, std::max<std::size_t>(o_.serve.server.session.send_queue_limit / 2, 1));
        cfg.on_end = [slot](const close_info&) {};  // the slot lives as long as the bridge
        if (!o_.serve.quiet) {
            cfg.log = [this, id, name = balancer_.backend(slot->i).name](const std::string& line) {
                log(fmt::format("#{} {}: {}", id, name, line));
            };
        }
        return cfg;
    }

    bool stalls_pongs() const { return o_.fault.stall_pongs; }

    void log(const std::string& line) const {
        const std::string out = format_log_event(o_.serve.log, "proxy", "wsx proxy: " + line) + "\n";
        std::lock_guard lock(log_mutex_);
        std::fwrite(out.data(), 1, out.size(), stderr);
        std::fflush(stderr);
    }

    std::uint64_t next_id() { return ++tcp_ids_; }

private:
    static std::vector<std::string> names(const std::vector<upstream_target>& u) {
        std::vector<std::string> n;
        for (const auto& t : u) n.push_back(t.name);
        return n;
    }

    void arm_health(std::chrono::nanoseconds after) {
        if (stopped_) return;
        timer_->expires_after(after);
        timer_->async_wait([this](error_code ec) {
            if (ec || stopped_) return;
            if (o_.health_interval.count() > 0) {
                for (std::size_t i = 0; i < o_.upstreams.size(); ++i) net::co_spawn(*health_ioc_, check(i), net::detached);
                arm_health(o_.health_interval);
            } else {
                balancer_.expire_down(std::chrono::duration_cast<std::chrono::milliseconds>(o_.down_cool_down));
                arm_health(500ms);
            }
        });
    }

    net::awaitable<void> check(std::size_t i) {
        const auto& t = o_.upstreams[i];
        try {
            if (t.tcp) {
                auto s = co_await connect_tcp(t, o_.health_timeout, "--health-timeout");
                error_code ec;
                s.close(ec);
            } else {
                auto opts = ws_client_options(t, nullptr, nullptr);
                opts.connect_timeout = o_.health_timeout;
                auto r = co_await async_connect(opts);
                r.session->start(std::make_shared<noop_events>());
                r.session->close(1000, "health check");
            }
            mark_checked(i, nullptr);
        } catch (const upgrade_rejected& r) {
            // 401, 403 and 404 (a relay that wants a topic path, a backend that wants
            // credentials) are about the check's request: the backend is serving. Anything else
            // that is not an upgrade (5xx, or 200 from a plain web server) is down.
            if (stopped_) co_return;
            const int st = r.status();
            mark_checked(i, st == 401 || st == 403 || st == 404 ? nullptr : &r);
        } catch (const failure& f) {
            if (stopped_) co_return;
            // The client code's timeout hint names the client's option; a check's is --health-timeout.
            std::string what = f.what();
            if (auto at = what.find("(raise --connect-timeout)"); at != std::string::npos)
                what.replace(at, 25, "(raise --health-timeout)");
            const failure named(f.code(), what);
            mark_checked(i, &named);
        }
    }

    void mark_checked(std::size_t i, const failure* f) {
        const auto& t = o_.upstreams[i];
        if (!f) {
            if (!balancer_.backend(i).up.load() && !o_.serve.quiet) log(fmt::format("upstream {} is up again", t.name));
            balancer_.mark_up(i);
            return;
        }
        ++balancer_.backend(i).failures;
        if (balancer_.backend(i).up.load() && !o_.serve.quiet) log(fmt::format("upstream {} is down: {}", t.name, f->what()));
        balancer_.mark_down(i);
    }

    proxy_options& o_;
    mutable std::mutex log_mutex_;
    mutable balancer balancer_;
    std::shared_ptr<tap_writer> tap_;
    net::io_context* health_ioc_ = nullptr;
    std::unique_ptr<net::steady_timer> timer_;
    std::atomic<bool> stopped_{false};
    std::atomic<std::uint64_t> tcp_ids_{0};
};

/// The ws/wss listener's service: connect upstream first, then bridge.
class proxy_service final : public service {
public:
    explicit proxy_service(proxy_core& core) : core_(core) {}

    void start(net::io_context& main) override { core_.start_health(main); }

    async_upgrade_filter async_check_upgrade() override {
        return [this](const http_request& req, peer_info& peer, std::string& sub) -> net::awaitable<std::optional<http_response>> {
            // The listener has refused an invalid upgrade before this runs (server.cpp,
            // invalid_upgrade_response): none costs a backend a connection.
            auto r = co_await core_.connect(&req, peer, &sub);
            if (auto* no = std::get_if<refusal>(&r)) {
                auto res = make_response(no->status, no->body);
                for (const auto& [name, value] : no->fields) res.insert(name, value);
                co_return res;
            }
            peer.attachment = std::make_shared<upstream_conn>(std::move(std::get<upstream_conn>(r)));
            co_return std::nullopt;
        };
    }

    std::shared_ptr<channel_events> make_handler(std::shared_ptr<ws_session> s, const http_request&, const peer_info& peer,
                                                 std::uint64_t id) override {
        auto up = std::static_pointer_cast<upstream_conn>(peer.attachment);
        if (!up) {
            net::post(s->get_executor(), [s] { s->close(1011, "no upstream"); });
            return std::make_shared<refuse_events>();
        }
        auto cfg = core_.bridge_cfg(id, up->slot);
        // Pings and pongs pass through the bridge, compressed connections included (the session
        // leaves the client's pings to it); --fault-stall-pongs: no answer at all.
        const bool stall = core_.stalls_pongs();
        s->set_answer_pings(false);
        if (up->ws) {
            auto b = std::make_shared<ws_ws_bridge>(s, up->ws, std::move(cfg));
            net::post(s->get_executor(), [b] { b->start(); });
            return b->client_handler();
        }
        // TCP has no pings to pass them on to: the bridge answers them.
        cfg.answer_pings = !stall;
        auto b = std::make_shared<ws_tcp_bridge>(s, std::move(*up->sock), true, std::move(cfg));
        net::post(s->get_executor(), [b] { b->start(); });
        return b->ws_handler();
    }

    std::string access_backend(const peer_info& peer) override {
        auto up = std::static_pointer_cast<upstream_conn>(peer.attachment);
        return up ? core_.lb().backend(up->slot->i).name : std::string();
    }

    void render_metrics(std::string& out) override { core_.lb().render_metrics(out); }
    void stop() override { core_.stop(); }

private:
    proxy_core& core_;
};

/// The tcp:// listener: every accepted connection gets its own WebSocket upstream connection.
/// It ends like the WebSocket listeners (shutdown_control: drain, then Close 1001) and logs
/// each tunnel in their access log format. Everything runs on one thread.
class tcp_listener {
public:
    tcp_listener(proxy_options& o, proxy_core& core)
        : o_(o),
          core_(core),
          shutdown_(ioc_, {.drain_first = o.serve.drain_first, .drain_timeout = o.serve.drain_timeout, .quiet = o.serve.quiet},
                    {.stop_accepting =
                         [this] {
                             error_code ignored;
                             acceptor_.close(ignored);
                         },
                     .close_all = [this](std::uint16_t code, const std::string& reason) { close_all(code, reason); },
                     .idle = [this] { return live_.empty(); },
                     .finish =
                         [this] {
                             error_code ignored;
                             acceptor_.close(ignored);
                             core_.stop();
                             ioc_.stop();
                         },
                     .log = [](const std::string& line) {
                         std::cerr << line << '\n';
                         std::cerr.flush();
                     }}) {}

    int run() {
        listen();
        shutdown_.watch_signals();
        core_.start_health(ioc_);
        do_accept();
        ioc_.run();
        // Tunnels still open (a second signal): drop them, so that their pending operations
        // complete with errors and release what they hold (a bridge and its session hold each
        // other until the session ends), for half a second at most.
        std::vector<std::weak_ptr<ws_session>> open;  // ending one erases it from live_
        for (auto& [id, t] : live_) open.push_back(t.ws);
        for (auto& w : open)
            if (auto ws = w.lock()) ws->abort("proxy exiting");
        ioc_.restart();
        ioc_.run_for(std::chrono::milliseconds(500));
        return shutdown_.exit_code();
    }

private:
    /// A tunnel from accept to its end; `ws` is empty while its upstream is being connected.
    struct tunnel {
        std::weak_ptr<ws_session> ws;
    };

    void listen() {
        const auto& l = o_.serve.server.listen;
        error_code ec;
        auto addr = net::ip::make_address(l.host == "localhost" ? "127.0.0.1" : l.host, ec);
        if (ec) throw failure(exit_code::usage, fmt::format("cannot listen on '{}': not an IP address", l.host));
        tcp::endpoint ep(addr, l.port);
        acceptor_.open(ep.protocol(), ec);
        if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec) acceptor_.bind(ep, ec);
        if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
        if (ec) throw failure(exit_code::failure, fmt::format("cannot listen on {}: {}", format_host_port(l.host, l.port), listen_problem(ec)));
        const auto local = acceptor_.local_endpoint();
        const std::string url = fmt::format("tcp://{}", format_host_port(local.address().to_string(), local.port()));
        if (o_.serve.announce_json)
            std::cerr << nlohmann::ordered_json{{event_key::ts, rfc3339_now()},
                                                {event_key::type, "listening"},
                                                {"url", url},
                                                {"tls", false},
                                                {"threads", 1},
                                                {"pid", ::getpid()},
                                                {"address", local.address().to_string()},
                                                {"port", local.port()}}
                             .dump()
                      << '\n';
        else
            std::cerr << "listening on " << url << '\n';
        std::cerr.flush();
    }

    void do_accept() {
        acceptor_.async_accept([this](error_code ec, tcp::socket sock) {
            if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
            if (!ec && o_.serve.max_connections && live_.size() >= o_.serve.max_connections) {
                // No HTTP to answer 503 with: the tunnel is refused by closing it at once.
                error_code ignored;
                if (!o_.serve.quiet) {
                    const auto remote = sock.remote_endpoint(ignored);
                    core_.log(fmt::format("tcp client {}: refused: too many connections (limit {})",
                                          format_host_port(remote.address().to_string(), remote.port()),
                                          o_.serve.max_connections));
                }
                sock.close(ignored);
            } else if (!ec) {
                const auto id = core_.next_id();
                live_.emplace(id, tunnel{});
                net::co_spawn(ioc_, open_tunnel(std::move(sock), id), net::detached);
            }
            do_accept();
        });
    }

    net::awaitable<void> open_tunnel(tcp::socket sock, std::uint64_t id) {
        const auto accepted = steady_clock::now();
        error_code ignored;
        const auto remote = sock.remote_endpoint(ignored);
        peer_info peer;
        peer.address = remote.address().to_string();
        peer.port = remote.port();
        auto r = co_await core_.connect(nullptr, peer, nullptr);
        auto* up = std::get_if<upstream_conn>(&r);
        if (!up || !up->ws) {
            if (auto* no = std::get_if<refusal>(&r); no && !o_.serve.quiet)
                core_.log(fmt::format("tcp client {}: {}", peer.address, no->body));
            sock.close(ignored);
            tunnel_gone(id);
            co_return;
        }
        auto cfg = core_.bridge_cfg(id, up->slot);
        cfg.on_end = [this, id, keep = std::move(cfg.on_end), w = std::weak_ptr<ws_session>(up->ws),
                      peer = format_host_port(peer.address, peer.port), backend = o_.upstreams[up->slot->i].name,
                      accepted](const close_info& info) {
            if (keep) keep(info);
            live_.erase(id);  // its --max-connections slot is free before its access line is out
            if (auto ws = w.lock(); ws && !o_.serve.quiet) {
                // The WebSocket runs to the upstream: what it sent is what the client sent.
                const auto& st = ws->stats();
                std::cerr << format_access_entry(o_.serve.log, {.peer = peer,
                                                                .backend = backend,
                                                                .duration = steady_clock::now() - accepted,
                                                                .messages_in = st.messages_out,
                                                                .bytes_in = st.bytes_out,
                                                                .messages_out = st.messages_in,
                                                                .bytes_out = st.bytes_in,
                                                                .close = info,
                                                                .dropped_messages = st.dropped_messages})
                          << '\n';
                std::cerr.flush();
            }
            // After the bridge has finished with this call: ending the run may follow.
            net::post(ioc_, [this] { shutdown_.maybe_finish(); });
        };
        auto b = std::make_shared<ws_tcp_bridge>(up->ws, std::move(sock), false, std::move(cfg));
        up->ws->start(b->ws_handler());
        b->start();
        if (auto it = live_.find(id); it != live_.end()) it->second.ws = up->ws;
        // Connected after the drain deadline: it gets its Close at once, like the rest.
        if (closing_) up->ws->close(closing_->first, closing_->second);
    }

    void tunnel_gone(std::uint64_t id) {
        live_.erase(id);
        shutdown_.maybe_finish();
    }

    void close_all(std::uint16_t code, const std::string& reason) {
        closing_.emplace(code, reason);
        for (auto& [id, t] : live_)
            if (auto ws = t.ws.lock()) ws->close(code, reason);
    }

    proxy_options& o_;
    proxy_core& core_;
    net::io_context ioc_{1};
    tcp::acceptor acceptor_{ioc_};
    std::unordered_map<std::uint64_t, tunnel> live_;
    std::optional<std::pair<std::uint16_t, std::string>> closing_;  ///< set once the rest were told to close
    shutdown_control shutdown_;
};

}  // namespace

int run_proxy(proxy_options o) {
    proxy_core core(o);
    if (o.tcp_listener) return tcp_listener(o, core).run();
    o.serve.service = std::make_shared<proxy_service>(core);
    o.serve.name = "proxy";
    return run_serve(o.serve);
}

}  // namespace wsx
