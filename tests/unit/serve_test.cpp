#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "exec.hpp"
#include "metrics.hpp"
#include "serve_app.hpp"
#include "server.hpp"
#include "static_files.hpp"

using namespace wsx;

TEST_CASE("split_command_line splits like a shell without expanding", "[serve]") {
    using v = std::vector<std::string>;
    CHECK(*split_command_line("cat") == v{"cat"});
    CHECK(*split_command_line("  sh  -c  'echo $X; exit 3' ") == v{"sh", "-c", "echo $X; exit 3"});
    CHECK(*split_command_line(R"(a "b c" d\ e "x\"y" 'it''s')") == v{"a", "b c", "d e", "x\"y", "its"});
    CHECK(*split_command_line(R"("$HOME \q")") == v{"$HOME \\q"});
    CHECK(*split_command_line("''") == v{""});
    CHECK(split_command_line("").value().empty());
    CHECK_FALSE(split_command_line("'open"));
    CHECK_FALSE(split_command_line("\"open"));
}

TEST_CASE("close_for_status maps exit statuses to close codes", "[serve]") {
    CHECK(close_for_status(0).code == 1000);
    auto e3 = close_for_status(3 << 8);  // WEXITSTATUS 3
    CHECK(e3.code == 1011);
    CHECK(e3.reason == "exit 3");
    auto k9 = close_for_status(9);  // WTERMSIG 9
    CHECK(k9.code == 1011);
    CHECK(k9.reason == "signal 9");
}

TEST_CASE("find_program searches PATH like execvp", "[serve]") {
    CHECK(find_program("sh"));
    CHECK(find_program("/bin/sh") == std::optional<std::string>("/bin/sh"));
    CHECK_FALSE(find_program("no-such-program-wsx"));
    CHECK_FALSE(find_program("/nonexistent/prog"));
    CHECK_FALSE(find_program(""));
}

TEST_CASE("safe_relative_path refuses anything that could leave the root", "[serve]") {
    CHECK(safe_relative_path("/") == std::optional<std::string>(""));
    CHECK(safe_relative_path("/a/b.html?x=1#f") == std::optional<std::string>("a/b.html"));
    CHECK(safe_relative_path("/a/./b//c") == std::optional<std::string>("a/b/c"));
    CHECK(safe_relative_path("/sp%20ace") == std::optional<std::string>("sp ace"));
    CHECK_FALSE(safe_relative_path("/../etc/passwd"));
    CHECK_FALSE(safe_relative_path("/a/../../x"));
    CHECK_FALSE(safe_relative_path("/%2e%2e/x"));
    CHECK_FALSE(safe_relative_path("/a%2f..%2f..%2fx"));
    CHECK_FALSE(safe_relative_path("/a%00b"));
    CHECK_FALSE(safe_relative_path("/a\\..\\b"));
    CHECK_FALSE(safe_relative_path("/bad%zz"));
    CHECK_FALSE(safe_relative_path("no-slash"));
}

TEST_CASE("content_type_for knows the web's usual types", "[serve]") {
    CHECK(content_type_for("index.html") == "text/html; charset=utf-8");
    CHECK(content_type_for("APP.JS") == "text/javascript; charset=utf-8");
    CHECK(content_type_for("x.wasm") == "application/wasm");
    CHECK(content_type_for("dir.v2/readme") == "application/octet-stream");
    CHECK(content_type_for("noext") == "application/octet-stream");
}

TEST_CASE("effective_close_code describes how a connection ended", "[serve]") {
    close_info clean;
    clean.clean = true;
    clean.code = 1001;
    CHECK(effective_close_code(clean) == 1001);
    close_info sent;
    sent.sent_code = 1008;
    CHECK(effective_close_code(sent) == 1008);
    close_info big;
    big.error = websocket::error::message_too_big;
    CHECK(effective_close_code(big) == 1009);
    close_info utf8;
    utf8.error = websocket::error::bad_frame_payload;
    CHECK(effective_close_code(utf8) == 1007);
    close_info proto;
    proto.error = websocket::error::bad_opcode;
    CHECK(effective_close_code(proto) == 1002);
    close_info gone;
    gone.error = net::error::connection_reset;
    CHECK(effective_close_code(gone) == 1006);
}

TEST_CASE("redact_target hides credentials in query parameters", "[serve]") {
    CHECK(redact_target("/chat") == "/chat");
    CHECK(redact_target("/chat?x=1") == "/chat?x=1");
    CHECK(redact_target("/?token=s3cret") == "/?token=REDACTED");
    CHECK(redact_target("/a?x=1&access_token=t&y=2") == "/a?x=1&access_token=REDACTED&y=2");
    CHECK(redact_target("/?Token=a&t%6fken=b") == "/?Token=REDACTED&t%6fken=REDACTED");
    CHECK(redact_target("/?token=&token&mytoken=x") == "/?token=&token&mytoken=x");
    CHECK(redact_target("/?token=a#frag") == "/?token=REDACTED#frag");
    CHECK(redact_target("/?&&token=a&") == "/?&&token=REDACTED&");
}

TEST_CASE("cgi_environment follows websocketd", "[serve]") {
    http_request req{http::verb::get, "/app/x%20y?a=1&b=2", 11};
    req.set(http::field::host, "example.test:8080");
    req.set("X-Custom-Thing", "v");
    req.set(http::field::user_agent, "ua");
    peer_info peer;
    peer.address = "192.0.2.7";
    peer.port = 5555;
    peer.local_port = 8080;
    peer.tls = true;
    peer.vars["sub"] = "alice";
    auto env = cgi_environment(req, peer, "/app", {}, 42);
    auto has = [&](const std::string& kv) { return std::find(env.begin(), env.end(), kv) != env.end(); };
    CHECK(has("REMOTE_ADDR=192.0.2.7"));
    CHECK(has("REMOTE_PORT=5555"));
    CHECK(has("SERVER_NAME=example.test"));
    CHECK(has("SERVER_PORT=8080"));
    CHECK(has("SCRIPT_NAME=/app"));
    CHECK(has("PATH_INFO=/x y"));
    CHECK(has("QUERY_STRING=a=1&b=2"));
    CHECK(has("REQUEST_URI=/app/x%20y?a=1&b=2"));
    CHECK(has("HTTPS=on"));
    CHECK(has("HTTP_X_CUSTOM_THING=v"));
    CHECK(has("HTTP_USER_AGENT=ua"));
    CHECK(has("WSX_SUB=alice"));
    CHECK(has("WSX_CONNECTION_ID=42"));
    CHECK(has("WSX_SCHEME=wss"));
}

TEST_CASE("cgi_environment does not turn a Proxy header into HTTP_PROXY", "[serve]") {
    http_request req{http::verb::get, "/", 11};
    req.set("Proxy", "http://evil.example:3128");
    req.set("PROXY", "http://evil.example:3129");
    req.set("Proxy-Thing", "kept");
    peer_info peer;
    auto env = cgi_environment(req, peer, "", {}, 1);
    CHECK(std::none_of(env.begin(), env.end(), [](const std::string& kv) { return kv.rfind("HTTP_PROXY=", 0) == 0; }));
    CHECK(std::find(env.begin(), env.end(), "HTTP_PROXY_THING=kept") != env.end());
}

TEST_CASE("cgi_environment for a unix socket peer has no ports", "[serve]") {
    http_request req{http::verb::get, "/", 11};
    req.set(http::field::host, "localhost");
    peer_info peer;
    peer.address = "unix:/run/wsx.sock";
    peer.is_unix = true;
    peer.vars["peer_uid"] = "1000";
    auto env = cgi_environment(req, peer, "", {}, 1);
    auto has = [&](const std::string& kv) { return std::find(env.begin(), env.end(), kv) != env.end(); };
    CHECK(has("REMOTE_ADDR=unix:/run/wsx.sock"));
    CHECK(has("REMOTE_PORT="));
    CHECK(has("SERVER_PORT="));
    CHECK(has("SERVER_NAME=localhost"));
    CHECK(has("WSX_PEER_UID=1000"));
    CHECK(has("WSX_SCHEME=ws"));
}

TEST_CASE("server_metrics renders Prometheus text", "[serve]") {
    server_metrics m(2);
    m.worker(0).messages_in.add(3);
    m.worker(1).messages_in.add(4);
    m.worker(1).bytes_out.add(10);
    ++m.connections_total;
    m.count_close(1000);
    m.count_close(1000);
    m.count_rejection("max_connections");
    auto text = m.render();
    CHECK(text.find("wsx_messages_total{direction=\"in\"} 7\n") != std::string::npos);
    CHECK(text.find("wsx_bytes_total{direction=\"out\"} 10\n") != std::string::npos);
    CHECK(text.find("wsx_connections_total 1\n") != std::string::npos);
    CHECK(text.find("wsx_closes_total{code=\"1000\"} 2\n") != std::string::npos);
    CHECK(text.find("wsx_rejections_total{reason=\"max_connections\"} 1\n") != std::string::npos);
    CHECK(text.find("# TYPE wsx_connections_current gauge\n") != std::string::npos);
}

// ---------------------------------------------------------------- the upgrade request

namespace {

http_request upgrade_request(std::string key = "dGhlIHNhbXBsZSBub25jZQ==") {
    http_request req{http::verb::get, "/", 11};
    req.set(http::field::host, "127.0.0.1:8080");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, key);
    req.set(http::field::sec_websocket_version, "13");
    return req;
}

/// What the listener's HTTP parser makes of `text`: the error it stops with.
error_code parse_error(std::string_view text) {
    http::request_parser<http::string_body> parser;
    error_code ec;
    parser.put(net::buffer(text.data(), text.size()), ec);
    return ec;
}

}  // namespace

TEST_CASE("valid_websocket_key wants base64 of exactly 16 bytes", "[serve]") {
    CHECK(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));   // RFC 6455's sample
    CHECK(valid_websocket_key("AAAAAAAAAAAAAAAAAAAAAA=="));
    CHECK(valid_websocket_key("/////////////////////w=="));
    CHECK(valid_websocket_key("+++++++++++++++++++++Q=="));
    CHECK_FALSE(valid_websocket_key(""));
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ"));       // unpadded
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));      // one pad
    CHECK_FALSE(valid_websocket_key("MTIzNDU2Nzg="));                 // 8 bytes
    CHECK_FALSE(valid_websocket_key("ZWlnaHRlZW4gYnl0ZXMhISEh"));     // 18 bytes, 24 characters
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZR=="));     // pad bits set
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ===="));
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25j-Q=="));     // base64url alphabet
    CHECK_FALSE(valid_websocket_key("dGhlIHNhbXBsZSBub25j ZQ="));
    CHECK_FALSE(valid_websocket_key("not base64 at all!"));
    CHECK_FALSE(valid_websocket_key(std::string_view("dGhlIHNhbXBsZSBub25j\0Q==", 24)));
}

TEST_CASE("invalid_upgrade_response refuses what RFC 6455 4.2.1 refuses", "[serve]") {
    CHECK_FALSE(invalid_upgrade_response(upgrade_request()));

    auto check_refusal = [](const http_request& req, http::status status, const std::string& body) {
        const auto res = invalid_upgrade_response(req);
        REQUIRE(res);
        CHECK(res->result() == status);
        CHECK(res->body() == body + "\n");
        CHECK_FALSE(res->keep_alive());
    };
    check_refusal(upgrade_request("MTIzNDU2Nzg="), http::status::bad_request,
                  "invalid Sec-WebSocket-Key: not the base64 encoding of 16 bytes");
    check_refusal(upgrade_request("not base64"), http::status::bad_request,
                  "invalid Sec-WebSocket-Key: not the base64 encoding of 16 bytes");
    auto req = upgrade_request();
    req.erase(http::field::sec_websocket_key);
    check_refusal(req, http::status::bad_request, "missing Sec-WebSocket-Key header");
    req = upgrade_request();
    req.erase(http::field::host);
    check_refusal(req, http::status::bad_request, "missing Host header");
    req = upgrade_request();
    req.erase(http::field::sec_websocket_version);
    check_refusal(req, http::status::bad_request, "missing Sec-WebSocket-Version header");
    req = upgrade_request();
    req.version(12);  // Beast's accept wants exactly HTTP/1.1
    check_refusal(req, http::status::bad_request, "a WebSocket upgrade must be an HTTP/1.1 request");
    req = upgrade_request();
    req.set(http::field::sec_websocket_key, "");  // there, but empty
    check_refusal(req, http::status::bad_request, "invalid Sec-WebSocket-Key: not the base64 encoding of 16 bytes");
    req = upgrade_request();
    req.set(http::field::sec_websocket_version, "");  // an empty version is a wrong one
    check_refusal(req, http::status::upgrade_required, "unsupported Sec-WebSocket-Version: this server speaks 13");
    req = upgrade_request();
    req.set(http::field::sec_websocket_version, "8");
    check_refusal(req, http::status::upgrade_required, "unsupported Sec-WebSocket-Version: this server speaks 13");
    CHECK((*invalid_upgrade_response(req))[http::field::sec_websocket_version] == "13");

    const std::pair<http::field, const char*> twice[] = {
        {http::field::sec_websocket_key, "MDEyMzQ1Njc4OWFiY2RlZg=="},
        {http::field::authorization, "Bearer x"},
        {http::field::origin, "https://a.example"},
        {http::field::host, "other.example"},
        {http::field::sec_websocket_version, "13"},
    };
    for (const auto& [field, value] : twice) {
        INFO(http::to_string(field));
        req = upgrade_request();
        req.insert(field, value);
        if (field == http::field::authorization || field == http::field::origin) req.insert(field, value);
        check_refusal(req, http::status::bad_request, fmt::format("more than one {} header", http::to_string(field)));
    }
    // Fields that are lists may come several times.
    req = upgrade_request();
    req.insert(http::field::sec_websocket_protocol, "a");
    req.insert(http::field::sec_websocket_protocol, "b");
    req.insert(http::field::sec_websocket_extensions, "permessage-deflate");
    req.insert(http::field::sec_websocket_extensions, "x-other");
    CHECK_FALSE(invalid_upgrade_response(req));
}

TEST_CASE("malformed_request_response names what the parser refused", "[serve]") {
    const std::string head = "GET / HTTP/1.1\r\nHost: h\r\n";
    auto answer = [](std::string_view text) { return malformed_request_response(parse_error(text)); };

    CHECK_FALSE(answer(head + "\r\n"));   // a good request: no error
    auto res = answer(head + std::string("X-Note: a\0b\r\n\r\n", 15));
    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(res->body() == "malformed request: control character (such as NUL) in a header field value\n");
    CHECK_FALSE(res->keep_alive());
    res = answer(head + std::string("X-No\0te: a\r\n\r\n", 14));
    REQUIRE(res);
    CHECK(res->body() == "malformed request: invalid character in a header field name\n");
    res = answer("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n");
    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    res = answer("G\x01T / HTTP/1.1\r\n\r\n");
    REQUIRE(res);
    CHECK(res->body() == "malformed request: bad method in the request line\n");
    res = answer(head + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n");
    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);

    // Nothing against the request: a client that left or was slow gets no answer.
    CHECK_FALSE(malformed_request_response(http::error::end_of_stream));
    CHECK_FALSE(malformed_request_response(http::error::partial_message));
    CHECK_FALSE(malformed_request_response(net::error::connection_reset));
    CHECK_FALSE(malformed_request_response(beast::error::timeout));
    CHECK_FALSE(malformed_request_response(parse_error("GET / HTTP/1.1\r\nHost:")));   // need more
}

TEST_CASE("choose_subprotocol takes the first of ours that the client offers", "[serve]") {
    auto offering = [](std::vector<std::string> fields) {
        http_request req{http::verb::get, "/", 11};
        for (const auto& f : fields) req.insert(http::field::sec_websocket_protocol, f);
        return req;
    };
    const std::vector<std::string> ours{"chat.v2", "chat.v1"};
    CHECK(choose_subprotocol(offering({"chat.v1, chat.v2"}), ours) == std::optional<std::string>("chat.v2"));
    CHECK(choose_subprotocol(offering({"other", " chat.v1 "}), ours) == std::optional<std::string>("chat.v1"));
    CHECK(choose_subprotocol(offering({"x,\tchat.v1,"}), ours) == std::optional<std::string>("chat.v1"));
    CHECK_FALSE(choose_subprotocol(offering({}), ours));
    CHECK_FALSE(choose_subprotocol(offering({"chat.v3, CHAT.V1"}), ours));  // names compare exactly
    CHECK_FALSE(choose_subprotocol(offering({"chat.v1"}), {}));
}

TEST_CASE("JSON log lines start with ts and type, as the events do", "[serve]") {
    const auto j = nlohmann::json::parse(format_log_event(log_format::json, "shutdown", "draining"));
    REQUIRE(j.is_object());
    CHECK(j["type"] == "shutdown");
    CHECK(j["message"] == "draining");
    const auto ts = j["ts"].get<std::string>();
    CHECK(ts.size() == 27);  // 2026-12-04T16:14:59.123456Z
    CHECK(ts.back() == 'Z');
    CHECK_FALSE(j.contains("time"));
    CHECK_FALSE(j.contains("event"));

    access_entry e{.peer = "127.0.0.1:5000", .path = "/x", .backend = {}, .duration = std::chrono::milliseconds(3)};
    e.close.clean = true;
    e.close.code = 4000;
    e.close.reason = "done";
    const auto a = nlohmann::json::parse(format_access_entry(log_format::json, e));
    CHECK(a["type"] == "close");
    CHECK(a["code"] == 4000);
    CHECK(a["reason"] == "done");
    CHECK(a["ts"].get<std::string>().size() == 27);
    CHECK(format_log_event(log_format::text, "shutdown", "draining") == "draining");
}
