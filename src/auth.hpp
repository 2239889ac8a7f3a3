#pragma once
/// Authentication of WebSocket upgrade requests: Origin allow-list, static bearer
/// token, JWT (HS/RS/ES via cpp-jwt) and HTTP Basic. Checked before the upgrade is
/// accepted; a refusal becomes an HTTP 400, 401 or 403 with a one-line body.
///
/// Order of the checks:
///  0. A request with more than one Origin or more than one Authorization field is refused
///     (400 "more than one X header"): whichever one decided, something else may read the other.
///  1. Origin: when an allow-list is set, the Origin header must be present and listed
///     (403 "origin not allowed: X"). "*" in the list allows every origin, and no Origin.
///  2. Credentials: when any of token / JWT / basic is configured, at least one of the
///     configured methods must accept what the client sent (401 otherwise).
///
/// Where credentials are looked for:
///  - static token: `Authorization: Bearer SECRET` or `?token=SECRET`;
///  - JWT: `Authorization: Bearer JWT`, `?token=JWT` or `?access_token=JWT`;
///  - basic: `Authorization: Basic base64(user:pass)`.
/// The Authorization header wins over the query when both are present. Its value is
/// `<scheme> 1*SP <credentials>` (scheme case-insensitive) and the credentials are compared
/// exactly, as the query value is after percent-decoding: no whitespace around them, and
/// base64 (Basic) with its pad bits zero.
///
/// JWT policy:
///  - only the configured algorithms are accepted, compared exactly ("none" never is);
///  - HS* tokens are verified with the secret only, RS*/ES* tokens with the public key
///    only, so a public key can never be used as an HMAC secret (algorithm confusion);
///  - `exp` and `nbf` are honoured with `jwt_leeway`; a token without `exp` is accepted
///    (it never expires): issue tokens with `exp` when that matters;
///  - `iss`, `aud` and `iat` are not checked; the claims are exposed for callers that care.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server.hpp"

namespace wsx {

/// What to require of an upgrade request. Everything empty: nothing is required.
struct auth_options {
    /// Static bearer token; empty: not used.
    std::string token{};
    /// HMAC secret for HS256/HS384/HS512 tokens; empty: not used.
    std::string jwt_secret{};
    /// PEM text (not a path) of the public key for RS*/ES* tokens: a "PUBLIC KEY",
    /// "RSA PUBLIC KEY" or a certificate. Empty: not used.
    std::string jwt_public_key_pem{};
    /// Accepted "alg" values. Empty means: "HS256" when a secret is set, plus, when a
    /// key is set, what the key can verify (RSA: RS256, RS384, RS512; EC P-256: ES256,
    /// P-384: ES384, P-521: ES512).
    std::vector<std::string> jwt_algorithms{};
    /// Clock skew tolerated on `exp` and `nbf`.
    std::chrono::seconds jwt_leeway{30};
    /// HTTP Basic credentials; both empty: not used.
    std::string basic_user{}, basic_pass{};
    /// Origin allow-list; empty: any origin. Entries: "*" (everything), an exact origin
    /// "https://app.example[:port]", a wildcard host "https://*.example.com" ('*' is exactly
    /// one DNS label: a.example.com, not a.b.example.com nor example.com), or "null".
    /// Scheme and host are case-insensitive and default ports (80 for http/ws, 443 for
    /// https/wss) may be written or omitted.
    std::vector<std::string> origins{};
};

/// The verdict on one request.
struct auth_result {
    bool ok = true;
    http::status status = http::status::ok;   ///< 400, 401 or 403 when refused
    std::string body{};                        ///< one line: why it was refused
    std::string subject{};                     ///< JWT "sub" (when a string) or the basic user
    nlohmann::json claims{};                   ///< the JWT payload when a JWT was accepted, else null
    /// WWW-Authenticate challenges to send with a 401 (one header field each).
    std::vector<std::string> challenges{};
};

/// Checks upgrade requests against auth_options. Immutable after construction: copies
/// are cheap (shared state) and every thread may call check() at the same time.
class authenticator {
public:
    /// Validates and prepares the options. Throws wsx::failure(exit_code::usage) for a
    /// key that cannot be read, an unknown or unusable algorithm, a malformed origin
    /// entry, or a basic user containing ':'.
    static authenticator from_options(const auth_options& opts);

    /// True when the checks can refuse anything.
    bool enabled() const;

    /// Decides on one request. Never throws on hostile input.
    auth_result check(const http_request& req) const;

    /// The accepted JWT algorithms after defaults were applied (empty without JWT).
    const std::vector<std::string>& jwt_algorithms() const;

private:
    struct impl;
    explicit authenticator(std::shared_ptr<const impl> p) : impl_(std::move(p)) {}
    std::shared_ptr<const impl> impl_;
};

/// The 401/403 response for a refusal (with WWW-Authenticate on 401), nullopt when ok.
std::optional<http_response> to_response(const auth_result& result);

/// The first query parameter called `name` in a request target ("/ws?a=1&token=x"),
/// percent-decoded (key and value). '+' is kept as is (RFC 3986; send a space as %20).
/// A parameter without '=' has an empty value. Returns nullopt when the parameter is
/// absent or its value has a malformed %-escape.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

}  // namespace wsx
