// wsx relay: parse options → relay_options + serve_options → validate (every problem at once) →
// run the relay as a service on serve's listener.
#include <cstdio>

#include <fmt/format.h>

#include "commands.hpp"
#include "relay.hpp"
#include "serve_app.hpp"
#include "server_options.hpp"
#include "units.hpp"

namespace wsx::cli {

namespace {
struct relay_args {
    std::string address = "127.0.0.1:8080";
    bool echo_self = false;
    std::string history;
    std::string subscriber_queue = "1MiB";
    std::string slow_consumer = "drop-oldest";
    std::string control_path;
    std::string acl_claim = "topics";
    std::string redis, redis_prefix = "wsx:relay", presence_ttl = "10s", redis_timeout = "2s";
    bool one_connection_per_user = false;
    bool durable = false;
    std::string durable_maxlen, durable_buffer = "8MiB";
    std::string redis_cacert, redis_cert, redis_key, redis_password_file;
    listener_args listener;
};
}  // namespace

runner setup_relay(CLI::App& app) {
    auto a = std::make_shared<relay_args>();
    app.add_option("address", a->address, "Where to listen: PORT, HOST:PORT, [V6]:PORT (port 0 picks a free one) or unix:PATH (a unix "
                   "socket; clients connect to ws+unix://PATH:/)")
        ->type_name("ADDR")->capture_default_str();

    const char* r = "Relay";
    app.add_flag("--echo-self", a->echo_self, "Deliver a publisher's messages to itself too")->group(r);
    app.add_option("--history", a->history,
                   "Keep the last N messages per topic: new subscribers may ask for them (?history, ?since=ID)")
        ->group(r)->type_name("N");
    app.add_option("--subscriber-queue", a->subscriber_queue,
                   "Bytes a slow subscriber may have waiting in the relay before --slow-consumer applies")
        ->group(r)->type_name("SIZE")->capture_default_str();
    app.add_option("--slow-consumer", a->slow_consumer,
                   "A subscriber whose queue is full: drop-oldest (drop its oldest waiting messages) or close (1013)")
        ->group(r)->type_name("POLICY")->capture_default_str()->check(CLI::IsMember({"drop-oldest", "close"}));
    app.add_option("--control-path", a->control_path,
                   "Also speak the JSON protocol at this path (it is always chosen by subprotocol wsx.relay.v1)")
        ->group(r)->type_name("PATH");
    app.add_option("--acl-claim", a->acl_claim,
                   "JWT claim listing the topic patterns a token may use: [\"chat.*\"] or "
                   "{\"subscribe\":[...],\"publish\":[...]}; no claim: all topics")
        ->group(r)->type_name("NAME")->capture_default_str();
    app.add_flag("--one-connection-per-user", a->one_connection_per_user,
                 "A user (a JWT's subject, or the --basic-auth user) holds one connection at a time: a new one closes "
                 "the older with 4001 'replaced', on every relay sharing --redis too (while Redis is unreachable, "
                 "on this relay only). Connections without an authenticated user (?id=NAME, anonymous) are never "
                 "replaced")
        ->group(r);
    app.add_option("--redis", a->redis,
                   "Share topics, history, presence and identities with every relay using this Redis: "
                   "redis://[user:pass@]host:port[/db], or rediss://... for TLS; or "
                   "redis+sentinel://host:port[,host:port...]/MASTER (user:pass@ and /db as above; rediss+sentinel:// "
                   "for TLS) to find the master through Redis Sentinel and follow its failovers (sentinels are asked "
                   "without AUTH); or redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS) for a Redis "
                   "Cluster: each topic on its own shard channel (SPUBLISH/SSUBSCRIBE), slot moves followed")
        ->group(r)->type_name("URL");
    app.add_option("--redis-prefix", a->redis_prefix, "Prefix of the keys and channels the relay uses in Redis")
        ->group(r)->type_name("PREFIX")->capture_default_str();
    app.add_option("--redis-timeout", a->redis_timeout,
                   "With --redis: a command unanswered this long (a frozen Redis) drops the connection; "
                   "the relay serves locally and reconnects")
        ->group(r)->type_name("DURATION")->capture_default_str();
    app.add_flag("--durable", a->durable,
                 "With --redis: messages between relays go through a Redis Stream that each relay reads on from the last "
                 "entry it saw, so a relay that loses Redis for a while delivers, once back, everything published "
                 "meanwhile, in order and once; its own publishes wait in an outbox (--durable-buffer) until Redis takes "
                 "them. Every relay sharing the Redis and --redis-prefix needs it. Needs a redis:// or redis+sentinel:// "
                 "URL (not a Redis Cluster)")
        ->group(r);
    app.add_option("--durable-maxlen", a->durable_maxlen,
                   "With --durable: stream entries Redis keeps (about; default 100000). A relay further behind than that "
                   "loses the oldest: counted in wsx_relay_redis_missed_total and logged")
        ->group(r)->type_name("N");
    auto* durable_buffer = app.add_option("--durable-buffer", a->durable_buffer,
                   "With --durable: bytes of publishes a relay holds for Redis (unreachable or slow); beyond it a publish "
                   "is refused (protocol clients get an error, raw publishers are closed with 1013)")
        ->group(r)->type_name("SIZE")->capture_default_str();
    app.add_option("--redis-cacert", a->redis_cacert,
                   "With a rediss:// URL: trust only the CAs in this PEM file to verify the Redis server "
                   "(default: the system's trusted CAs); the server's name or IP is always checked against the host "
                   "connected to (the URL's; with sentinels, each sentinel's and the master's they name)")
        ->group(r)->type_name("FILE");
    app.add_option("--redis-cert", a->redis_cert,
                   "With a rediss:// URL: present this client certificate (PEM) to Redis (for tls-auth-clients); needs --redis-key")
        ->group(r)->type_name("FILE");
    app.add_option("--redis-key", a->redis_key, "The private key (PEM) of --redis-cert")->group(r)->type_name("FILE");
    app.add_option("--redis-password-file", a->redis_password_file,
                   "With --redis: the Redis password (AUTH) is this file's one line, kept out of ps (without it: the "
                   "URL's password, else $WSX_REDIS_PASSWORD); redis://NAME@host then names the ACL user")
        ->group(r)->type_name("FILE");
    app.add_option("--presence-ttl", a->presence_ttl,
                   "With --redis: an instance that stops refreshing its presence for this long is considered gone")
        ->group(r)->type_name("DURATION")->capture_default_str();

    add_listener_options(app, a->listener);

    // The relay queues per subscriber itself (--slow-consumer): the session's own overflow
    // policy does not apply, and its queue limit defaults to the subscriber queue.
    app.remove_option(app.get_option("--overflow"));
    // The path names the topic: an upgrade path filter would confine the relay to one topic.
    app.remove_option(app.get_option("--path"));
    auto* sql = app.get_option("--send-queue-limit");
    sql->description("Bytes a subscriber's connection may hold on top of --subscriber-queue (the relay fills it to half; "
                     "default the size of the subscriber queue)")
        ->default_str("");
    app.footer(
        "Examples:\n"
        "  wsx relay 8080                              # clients of ws://127.0.0.1:8080/chat share topic 'chat'\n"
        "  wsx relay 8080 --history 100                # ws://.../chat?history replays the last 100\n"
        "  wsx relay 8080 --redis redis://127.0.0.1:6379   # one hub across every relay on that Redis\n"
        "  wsx relay 8080 --redis redis://127.0.0.1:6379 --durable   # a Redis outage delays messages, loses none\n"
        "  wsx relay 8080 --redis redis+cluster://10.0.0.5:6379,10.0.0.6:6379   # Redis Cluster: a channel per topic\n"
        "  wsx relay 8080 --jwt-secret k --acl-claim topics\n"
        "  wsx relay unix:/run/wsx/relay.sock          # clients of ws+unix:///run/wsx/relay.sock:/chat\n"
        "\nA client of ws://HOST:PORT/TOPIC publishes every message it sends to TOPIC and receives\n"
        "what the others publish. Query: ?history[=N] replays kept messages, ?since=ID resumes after\n"
        "message ID, ?id=NAME chooses the identity when there is no JWT subject, ?batch=N,INTERVAL delivers\n"
        "up to N messages, or what INTERVAL collected, as one text frame holding a JSON array (raw clients:\n"
        "text payloads as strings, binary ones as {\"data\":BASE64,\"binary\":true}). Clients offering the\n"
        "subprotocol wsx.relay.v1 speak JSON: {\"op\":\"subscribe\"|\"unsubscribe\"|\"publish\"|\"presence\"|\"send\"|\"batch\", ...}\n"
        "(see the README). Prints 'listening on ws://HOST:PORT' (ws+unix://PATH:/ for unix:PATH) on stderr\n"
        "once ready.");

    return [a, sql, durable_buffer]() -> int {
        problems p;
        serve_options o;
        std::string err;
        if (auto la = parse_listen_address(a->address, &err)) o.server.listen = *la;
        else p.add(err);

        relay_options ro;
        ro.echo_self = a->echo_self;
        ro.history = count_arg(p, "--history", a->history, 0, 1'000'000'000, "none");
        ro.subscriber_queue = size_arg(p, "--subscriber-queue", a->subscriber_queue);
        if (ro.subscriber_queue == 0) p.add("--subscriber-queue must be more than 0 bytes");
        ro.slow = a->slow_consumer == "close" ? slow_policy::close : slow_policy::drop_oldest;
        ro.control_path = a->control_path;
        if (!ro.control_path.empty() && ro.control_path.front() != '/')
            p.add(fmt::format("--control-path '{}': a path starts with '/'", ro.control_path));
        ro.acl_claim = a->acl_claim;
        ro.one_connection_per_user = a->one_connection_per_user;
        ro.redis_prefix = a->redis_prefix;
        if (!a->redis.empty()) {
            if (auto u = parse_redis_url(a->redis, err)) ro.redis = *u;
            else p.add(fmt::format("--redis '{}': {}", a->redis, err));
        }
        const auto ttl = duration_arg(p, "--presence-ttl", a->presence_ttl);
        ro.presence_ttl = std::max(std::chrono::milliseconds(300), std::chrono::duration_cast<std::chrono::milliseconds>(ttl));

        const auto rt = duration_arg(p, "--redis-timeout", a->redis_timeout);
        ro.redis_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(rt);
        // A value that is not a duration has been reported already (and left 0 behind).
        const bool reported = !a->redis_timeout.empty() && !parse_duration(a->redis_timeout);
        if (!reported && ro.redis_timeout.count() <= 0) p.add("--redis-timeout must be more than 0");
        if (ro.redis) {
            // TLS files and the password (a file, else the environment) travel with the URL.
            auto& u = *ro.redis;
            u.cacert = a->redis_cacert;
            u.cert = a->redis_cert;
            u.key = a->redis_key;
            const bool tls_files = !u.cacert.empty() || !u.cert.empty() || !u.key.empty();
            if (tls_files && !u.tls) p.add("--redis-cacert, --redis-cert and --redis-key apply to TLS only: use a rediss:// URL");
            else if (u.tls && !make_redis_tls(u, err)) p.add(err);
            if (!a->redis_password_file.empty()) {
                if (!u.password.empty() && !u.name_only)
                    p.add("--redis-password-file and a password in the --redis URL cannot be combined: give it one way "
                          "(the file keeps it out of ps)");
                else if (auto pw = secret_arg(p, "--redis", "", "--redis-password-file", a->redis_password_file); !pw.empty())
                    use_redis_password(u, std::move(pw));
            } else if (auto pw = env_secret("WSX_REDIS_PASSWORD"); !pw.empty() && u.password.empty()) {
                use_redis_password(u, std::move(pw));
            }
        } else if (a->redis.empty() && (!a->redis_cacert.empty() || !a->redis_cert.empty() || !a->redis_key.empty() ||
                                        !a->redis_password_file.empty())) {
            p.add("--redis-cacert, --redis-cert, --redis-key and --redis-password-file go with --redis");
        }

        ro.durable = a->durable;
        ro.durable_maxlen = count_arg(p, "--durable-maxlen", a->durable_maxlen, 1, 1'000'000'000, "100000");
        if (a->durable_maxlen.empty()) ro.durable_maxlen = 100000;
        ro.durable_buffer = size_arg(p, "--durable-buffer", a->durable_buffer);
        if (ro.durable_buffer == 0 && !a->durable_buffer.empty() && parse_size(a->durable_buffer))
            p.add("--durable-buffer must be more than 0 bytes");
        if (a->durable && a->redis.empty())
            p.add("--durable needs --redis URL: the stream it reads lives in Redis (add --redis, or drop --durable)");
        if (a->durable && ro.redis && ro.redis->cluster())
            p.add("--durable needs a redis:// or redis+sentinel:// URL: it is not available with a Redis Cluster (drop "
                  "--durable, or point --redis at one Redis)");
        if (ro.redis && ro.redis->cluster() && ro.redis_prefix.find_first_of("{}") != std::string::npos)
            p.add(fmt::format("--redis-prefix '{}': no '{{' or '}}' with a redis+cluster:// URL (they would decide which "
                              "slot a key is in)", ro.redis_prefix));
        if (!a->durable && (!a->durable_maxlen.empty() || durable_buffer->count() > 0))
            p.add("--durable-maxlen and --durable-buffer go with --durable");

        apply_listener_options(p, a->listener, o);
        if (p.report("relay")) return static_cast<int>(exit_code::usage);

        // The relay keeps its own bounded queue per subscriber and feeds the session up to half
        // the session's limit (where the session signals room again); the session itself never
        // drops. Without --send-queue-limit the session holds at most the subscriber queue too.
        if (sql->count() == 0) o.server.session.send_queue_limit = std::max<std::size_t>(ro.subscriber_queue, 64u << 10);
        o.server.session.overflow = overflow_policy::queue;
        ro.session_high_water = o.server.session.send_queue_limit / 2;
        ro.quiet = o.quiet;
        ro.log = [](const std::string& line) {
            std::string l = line + '\n';
            std::fwrite(l.data(), 1, l.size(), stderr);
        };
        o.service = std::make_shared<relay_service>(std::move(ro));
        return run_serve(std::move(o));
    };
}

}  // namespace wsx::cli
