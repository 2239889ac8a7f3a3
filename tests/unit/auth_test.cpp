#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>

#include <jwt/jwt.hpp>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth.hpp"
#include "exit_code.hpp"

using wsx::auth_options;
using wsx::auth_result;
using wsx::authenticator;
using wsx::http_request;
using wsx::query_param;
namespace http = wsx::http;

namespace {

// ---------------------------------------------------------------- requests

http_request request(std::string target, std::map<std::string, std::string> headers = {}) {
    http_request req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    for (const auto& [name, value] : headers) req.set(name, value);
    return req;
}

http_request bearer(const std::string& token, std::string target = "/") {
    return request(std::move(target), {{"Authorization", "Bearer " + token}});
}

std::string b64(std::string_view s) {
    static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < s.size(); i += 3) {
        const unsigned v = static_cast<unsigned char>(s[i]) << 16 | static_cast<unsigned char>(s[i + 1]) << 8 | static_cast<unsigned char>(s[i + 2]);
        for (int k = 18; k >= 0; k -= 6) out += alphabet[v >> k & 63];
    }
    if (i + 1 == s.size()) {
        const unsigned v = static_cast<unsigned char>(s[i]) << 16;
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += "==";
    } else if (i + 2 == s.size()) {
        const unsigned v = static_cast<unsigned char>(s[i]) << 16 | static_cast<unsigned char>(s[i + 1]) << 8;
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += alphabet[v >> 6 & 63];
        out += '=';
    }
    return out;
}

std::string b64url(std::string_view s) {
    std::string out = b64(s);
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (auto& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    return out;
}

http_request basic(const std::string& user_pass) { return request("/", {{"Authorization", "Basic " + b64(user_pass)}}); }

http_request from_origin(const std::string& origin) { return request("/", {{"Origin", origin}}); }

// ---------------------------------------------------------------- keys and tokens

struct pkey_free {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};

struct key_pair {
    std::string private_pem;
    std::string public_pem;
    std::string certificate_pem;
    std::string type_specific_pem;   ///< e.g. "RSA PUBLIC KEY" (PKCS#1)
};

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(len));
    BIO_free(bio);
    return out;
}

key_pair make_keys(EVP_PKEY* raw) {
    REQUIRE(raw);
    std::unique_ptr<EVP_PKEY, pkey_free> key(raw);
    key_pair kp;
    BIO* bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1);
    kp.private_pem = bio_text(bio);
    bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_PUBKEY(bio, key.get()) == 1);
    kp.public_pem = bio_text(bio);
    bio = BIO_new(BIO_s_mem());
    OSSL_ENCODER_CTX* enc = OSSL_ENCODER_CTX_new_for_pkey(key.get(), EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", nullptr);
    REQUIRE(enc);
    if (OSSL_ENCODER_to_bio(enc, bio) == 1) kp.type_specific_pem = bio_text(bio);
    else BIO_free(bio);
    OSSL_ENCODER_CTX_free(enc);

    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key.get());
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("wsx test"), -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    REQUIRE(X509_sign(cert, key.get(), EVP_sha256()) > 0);
    bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_X509(bio, cert) == 1);
    kp.certificate_pem = bio_text(bio);
    X509_free(cert);
    return kp;
}

// Key generation is the slow part (RSA); each key is made once per run.
const key_pair& rsa_keys() {
    static const key_pair k = make_keys(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}));
    return k;
}
const key_pair& other_rsa_keys() {
    static const key_pair k = make_keys(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048}));
    return k;
}
const key_pair& ec_keys() {
    static const key_pair k = make_keys(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    return k;
}
const key_pair& other_ec_keys() {
    static const key_pair k = make_keys(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    return k;
}
const key_pair& ec384_keys() {
    static const key_pair k = make_keys(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
    return k;
}

std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// A token signed by cpp-jwt.
std::string sign(const std::string& alg, const std::string& key, const nlohmann::json& claims) {
    jwt::jwt_object obj{jwt::params::algorithm(alg), jwt::params::secret(key)};
    for (const auto& [name, value] : claims.items()) obj.add_claim(name, value);
    return obj.signature();
}

/// A token assembled by hand, for shapes cpp-jwt refuses to produce.
std::string forge(const nlohmann::json& header, const nlohmann::json& payload, std::string_view signature = "") {
    return b64url(header.dump()) + "." + b64url(payload.dump()) + "." + std::string(signature);
}

authenticator with_secret(const std::string& secret) { return authenticator::from_options({.jwt_secret = secret}); }

authenticator with_key(const std::string& pem, std::vector<std::string> algs = {}) {
    return authenticator::from_options({.jwt_public_key_pem = pem, .jwt_algorithms = std::move(algs)});
}

void check_refused(const auth_result& r, http::status status, const std::string& body) {
    CHECK_FALSE(r.ok);
    CHECK(r.status == status);
    CHECK(r.body == body);
}

void check_usage_error(const auth_options& opts, const std::string& fragment) {
    try {
        (void)authenticator::from_options(opts);
        FAIL("accepted options that should be refused (" << fragment << ")");
    } catch (const wsx::failure& e) {
        CHECK(e.code() == wsx::exit_code::usage);
        CHECK_THAT(e.what(), Catch::Contains(fragment));
    }
}

}  // namespace

// ---------------------------------------------------------------- query_param

TEST_CASE("query_param finds and percent-decodes parameters", "[auth]") {
    CHECK(query_param("/ws?token=abc", "token") == "abc");
    CHECK(query_param("/ws?a=1&token=abc&b=2", "token") == "abc");
    CHECK(query_param("/ws?token=first&token=second", "token") == "first");
    CHECK(query_param("/ws?token=a%2Bb%20c%3D%26", "token") == "a+b c=&");
    CHECK(query_param("/ws?token=a+b", "token") == "a+b");   // '+' stays a plus
    CHECK(query_param("/ws?%74oken=x", "token") == "x");     // encoded key
    CHECK(query_param("/ws?token", "token") == "");
    CHECK(query_param("/ws?token=", "token") == "");
    CHECK(query_param("/ws?token=x#frag", "token") == "x");
    CHECK(query_param("/ws?mytoken=x&tokens=y", "token") == std::nullopt);
    CHECK(query_param("/ws", "token") == std::nullopt);
    CHECK(query_param("/ws?", "token") == std::nullopt);
    CHECK(query_param("/ws?token=%zz", "token") == std::nullopt);
    CHECK(query_param("/ws?token=abc%4", "token") == std::nullopt);
    CHECK(query_param("/ws?token=abc%", "token") == std::nullopt);
    CHECK(query_param("/ws?a=%zz&token=ok", "token") == "ok");   // a bad neighbour does not matter
}

// ---------------------------------------------------------------- nothing configured

TEST_CASE("an empty configuration accepts everything", "[auth]") {
    const auto a = authenticator::from_options({});
    CHECK_FALSE(a.enabled());
    CHECK(a.check(request("/")).ok);
    CHECK(a.check(from_origin("https://evil.example")).ok);
    CHECK_FALSE(wsx::to_response(a.check(request("/"))));
}

// ---------------------------------------------------------------- static token

TEST_CASE("static token: bearer header or ?token=", "[auth]") {
    const auto a = authenticator::from_options({.token = "s3cret/+="});
    CHECK(a.enabled());
    CHECK(a.check(bearer("s3cret/+=")).ok);
    CHECK(a.check(request("/", {{"Authorization", "bearer s3cret/+="}})).ok);   // scheme is case-insensitive
    CHECK(a.check(request("/", {{"Authorization", "Bearer   s3cret/+="}})).ok);   // 1*SP after the scheme
    CHECK(a.check(request("/ws?token=s3cret%2F%2B%3D")).ok);
    CHECK(a.check(request("/ws?x=1&token=s3cret/+=")).ok);

    check_refused(a.check(bearer("s3cret")), http::status::unauthorized, "invalid token");
    check_refused(a.check(bearer("s3cret/+==")), http::status::unauthorized, "invalid token");
    check_refused(a.check(request("/ws?token=wrong")), http::status::unauthorized, "invalid token");
    // The header wins over the query.
    check_refused(a.check(bearer("wrong", "/ws?token=s3cret/+=")), http::status::unauthorized, "invalid token");

    const auto missing = a.check(request("/"));
    CHECK_FALSE(missing.ok);
    CHECK(missing.status == http::status::unauthorized);
    CHECK_THAT(missing.body, Catch::StartsWith("missing credentials"));
    CHECK_THAT(missing.body, Catch::Contains("Bearer"));
    CHECK_THAT(missing.body, Catch::Contains("?token="));
    REQUIRE(missing.challenges.size() == 1);
    CHECK(missing.challenges[0] == "Bearer realm=\"wsx\"");
    // Basic credentials do not count when only a token is configured.
    CHECK_THAT(a.check(basic("user:s3cret/+=")).body, Catch::StartsWith("missing credentials"));
    CHECK_THAT(a.check(request("/", {{"Authorization", "Bearer"}})).body, Catch::StartsWith("missing credentials"));
}

TEST_CASE("credentials are compared exactly after the scheme", "[auth]") {
    const auto a = authenticator::from_options({.token = "secret", .basic_user = "ann", .basic_pass = "pw1"});
    // A field value holds no whitespace at either end (RFC 9110 5.5): the parser drops it, and
    // so does setting a field. What reaches the check is the token itself.
    CHECK(a.check(request("/", {{"Authorization", "  Bearer secret \t"}})).ok);
    // Anything else around the token makes another token.
    for (const char* value : {"Bearer secret x", "Bearer \tsecret", "Bearer secret\n", "Bearer secret\x0b", "Bearer secret,"}) {
        INFO(value);
        check_refused(a.check(request("/", {{"Authorization", value}})), http::status::unauthorized, "invalid token");
    }
    // The scheme and the credentials are separated by spaces only (RFC 9110 11.4).
    CHECK_THAT(a.check(request("/", {{"Authorization", "Bearer\tsecret"}})).body, Catch::StartsWith("missing credentials"));
    CHECK_THAT(a.check(request("/", {{"Authorization", "Bearer"}})).body, Catch::StartsWith("missing credentials"));
    CHECK_THAT(a.check(request("/", {{"Authorization", "Bearer   "}})).body, Catch::StartsWith("missing credentials"));
    for (const char* target : {"/?token=secret%20", "/?token=secret+", "/?token=%20secret", "/?token=secret%09", "/?token=secret%00"}) {
        INFO(target);
        check_refused(a.check(request(target)), http::status::unauthorized, "invalid token");
    }
    CHECK(a.check(request("/?token=secret")).ok);

    const std::string good = b64("ann:pw1");   // "YW5uOnB3MQ==": two pad characters, 4 pad bits
    REQUIRE(good == "YW5uOnB3MQ==");
    CHECK(a.check(request("/", {{"Authorization", "Basic " + good}})).ok);
    CHECK(a.check(request("/", {{"Authorization", "basic  " + good}})).ok);
    for (const std::string& value : std::vector<std::string>{"Basic " + good + "\x0b", "Basic YW5uOnB3MR==", "Basic YW5uOnB3MQ",
                                                            "Basic YW5uOnB3MQ=", "Basic " + b64("ann:pw1 "), "Basic " + b64(" ann:pw1"),
                                                            "Basic YW5u OnB3MQ=="}) {
        INFO(value);
        check_refused(a.check(request("/", {{"Authorization", value}})), http::status::unauthorized, "invalid user name or password");
    }
    // Pad bits in a 2-byte tail (one '=') too: "ann:pw12" is 8 bytes, "YW5uOnB3MTI=".
    const auto b = authenticator::from_options({.basic_user = "ann", .basic_pass = "pw12"});
    CHECK(b.check(request("/", {{"Authorization", "Basic YW5uOnB3MTI="}})).ok);
    check_refused(b.check(request("/", {{"Authorization", "Basic YW5uOnB3MTJ="}})), http::status::unauthorized,
                  "invalid user name or password");

    // A JWT: no slack either, and its base64url has no pad bits to spare.
    const auto j = with_secret("hmac-secret");
    const auto token = sign("HS256", "hmac-secret", {{"sub", "carol"}});
    CHECK(j.check(bearer(token)).ok);
    CHECK(j.check(request("/?access_token=" + token)).ok);
    CHECK_FALSE(j.check(bearer(token + "\x0b")).ok);
    CHECK_FALSE(j.check(request("/?access_token=" + token + "%20")).ok);
    CHECK_FALSE(j.check(request("/?token=" + token + "%20")).ok);
}

TEST_CASE("two Authorization or two Origin fields are refused with 400", "[auth]") {
    const auto a = authenticator::from_options({.token = "t", .origins = {"https://app.example"}});
    auto req = request("/", {{"Origin", "https://app.example"}, {"Authorization", "Bearer t"}});
    CHECK(a.check(req).ok);
    auto twice = req;
    twice.insert(http::field::authorization, "Bearer wrong");
    check_refused(a.check(twice), http::status::bad_request, "more than one Authorization header");
    twice = req;
    twice.insert(http::field::origin, "https://evil.example");
    check_refused(a.check(twice), http::status::bad_request, "more than one Origin header");
    // Even where nothing is configured: the request is ambiguous, whatever reads it next.
    const auto open = authenticator::from_options({});
    twice.insert(http::field::authorization, "Bearer x");
    CHECK(open.check(twice).status == http::status::bad_request);
    const auto res = wsx::to_response(a.check(twice));
    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(res->find(http::field::www_authenticate) == res->end());
}

TEST_CASE("to_response builds the 401 with WWW-Authenticate", "[auth]") {
    const auto a = authenticator::from_options({.token = "t", .basic_user = "u", .basic_pass = "p"});
    const auto res = wsx::to_response(a.check(bearer("wrong")));
    REQUIRE(res);
    CHECK(res->result() == http::status::unauthorized);
    CHECK(res->body() == "invalid token\n");
    std::vector<std::string> challenges;
    for (const auto& field : *res)
        if (field.name() == http::field::www_authenticate) challenges.emplace_back(field.value().data(), field.value().size());
    REQUIRE(challenges.size() == 2);
    CHECK(challenges[0] == "Bearer realm=\"wsx\", error=\"invalid_token\", error_description=\"invalid token\"");
    CHECK(challenges[1] == "Basic realm=\"wsx\", charset=\"UTF-8\"");
    CHECK_FALSE(wsx::to_response(a.check(bearer("t"))));
}

// ---------------------------------------------------------------- basic

TEST_CASE("basic auth", "[auth]") {
    const auto a = authenticator::from_options({.basic_user = "alice", .basic_pass = "pa:ss wörd"});
    const auto ok = a.check(basic("alice:pa:ss wörd"));
    CHECK(ok.ok);
    CHECK(ok.subject == "alice");
    CHECK(a.check(request("/", {{"Authorization", "BASIC " + b64("alice:pa:ss wörd")}})).ok);

    check_refused(a.check(basic("alice:wrong")), http::status::unauthorized, "invalid user name or password");
    check_refused(a.check(basic("bob:pa:ss wörd")), http::status::unauthorized, "invalid user name or password");
    check_refused(a.check(basic("alicepa:ss wörd")), http::status::unauthorized, "invalid user name or password");
    check_refused(a.check(request("/", {{"Authorization", "Basic !!!notbase64"}})), http::status::unauthorized,
                  "invalid user name or password");
    const auto missing = a.check(bearer("whatever"));
    CHECK_THAT(missing.body, Catch::StartsWith("missing credentials"));
    CHECK_THAT(missing.body, Catch::Contains("Basic"));
    REQUIRE(missing.challenges.size() == 1);
    CHECK(missing.challenges[0] == "Basic realm=\"wsx\", charset=\"UTF-8\"");

    check_usage_error({.basic_user = "a:b", .basic_pass = "c"}, "must not contain ':'");
}

TEST_CASE("several methods: any configured one may succeed", "[auth]") {
    const auto a = authenticator::from_options({.token = "static", .jwt_secret = "hmac-secret", .basic_user = "u", .basic_pass = "p"});
    CHECK(a.check(bearer("static")).ok);
    CHECK(a.check(basic("u:p")).ok);
    const auto jwt = a.check(bearer(sign("HS256", "hmac-secret", {{"sub", "carol"}})));
    CHECK(jwt.ok);
    CHECK(jwt.subject == "carol");
    // A refused JWT reports the JWT reason, not "invalid token" from the static check.
    check_refused(a.check(bearer(sign("HS256", "other", {{"sub", "carol"}}))), http::status::unauthorized, "bad signature");
    check_refused(a.check(bearer("nope")), http::status::unauthorized, "invalid token");
    check_refused(a.check(basic("u:x")), http::status::unauthorized, "invalid user name or password");
}

// ---------------------------------------------------------------- origins

TEST_CASE("origin allow-list: exact entries", "[auth]") {
    const auto a = authenticator::from_options({.origins = {"https://app.example", "http://localhost:8080/"}});
    CHECK(a.enabled());
    CHECK(a.check(from_origin("https://app.example")).ok);
    CHECK(a.check(from_origin("https://app.example:443")).ok);     // default port
    CHECK(a.check(from_origin("HTTPS://App.Example")).ok);         // case-insensitive
    CHECK(a.check(from_origin("http://localhost:8080")).ok);

    check_refused(a.check(from_origin("http://app.example")), http::status::forbidden, "origin not allowed: http://app.example");
    check_refused(a.check(from_origin("https://app.example:8443")), http::status::forbidden, "origin not allowed: https://app.example:8443");
    check_refused(a.check(from_origin("https://app.example.evil")), http::status::forbidden, "origin not allowed: https://app.example.evil");
    check_refused(a.check(from_origin("https://sub.app.example")), http::status::forbidden, "origin not allowed: https://sub.app.example");
    check_refused(a.check(from_origin("http://localhost")), http::status::forbidden, "origin not allowed: http://localhost");
    check_refused(a.check(from_origin("null")), http::status::forbidden, "origin not allowed: null");
    check_refused(a.check(from_origin("garbage")), http::status::forbidden, "origin not allowed: garbage");
    check_refused(a.check(request("/")), http::status::forbidden, "origin not allowed: the request has no Origin header");
    // Client text is made printable before it reaches the body.
    check_refused(a.check(from_origin("https://x\x01y\"z")), http::status::forbidden, "origin not allowed: https://x?y?z");

    const auto res = wsx::to_response(a.check(from_origin("https://evil.example")));
    REQUIRE(res);
    CHECK(res->result() == http::status::forbidden);
    CHECK(res->find(http::field::www_authenticate) == res->end());
}

TEST_CASE("origin allow-list: wildcard hosts", "[auth]") {
    const auto a = authenticator::from_options({.origins = {"https://*.example.com", "http://*.dev.test:3000"}});
    CHECK(a.check(from_origin("https://app.example.com")).ok);
    CHECK(a.check(from_origin("https://A-1.Example.Com:443")).ok);
    CHECK(a.check(from_origin("http://x.dev.test:3000")).ok);
    // '*' is exactly one DNS label.
    check_refused(a.check(from_origin("https://a.b.example.com")), http::status::forbidden, "origin not allowed: https://a.b.example.com");
    CHECK_FALSE(a.check(from_origin("https://x.y.z.example.com")).ok);
    CHECK_FALSE(a.check(from_origin("https://.example.com")).ok);
    CHECK_FALSE(a.check(from_origin("https://a..example.com")).ok);
    CHECK_FALSE(a.check(from_origin("http://a.b.dev.test:3000")).ok);
    CHECK_FALSE(a.check(from_origin("https://example.com")).ok);       // not the bare domain
    CHECK_FALSE(a.check(from_origin("https://badexample.com")).ok);
    CHECK_FALSE(a.check(from_origin("https://example.com.evil")).ok);
    CHECK_FALSE(a.check(from_origin("http://app.example.com")).ok);    // scheme matters
    CHECK_FALSE(a.check(from_origin("http://x.dev.test")).ok);         // port matters
}

TEST_CASE("origin allow-list: '*' and 'null'", "[auth]") {
    const auto any = authenticator::from_options({.origins = {"https://a.example", "*"}});
    CHECK(any.check(from_origin("https://whatever.example")).ok);
    CHECK(any.check(request("/")).ok);   // no Origin: non-browser clients
    CHECK_FALSE(any.enabled());

    const auto null = authenticator::from_options({.origins = {"null"}});
    CHECK(null.check(from_origin("null")).ok);
    CHECK_FALSE(null.check(from_origin("https://a.example")).ok);
}

TEST_CASE("origin is checked before credentials", "[auth]") {
    const auto a = authenticator::from_options({.token = "t", .origins = {"https://app.example"}});
    check_refused(a.check(request("/", {{"Origin", "https://evil.example"}})), http::status::forbidden,
                  "origin not allowed: https://evil.example");
    check_refused(a.check(request("/", {{"Origin", "https://evil.example"}, {"Authorization", "Bearer t"}})), http::status::forbidden,
                  "origin not allowed: https://evil.example");
    CHECK_THAT(a.check(from_origin("https://app.example")).body, Catch::StartsWith("missing credentials"));
    CHECK(a.check(request("/", {{"Origin", "https://app.example"}, {"Authorization", "Bearer t"}})).ok);
}

TEST_CASE("malformed origin entries are usage errors", "[auth]") {
    for (const char* bad : {"app.example", "https://", "https://app.example/path", "https://a*.example.com", "https://*.*.example.com",
                            "https://app.example:0", "https://app.example:99999", "https://user@app.example", "https://*.",
                            "https://app.example:"}) {
        INFO(bad);
        check_usage_error({.origins = {bad}}, "is not valid");
    }
    CHECK_NOTHROW(authenticator::from_options({.origins = {"https://[::1]:8080", "http://127.0.0.1"}}));
    const auto v6 = authenticator::from_options({.origins = {"https://[::1]:8080"}});
    CHECK(v6.check(from_origin("https://[::1]:8080")).ok);
}

// ---------------------------------------------------------------- JWT: HMAC

TEST_CASE("JWT HS256: valid tokens are accepted with their claims", "[auth]") {
    const auto a = with_secret("hmac-secret");
    CHECK(a.jwt_algorithms() == std::vector<std::string>{"HS256"});
    const auto token = sign("HS256", "hmac-secret", {{"sub", "alice"}, {"role", "admin"}, {"exp", now_s() + 600}});
    for (const auto& req : {bearer(token), request("/ws?token=" + token), request("/ws?access_token=" + token)}) {
        const auto r = a.check(req);
        CHECK(r.ok);
        CHECK(r.subject == "alice");
        CHECK(r.claims.value("role", "") == "admin");
    }
    // No exp: accepted (documented), no sub: empty subject.
    const auto r = a.check(bearer(sign("HS256", "hmac-secret", {{"role", "x"}})));
    CHECK(r.ok);
    CHECK(r.subject.empty());
    // A non-string sub is not a subject.
    CHECK(a.check(bearer(sign("HS256", "hmac-secret", {{"sub", 42}}))).subject.empty());
}

TEST_CASE("JWT: exp and nbf honour the leeway", "[auth]") {
    const auto a = with_secret("k");   // default leeway: 30 s
    const auto t = now_s();
    check_refused(a.check(bearer(sign("HS256", "k", {{"exp", t - 120}}))), http::status::unauthorized, "token expired");
    CHECK(a.check(bearer(sign("HS256", "k", {{"exp", t - 10}}))).ok);    // within the leeway
    check_refused(a.check(bearer(sign("HS256", "k", {{"nbf", t + 120}}))), http::status::unauthorized, "token not yet valid");
    CHECK(a.check(bearer(sign("HS256", "k", {{"nbf", t + 10}}))).ok);
    CHECK(a.check(bearer(sign("HS256", "k", {{"nbf", t - 10}, {"exp", t + 10}}))).ok);

    const auto strict = authenticator::from_options({.jwt_secret = "k", .jwt_leeway = std::chrono::seconds(0)});
    check_refused(strict.check(bearer(sign("HS256", "k", {{"exp", t - 10}}))), http::status::unauthorized, "token expired");

    const auto res = wsx::to_response(a.check(bearer(sign("HS256", "k", {{"exp", t - 120}}))));
    REQUIRE(res);
    CHECK((*res)[http::field::www_authenticate] == "Bearer realm=\"wsx\", error=\"invalid_token\", error_description=\"token expired\"");
}

TEST_CASE("JWT: wrong secret, tampering and garbage are refused", "[auth]") {
    const auto a = with_secret("right");
    check_refused(a.check(bearer(sign("HS256", "wrong", {{"sub", "x"}}))), http::status::unauthorized, "bad signature");

    // Payload swapped after signing.
    const auto token = sign("HS256", "right", {{"sub", "user"}});
    const auto dot1 = token.find('.'), dot2 = token.rfind('.');
    const auto tampered = token.substr(0, dot1 + 1) + b64url(R"({"sub":"admin"})") + token.substr(dot2);
    check_refused(a.check(bearer(tampered)), http::status::unauthorized, "bad signature");
    // Signature truncated (by whole base64 quanta: an HS256 signature is 43 characters) or missing.
    check_refused(a.check(bearer(token.substr(0, token.size() - 3))), http::status::unauthorized, "bad signature");
    // The signature's last character (4 bits of data, 2 pad bits) with a pad bit set: the same
    // bytes to a lax decoder, so another text for the same token. A canonical last character
    // is one of AEIMQUYcgkosw048, and the next character is in the alphabet too.
    REQUIRE(token.size() - dot2 - 1 == 43);
    std::string padded = token;
    ++padded.back();
    check_refused(a.check(bearer(padded)), http::status::unauthorized, "invalid token");
    check_refused(a.check(bearer(token.substr(0, dot2 + 1))), http::status::unauthorized, "invalid token");

    for (const std::string& bad : std::vector<std::string>{"x", "a.b", "a.b.c.d", "..", "a..c", "abc.def.ghi", "\xff\xfe.\x80\x81.\xc0\xc1",
                                  std::string(10000, 'a') + ".b.c", b64url("[1]") + "." + b64url("{}") + ".c2ln"}) {
        INFO(bad.substr(0, 40));
        check_refused(a.check(bearer(bad)), http::status::unauthorized, "invalid token");
    }
    // Well signed, but claims of the wrong shape.
    const auto sign_raw = [](const std::string& payload) {
        const std::string head = b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(payload);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        HMAC(EVP_sha256(), "right", 5, reinterpret_cast<const unsigned char*>(head.data()), head.size(), mac, &len);
        return head + "." + b64url(std::string(reinterpret_cast<char*>(mac), len));
    };
    CHECK(a.check(bearer(sign_raw(R"({"sub":"ok"})"))).ok);   // the helper itself is right
    check_refused(a.check(bearer(sign_raw(R"({"exp":"tomorrow"})"))), http::status::unauthorized, "invalid token");
    check_refused(a.check(bearer(sign_raw("[1,2,3]"))), http::status::unauthorized, "invalid token");
    check_refused(a.check(bearer(sign_raw("not json"))), http::status::unauthorized, "invalid token");
}

TEST_CASE("JWT: alg none is never accepted", "[auth]") {
    const auto a = with_secret("k");
    const nlohmann::json claims = {{"sub", "admin"}};
    for (const std::string alg : {"none", "None", "NONE"}) {
        INFO(alg);
        const auto reason = "token algorithm not allowed: " + alg;
        check_refused(a.check(bearer(forge({{"alg", alg}, {"typ", "JWT"}}, claims))), http::status::unauthorized, "invalid token");
        check_refused(a.check(bearer(forge({{"alg", alg}, {"typ", "JWT"}}, claims, "c2ln"))), http::status::unauthorized, reason);
    }
    check_refused(a.check(bearer(forge({{"typ", "JWT"}}, claims, "c2ln"))), http::status::unauthorized, "invalid token");
    check_refused(a.check(bearer(forge({{"alg", 256}}, claims, "c2ln"))), http::status::unauthorized, "invalid token");
    // Case variants of an allowed algorithm are not the algorithm.
    check_refused(a.check(bearer(forge({{"alg", "hs256"}}, claims, "c2ln"))), http::status::unauthorized,
                  "token algorithm not allowed: hs256");
    check_usage_error({.jwt_secret = "k", .jwt_algorithms = {"none"}}, "never accepted");
}

TEST_CASE("JWT: only the configured algorithms", "[auth]") {
    const auto a = with_secret("k");
    check_refused(a.check(bearer(sign("HS384", "k", {{"sub", "x"}}))), http::status::unauthorized, "token algorithm not allowed: HS384");
    const auto b = authenticator::from_options({.jwt_secret = "k", .jwt_algorithms = {"HS384", "hs512"}});
    CHECK(b.jwt_algorithms() == std::vector<std::string>{"HS384", "HS512"});
    CHECK(b.check(bearer(sign("HS384", "k", {{"sub", "x"}}))).ok);
    CHECK(b.check(bearer(sign("HS512", "k", {{"sub", "x"}}))).ok);
    check_refused(b.check(bearer(sign("HS256", "k", {{"sub", "x"}}))), http::status::unauthorized, "token algorithm not allowed: HS256");
}

// ---------------------------------------------------------------- JWT: public keys

TEST_CASE("JWT RS256 with a public key", "[auth]") {
    const auto& keys = rsa_keys();
    const auto a = with_key(keys.public_pem);
    CHECK(a.jwt_algorithms() == std::vector<std::string>{"RS256", "RS384", "RS512"});
    const auto r = a.check(bearer(sign("RS256", keys.private_pem, {{"sub", "svc"}, {"exp", now_s() + 60}})));
    CHECK(r.ok);
    CHECK(r.subject == "svc");
    CHECK(a.check(bearer(sign("RS512", keys.private_pem, {{"sub", "svc"}}))).ok);
    check_refused(a.check(bearer(sign("RS256", keys.private_pem, {{"exp", now_s() - 100}}))), http::status::unauthorized, "token expired");
    check_refused(a.check(bearer(sign("RS256", other_rsa_keys().private_pem, {{"sub", "svc"}}))), http::status::unauthorized, "bad signature");

    // The key may also come as a certificate or as a PKCS#1 "RSA PUBLIC KEY".
    const auto from_cert = with_key(keys.certificate_pem);
    CHECK(from_cert.check(bearer(sign("RS256", keys.private_pem, {{"sub", "svc"}}))).ok);
    REQUIRE_THAT(keys.type_specific_pem, Catch::StartsWith("-----BEGIN RSA PUBLIC KEY-----"));
    const auto from_pkcs1 = with_key(keys.type_specific_pem);
    CHECK(from_pkcs1.check(bearer(sign("RS256", keys.private_pem, {{"sub", "svc"}}))).ok);
}

TEST_CASE("JWT ES256 with a public key", "[auth]") {
    const auto& keys = ec_keys();
    const auto a = with_key(keys.public_pem);
    CHECK(a.jwt_algorithms() == std::vector<std::string>{"ES256"});
    const auto r = a.check(request("/ws?access_token=" + sign("ES256", keys.private_pem, {{"sub", "dev"}, {"nbf", now_s() - 5}})));
    CHECK(r.ok);
    CHECK(r.subject == "dev");
    check_refused(a.check(bearer(sign("ES256", other_ec_keys().private_pem, {{"sub", "dev"}}))), http::status::unauthorized, "bad signature");
    check_refused(a.check(bearer(sign("ES256", keys.private_pem, {{"nbf", now_s() + 300}}))), http::status::unauthorized,
                  "token not yet valid");
    check_refused(a.check(bearer(sign("RS256", rsa_keys().private_pem, {{"sub", "dev"}}))), http::status::unauthorized,
                  "token algorithm not allowed: RS256");

    const auto p384 = with_key(ec384_keys().public_pem);
    CHECK(p384.jwt_algorithms() == std::vector<std::string>{"ES384"});
    CHECK(p384.check(bearer(sign("ES384", ec384_keys().private_pem, {{"sub", "x"}}))).ok);
}

TEST_CASE("JWT: algorithm confusion (public key as HMAC secret) fails", "[auth]") {
    const auto& keys = rsa_keys();
    // The attacker knows the public key and signs an HS256 token with its PEM text.
    const auto forged = sign("HS256", keys.public_pem, {{"sub", "admin"}});
    check_refused(with_key(keys.public_pem).check(bearer(forged)), http::status::unauthorized, "token algorithm not allowed: HS256");
    // Even when HS256 is accepted (a secret is also configured), HS tokens are checked
    // against the secret only, never against the key.
    const auto both = authenticator::from_options({.jwt_secret = "real-secret", .jwt_public_key_pem = keys.public_pem});
    CHECK(both.jwt_algorithms() == std::vector<std::string>{"HS256", "RS256", "RS384", "RS512"});
    check_refused(both.check(bearer(forged)), http::status::unauthorized, "bad signature");
    CHECK(both.check(bearer(sign("HS256", "real-secret", {{"sub", "a"}}))).ok);
    CHECK(both.check(bearer(sign("RS256", keys.private_pem, {{"sub", "b"}}))).ok);
    // And the other way round: an RS256 token cannot pass through the HMAC secret.
    check_refused(with_secret(keys.public_pem).check(bearer(sign("RS256", keys.private_pem, {{"sub", "c"}}))),
                  http::status::unauthorized, "token algorithm not allowed: RS256");
}

TEST_CASE("JWT configuration errors are usage errors", "[auth]") {
    check_usage_error({.jwt_public_key_pem = "not a key"}, "not a PEM public key");
    check_usage_error({.jwt_public_key_pem = rsa_keys().private_pem}, "private key");
    check_usage_error({.jwt_public_key_pem = ec_keys().public_pem, .jwt_algorithms = {"ES384"}}, "cannot be verified with the EC P-256");
    check_usage_error({.jwt_public_key_pem = rsa_keys().public_pem, .jwt_algorithms = {"ES256"}}, "cannot be verified with the RSA-2048");
    check_usage_error({.jwt_secret = "k", .jwt_algorithms = {"RS256"}}, "needs a JWT public key");
    check_usage_error({.jwt_public_key_pem = rsa_keys().public_pem, .jwt_algorithms = {"HS256"}}, "needs a JWT secret");
    check_usage_error({.jwt_secret = "k", .jwt_algorithms = {"HS999"}}, "unknown JWT algorithm 'HS999'");
    check_usage_error({.jwt_algorithms = {"HS256"}}, "without a JWT secret or public key");
    check_usage_error({.jwt_secret = "k", .jwt_public_key_pem = rsa_keys().public_pem, .jwt_algorithms = {"RS256"}},
                      "no HS algorithm");
    check_usage_error({.jwt_secret = "k", .jwt_leeway = std::chrono::seconds(-1)}, "leeway");
}
