#include "codec.hpp"
#include "auth.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <limits>

#include <fmt/format.h>
#include <jwt/jwt.hpp>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "exit_code.hpp"

namespace wsx {
namespace {

// ---------------------------------------------------------------- small text helpers

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = lower(c);
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

/// Client-supplied text made safe for a one-line body and a quoted header parameter:
/// printable ASCII without quotes or backslashes, at most 200 characters.
std::string printable(std::string_view s) {
    constexpr std::size_t max = 200;
    std::string out;
    for (char c : s.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') ? c : '?';
    }
    if (s.size() > max) out += "...";
    return out;
}

// ---------------------------------------------------------------- base64

int b64_value(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

/// Strict decoder: only the alphabet, '=' padding allowed only at the end (and only
/// for the standard alphabet), no blanks, pad bits zero (RFC 4648 3.5: else several
/// texts would stand for one credential). nullopt on anything else.
std::optional<std::string> base64_decode(std::string_view in, bool url) {
    if (!url) {
        if (in.size() % 4 != 0) return std::nullopt;
        std::size_t pad = 0;
        while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
        in.remove_suffix(pad);
    }
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = b64_value(c, url);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

// ---------------------------------------------------------------- constant-time secrets

using digest = std::array<unsigned char, 32>;

digest sha256(std::string_view s) {
    digest d{};
    unsigned int len = 0;
    if (EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
        throw failure(exit_code::failure, "SHA-256 is not available from OpenSSL");
    return d;
}

/// Compares through digests so that neither the content nor the length of the
/// configured secret shows in the timing.
bool same_secret(std::string_view candidate, const digest& expected) {
    const digest d = sha256(candidate);
    return CRYPTO_memcmp(d.data(), expected.data(), d.size()) == 0;
}

// ---------------------------------------------------------------- origins

struct origin_parts {
    std::string scheme;
    std::string host;   ///< lower case; IPv6 literals keep their brackets
    std::string port;   ///< empty for the scheme's default port
};

std::string_view default_port(std::string_view scheme) {
    if (scheme == "http" || scheme == "ws") return "80";
    if (scheme == "https" || scheme == "wss") return "443";
    return {};
}

/// Parses "scheme://host[:port]" (what browsers send in Origin). `allow_wildcard`
/// accepts a leading "*." label in the host, for allow-list entries.
std::optional<origin_parts> parse_origin(std::string_view text, bool allow_wildcard) {
    const auto sep = text.find("://");
    if (sep == std::string_view::npos || sep == 0) return std::nullopt;
    origin_parts o;
    o.scheme = to_lower(text.substr(0, sep));
    if (!std::isalpha(static_cast<unsigned char>(o.scheme[0]))) return std::nullopt;
    for (char c : o.scheme)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return std::nullopt;
    std::string_view rest = text.substr(sep + 3);
    if (rest.empty() || rest.find_first_of("/?#@ \t") != std::string_view::npos) return std::nullopt;

    std::string_view host, port;
    if (rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = rest.substr(0, close + 1);
        rest.remove_prefix(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
            if (port.empty()) return std::nullopt;
        }
    } else {
        const auto colon = rest.find(':');
        host = rest.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = rest.substr(colon + 1);
            if (port.empty()) return std::nullopt;
        }
    }
    if (host.empty()) return std::nullopt;
    const auto star = host.find('*');
    if (star != std::string_view::npos) {
        if (!allow_wildcard || star != 0 || host.size() < 3 || host[1] != '.' || host.find('*', 1) != std::string_view::npos)
            return std::nullopt;
    }
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return std::nullopt;
        const int n = std::stoi(std::string(port));
        if (n < 1 || n > 65535) return std::nullopt;
    }
    o.host = to_lower(host);
    if (!port.empty()) o.port = std::to_string(std::stoi(std::string(port)));   // drops leading zeros
    if (o.port == default_port(o.scheme)) o.port.clear();
    return o;
}

struct origin_rule {
    origin_parts parts;
    bool wildcard = false;   ///< parts.host is the suffix after "*."
};

bool matches(const origin_rule& rule, const origin_parts& o) {
    if (rule.parts.scheme != o.scheme || rule.parts.port != o.port) return false;
    if (!rule.wildcard) return rule.parts.host == o.host;
    // "*" is one DNS label: "*.example.com" matches "a.example.com", not "a.b.example.com"
    // (names further down are often handed out to others, e.g. per-user sites), nor
    // "example.com" nor "badexample.com".
    const auto& suffix = rule.parts.host;
    if (o.host.size() <= suffix.size() + 1 || !o.host.ends_with(suffix)) return false;
    const auto label = o.host.size() - suffix.size() - 1;
    return o.host[label] == '.' && o.host.find('.') == label;
}

// ---------------------------------------------------------------- JWT keys

struct pkey_deleter {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct bio_deleter {
    void operator()(BIO* p) const { BIO_free(p); }
};
struct x509_deleter {
    void operator()(X509* p) const { X509_free(p); }
};
struct decoder_deleter {
    void operator()(OSSL_DECODER_CTX* p) const { OSSL_DECODER_CTX_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

[[noreturn]] void usage_error(std::string message) { throw failure(exit_code::usage, std::move(message)); }

/// Reads a public key, a PKCS#1 RSA public key or a certificate from PEM text.
pkey_ptr load_public_key(const std::string& pem) {
    if (pem.find("PRIVATE KEY-----") != std::string::npos)
        usage_error("JWT public key: the file holds a private key; give its public half (openssl pkey -in KEY -pubout)");
    if (pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos) {
        std::unique_ptr<BIO, bio_deleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
        std::unique_ptr<X509, x509_deleter> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
        pkey_ptr key(cert ? X509_get_pubkey(cert.get()) : nullptr);
        if (!key) usage_error("JWT public key: cannot read the certificate");
        return key;
    }
    EVP_PKEY* raw = nullptr;
    std::unique_ptr<OSSL_DECODER_CTX, decoder_deleter> ctx(
        OSSL_DECODER_CTX_new_for_pkey(&raw, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr));
    const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
    std::size_t len = pem.size();
    if (!ctx || OSSL_DECODER_from_data(ctx.get(), &data, &len) != 1 || !raw) {
        EVP_PKEY_free(raw);
        usage_error("JWT public key: not a PEM public key or certificate (expected -----BEGIN PUBLIC KEY-----)");
    }
    return pkey_ptr(raw);
}

/// The key in SubjectPublicKeyInfo PEM, the one form cpp-jwt reads.
std::string to_spki_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, bio_deleter> bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) usage_error("JWT public key: cannot re-encode the key");
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

/// The JWT algorithms a key can verify, and a name for messages.
std::pair<std::vector<std::string>, std::string> key_algorithms(EVP_PKEY* key) {
    const int id = EVP_PKEY_get_base_id(key);
    if (id == EVP_PKEY_RSA) return {{"RS256", "RS384", "RS512"}, fmt::format("RSA-{}", EVP_PKEY_get_bits(key))};
    if (id == EVP_PKEY_EC) {
        char group[64] = {};
        std::size_t len = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) usage_error("JWT public key: EC key without a named curve");
        const std::string_view g(group, len);
        if (g == "prime256v1" || g == "P-256") return {{"ES256"}, "EC P-256"};
        if (g == "secp384r1" || g == "P-384") return {{"ES384"}, "EC P-384"};
        if (g == "secp521r1" || g == "P-521") return {{"ES512"}, "EC P-521"};
        usage_error(fmt::format("JWT public key: EC curve {} is not usable with JWT (use P-256, P-384 or P-521)", g));
    }
    usage_error(fmt::format("JWT public key: {} keys are not supported (use RSA or EC)", OBJ_nid2sn(id)));
}

bool is_hmac_alg(std::string_view alg) { return alg.starts_with("HS"); }

const EVP_MD* hmac_digest(std::string_view alg) {
    if (alg == "HS256") return EVP_sha256();
    if (alg == "HS384") return EVP_sha384();
    return EVP_sha512();
}

constexpr std::array<std::string_view, 9> known_algorithms{"HS256", "HS384", "HS512", "RS256", "RS384",
                                                           "RS512", "ES256", "ES384", "ES512"};

// Tokens longer than this are refused before any parsing (the request itself is capped
// by the server, this only bounds the work spent on one).
constexpr std::size_t max_jwt_size = 8192;

struct jwt_verdict {
    bool ok = false;
    std::string reason;
    nlohmann::json claims;
};

}  // namespace

// ---------------------------------------------------------------- the authenticator

struct authenticator::impl {
    bool allow_any_origin = true;
    bool allow_null_origin = false;
    std::vector<origin_rule> origin_rules;

    bool token_enabled = false;
    digest token_digest{};

    bool jwt_enabled = false;
    std::vector<std::string> jwt_algorithms;
    std::string jwt_secret;
    std::string jwt_key_pem;   ///< SPKI PEM, empty without a key
    std::uint32_t jwt_leeway = 0;

    bool basic_enabled = false;
    digest basic_digest{};

    bool origin_check() const { return !allow_any_origin; }
    bool credentials_required() const { return token_enabled || jwt_enabled || basic_enabled; }

    std::optional<std::string> check_origin(const http_request& req) const;
    jwt_verdict verify_jwt(std::string_view token) const;
    std::string missing_hint() const;
};

authenticator authenticator::from_options(const auth_options& opts) {
    auto p = std::make_shared<impl>();

    for (const auto& entry : opts.origins) {
        const auto e = trim(entry);
        if (e == "*") continue;   // handled below: "*" anywhere wins
        if (e == "null") {
            p->allow_null_origin = true;
            continue;
        }
        auto text = e;
        if (text.ends_with('/')) text.remove_suffix(1);   // "https://app.example/" is a common way to write it
        auto parts = parse_origin(text, true);
        if (!parts)
            usage_error(fmt::format("origin '{}' is not valid: expected like https://app.example, "
                                    "https://app.example:8443 or https://*.example.com",
                                    entry));
        origin_rule rule;
        rule.wildcard = parts->host.starts_with("*.");
        if (rule.wildcard) parts->host.erase(0, 2);
        rule.parts = std::move(*parts);
        p->origin_rules.push_back(std::move(rule));
    }
    const bool star = std::any_of(opts.origins.begin(), opts.origins.end(), [](const std::string& o) { return trim(o) == "*"; });
    p->allow_any_origin = opts.origins.empty() || star;

    if (!opts.token.empty()) {
        p->token_enabled = true;
        p->token_digest = sha256(opts.token);
    }

    if (!opts.basic_user.empty() || !opts.basic_pass.empty()) {
        if (opts.basic_user.find(':') != std::string::npos)
            usage_error("basic auth: the user name must not contain ':' (give user:pass)");
        p->basic_enabled = true;
        p->basic_digest = sha256(opts.basic_user + ":" + opts.basic_pass);
    }

    const bool have_secret = !opts.jwt_secret.empty();
    const bool have_key = !opts.jwt_public_key_pem.empty();
    if (opts.jwt_leeway.count() < 0 || opts.jwt_leeway.count() > std::numeric_limits<std::int32_t>::max())
        usage_error("JWT leeway must be between 0 and 2^31 seconds");
    if (!have_secret && !have_key && !opts.jwt_algorithms.empty())
        usage_error("JWT algorithms were given without a JWT secret or public key");
    if (have_secret || have_key) {
        p->jwt_enabled = true;
        p->jwt_secret = opts.jwt_secret;
        p->jwt_leeway = static_cast<std::uint32_t>(opts.jwt_leeway.count());
        std::vector<std::string> key_algs;
        std::string key_name;
        if (have_key) {
            auto key = load_public_key(opts.jwt_public_key_pem);
            std::tie(key_algs, key_name) = key_algorithms(key.get());
            p->jwt_key_pem = to_spki_pem(key.get());
        }
        if (opts.jwt_algorithms.empty()) {
            if (have_secret) p->jwt_algorithms.push_back("HS256");
            p->jwt_algorithms.insert(p->jwt_algorithms.end(), key_algs.begin(), key_algs.end());
        }
        for (const auto& given : opts.jwt_algorithms) {
            std::string alg = given;
            for (auto& c : alg) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            if (alg == "NONE") usage_error("JWT algorithm 'none' is never accepted: tokens must be signed");
            if (std::find(known_algorithms.begin(), known_algorithms.end(), alg) == known_algorithms.end())
                usage_error(fmt::format("unknown JWT algorithm '{}' (known: HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512)", given));
            if (is_hmac_alg(alg) && !have_secret) usage_error(fmt::format("JWT algorithm {} needs a JWT secret", alg));
            if (!is_hmac_alg(alg)) {
                if (!have_key) usage_error(fmt::format("JWT algorithm {} needs a JWT public key", alg));
                if (std::find(key_algs.begin(), key_algs.end(), alg) == key_algs.end())
                    usage_error(fmt::format("JWT algorithm {} cannot be verified with the {} public key", alg, key_name));
            }
            if (std::find(p->jwt_algorithms.begin(), p->jwt_algorithms.end(), alg) == p->jwt_algorithms.end())
                p->jwt_algorithms.push_back(alg);
        }
        if (have_secret && std::none_of(p->jwt_algorithms.begin(), p->jwt_algorithms.end(), [](const std::string& a) { return is_hmac_alg(a); }))
            usage_error("a JWT secret was given but no HS algorithm is accepted");
        if (have_key && std::all_of(p->jwt_algorithms.begin(), p->jwt_algorithms.end(), [](const std::string& a) { return is_hmac_alg(a); }))
            usage_error("a JWT public key was given but no RS/ES algorithm is accepted");
    }
    return authenticator(std::move(p));
}

bool authenticator::enabled() const { return impl_->origin_check() || impl_->credentials_required(); }

const std::vector<std::string>& authenticator::jwt_algorithms() const { return impl_->jwt_algorithms; }

std::optional<std::string> authenticator::impl::check_origin(const http_request& req) const {
    if (allow_any_origin) return std::nullopt;
    const auto it = req.find(http::field::origin);
    if (it == req.end()) return "origin not allowed: the request has no Origin header";
    const auto value = trim(std::string_view(it->value().data(), it->value().size()));
    if (value == "null") {
        if (allow_null_origin) return std::nullopt;
    } else if (auto o = parse_origin(value, false)) {
        for (const auto& rule : origin_rules)
            if (matches(rule, *o)) return std::nullopt;
    }
    return "origin not allowed: " + printable(value);
}

jwt_verdict authenticator::impl::verify_jwt(std::string_view token) const {
    jwt_verdict v;
    v.reason = "invalid token";
    // Shape first: three non-empty base64url segments. This also keeps bytes that
    // cpp-jwt's base64 decoder does not expect away from it.
    if (token.empty() || token.size() > max_jwt_size) return v;
    for (char c : token)
        if (c != '.' && b64_value(c, true) < 0) return v;
    const auto dot1 = token.find('.');
    const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) return v;
    const auto head_b64 = token.substr(0, dot1);
    const auto body_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
    const auto sig_b64 = token.substr(dot2 + 1);
    if (head_b64.empty() || body_b64.empty() || sig_b64.empty()) return v;

    const auto head_text = base64_decode(head_b64, true);
    const auto sig = base64_decode(sig_b64, true);
    if (!head_text || !sig || !base64_decode(body_b64, true)) return v;
    const auto head = nlohmann::json::parse(*head_text, nullptr, false);
    if (!head.is_object()) return v;
    const auto alg_it = head.find("alg");
    if (alg_it == head.end() || !alg_it->is_string()) return v;
    const auto& alg = alg_it->get_ref<const std::string&>();
    // Exact match against the configured list: "none", "None", "hs256" never pass.
    if (std::find(jwt_algorithms.begin(), jwt_algorithms.end(), alg) == jwt_algorithms.end()) {
        v.reason = "token algorithm not allowed: " + printable(alg);
        return v;
    }

    // The key follows the algorithm family: the PEM is never an HMAC secret.
    const bool hmac = is_hmac_alg(alg);
    const std::string& key = hmac ? jwt_secret : jwt_key_pem;
    if (hmac) {
        // cpp-jwt compares HMACs with ==; check in constant time first, which also puts
        // the signature check before the claims for HS tokens.
        const auto signed_part = token.substr(0, dot2);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (!HMAC(hmac_digest(alg), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(signed_part.data()),
                  signed_part.size(), mac, &mac_len) ||
            sig->size() != mac_len || CRYPTO_memcmp(mac, sig->data(), mac_len) != 0) {
            v.reason = "bad signature";
            return v;
        }
    }

    std::error_code ec;
    try {
        using namespace jwt::params;
        const std::string token_copy(token);
        auto obj = jwt::decode(token_copy, algorithms({alg}), ec, secret(key), verify(true), leeway(jwt_leeway));
        if (!ec) {
            v.claims = obj.payload().create_json_obj();
            if (!v.claims.is_object()) {
                v.claims = nullptr;
                return v;
            }
            v.ok = true;
            v.reason.clear();
            return v;
        }
    } catch (const std::exception&) {
        return v;   // malformed JSON shapes make cpp-jwt throw; all of them are invalid tokens
    }
    if (ec == jwt::VerificationErrc::TokenExpired) v.reason = "token expired";
    else if (ec == jwt::VerificationErrc::ImmatureSignature) v.reason = "token not yet valid";
    else if (ec == jwt::VerificationErrc::InvalidSignature || ec == jwt::AlgorithmErrc::VerificationErr ||
             ec == jwt::AlgorithmErrc::InvalidKeyErr)
        v.reason = "bad signature";
    return v;
}

std::string authenticator::impl::missing_hint() const {
    std::vector<std::string> ways;
    if (token_enabled || jwt_enabled) ways.push_back("Authorization: Bearer <token> or ?token=<token>");
    if (basic_enabled) ways.push_back("Authorization: Basic <user:pass>");
    std::string out = "missing credentials (send ";
    for (std::size_t i = 0; i < ways.size(); ++i) out += (i ? "; or " : "") + ways[i];
    return out + ")";
}

auth_result authenticator::check(const http_request& req) const {
    const impl& s = *impl_;
    auth_result r;
    // With two, the check would decide by one while something else may read the other.
    for (const auto field : {http::field::origin, http::field::authorization}) {
        if (req.count(field) > 1) {
            r.ok = false;
            r.status = http::status::bad_request;
            r.body = fmt::format("more than one {} header", http::to_string(field));
            return r;
        }
    }
    if (auto refused = s.check_origin(req)) {
        r.ok = false;
        r.status = http::status::forbidden;
        r.body = std::move(*refused);
        return r;
    }
    if (!s.credentials_required()) return r;

    // Authorization: <scheme> 1*SP <credentials>, scheme case-insensitive (RFC 9110 11.4).
    // The HTTP parser removed the whitespace around the field value; what follows the
    // spaces is the credential as it is, compared exactly: "secret " is not "secret".
    std::optional<std::string> bearer, basic;
    if (const auto it = req.find(http::field::authorization); it != req.end()) {
        const std::string_view value(it->value().data(), it->value().size());
        const auto space = value.find(' ');
        const auto scheme = value.substr(0, space);
        std::string_view cred;
        if (space != std::string_view::npos) cred = value.substr(std::min(value.find_first_not_of(' ', space), value.size()));
        if (iequals(scheme, "Bearer") && !cred.empty()) bearer = std::string(cred);
        else if (iequals(scheme, "Basic") && !cred.empty()) basic = std::string(cred);
    }
    const std::string_view target(req.target().data(), req.target().size());
    std::optional<std::string> token_query;
    if (!bearer && (s.token_enabled || s.jwt_enabled)) token_query = query_param(target, "token");
    std::optional<std::string> access_query;
    if (!bearer && !token_query && s.jwt_enabled) access_query = query_param(target, "access_token");

    bool presented = false;
    bool bearer_refused = false;
    std::string reason;
    const auto refuse = [&](std::string why) {
        if (reason.empty()) reason = std::move(why);
    };

    if (s.token_enabled) {
        const auto& candidate = bearer ? bearer : token_query;
        if (candidate) {
            presented = true;
            if (same_secret(*candidate, s.token_digest)) return r;
            bearer_refused = true;
            // With JWT also configured, the JWT verdict below says more about a token
            // that has the shape of one.
            if (!s.jwt_enabled || std::count(candidate->begin(), candidate->end(), '.') != 2) refuse("invalid token");
        }
    }
    if (s.jwt_enabled) {
        const auto& candidate = bearer ? bearer : token_query ? token_query : access_query;
        if (candidate) {
            presented = true;
            auto verdict = s.verify_jwt(*candidate);
            if (verdict.ok) {
                if (const auto sub = verdict.claims.find("sub"); sub != verdict.claims.end() && sub->is_string())
                    r.subject = sub->get<std::string>();
                r.claims = std::move(verdict.claims);
                return r;
            }
            bearer_refused = true;
            refuse(std::move(verdict.reason));
        }
    }
    if (s.basic_enabled && basic) {
        presented = true;
        const auto decoded = base64_decode(*basic, false);
        if (decoded && decoded->find(':') != std::string::npos && same_secret(*decoded, s.basic_digest)) {
            r.subject = decoded->substr(0, decoded->find(':'));
            return r;
        }
        refuse("invalid user name or password");
    }

    r.ok = false;
    r.status = http::status::unauthorized;
    r.body = presented ? reason : s.missing_hint();
    if (s.token_enabled || s.jwt_enabled) {
        // RFC 6750 section 3: say why a presented token was refused.
        r.challenges.push_back(bearer_refused ? fmt::format("Bearer realm=\"wsx\", error=\"invalid_token\", error_description=\"{}\"", reason)
                                              : "Bearer realm=\"wsx\"");
    }
    if (s.basic_enabled) r.challenges.push_back("Basic realm=\"wsx\", charset=\"UTF-8\"");
    return r;
}

std::optional<http_response> to_response(const auth_result& result) {
    if (result.ok) return std::nullopt;
    auto res = make_response(result.status, result.body);
    for (const auto& c : result.challenges) res.insert(http::field::www_authenticate, c);
    return res;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    auto query = target.substr(q + 1);
    if (const auto hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto eq = pair.find('=');
        const auto key = percent_decode(pair.substr(0, eq));
        if (!key || *key != name) continue;
        if (eq == std::string_view::npos) return std::string{};
        return percent_decode(pair.substr(eq + 1));
    }
    return std::nullopt;
}

}  // namespace wsx
