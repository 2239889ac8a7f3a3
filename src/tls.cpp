#include "tls.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>

#include "exit_code.hpp"

namespace wsx {
namespace {

// SSLKEYLOGFILE: the TLS secrets of every connection, in the NSS key log format, for a capture
// to be decrypted (Wireshark). The process has one such file whatever the number of contexts
// and threads: it is opened when the first context is made (a warning, once, when it cannot
// be), and each line goes out whole in one write(2) under a lock, so lines from connections on
// different threads never interleave and nothing waits in a buffer when the process ends.
class key_log {
public:
    // Never destroyed: threads still finishing handshakes at exit may log.
    static key_log& instance() {
        static key_log* log = new key_log;
        return *log;
    }

    bool enabled() const noexcept { return fd_ >= 0; }

    void write(const char* line) {
        std::string out(line);
        out += '\n';
        const std::lock_guard<std::mutex> lock(mutex_);
        std::size_t done = 0;
        while (done < out.size()) {
            const ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                // A full disk, or a pipe whose reader is not keeping up (the file is
                // non-blocking: an event loop never waits for it), loses secrets, never the
                // connection; said once.
                if (!lost_) {
                    lost_ = true;
                    std::cerr << fmt::format("wsx: warning: SSLKEYLOGFILE '{}': cannot write to it ({}); TLS secrets are being lost\n",
                                             path_, n < 0 ? std::strerror(errno) : "nothing written");
                }
                return;
            }
            done += static_cast<std::size_t>(n);
        }
    }

private:
    key_log() {
        const char* path = std::getenv("SSLKEYLOGFILE");
        if (!path || !*path) return;
        path_ = path;
        // O_NONBLOCK: a FIFO with no reader is refused (ENXIO) instead of blocking the start.
        fd_ = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
        if (fd_ < 0) {
            const int e = errno;
            std::cerr << fmt::format("wsx: warning: SSLKEYLOGFILE '{}': cannot open it ({}); TLS secrets are not logged\n",
                                     path, e == ENXIO ? "a pipe with no reader" : std::strerror(e));
            return;
        }
        struct stat st{};
        if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
            std::cerr << fmt::format("wsx: warning: SSLKEYLOGFILE '{}' can be read by other users (mode {:o}): "
                                     "anyone who can read it can decrypt these connections; chmod 600 it\n",
                                     path, st.st_mode & 0777);
    }
    int fd_ = -1;
    bool lost_ = false;
    std::string path_;
    std::mutex mutex_;
};

void log_key_line(const SSL*, const char* line) { key_log::instance().write(line); }

// Every context made here logs its connections' secrets when SSLKEYLOGFILE asks for it.
void enable_key_log(ssl::context& ctx) {
    if (key_log::instance().enabled()) SSL_CTX_set_keylog_callback(ctx.native_handle(), &log_key_line);
}

void require_readable(const std::string& path, std::string_view option) {
    std::ifstream f(path);
    if (!f) throw failure(exit_code::usage, fmt::format("{} '{}': cannot read the file ({})", option, path, std::strerror(errno)));
}

template <class F>
void try_load(F&& f, std::string_view option, const std::string& path) {
    error_code ec;
    f(ec);
    if (ec)
        throw failure(exit_code::usage,
                      fmt::format("{} '{}': not a usable PEM file ({})", option, path, ec.message()));
}

// Generates an EC P-256 key and a self-signed certificate for localhost/127.0.0.1/::1.
void use_self_signed(ssl::context& ctx, std::string* fingerprint) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    if (!key || !cert) throw failure(exit_code::tls, "cannot generate a self-signed certificate");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(std::time(nullptr)));
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 60L * 60 * 24 * 30);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("wsx self-signed"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name,
                                                  "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1")) {
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(cert, key, EVP_sha256());
    SSL_CTX_use_certificate(ctx.native_handle(), cert);
    SSL_CTX_use_PrivateKey(ctx.native_handle(), key);
    if (fingerprint) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        X509_digest(cert, EVP_sha256(), md, &len);
        std::string fp;
        for (unsigned i = 0; i < len; ++i) fp += fmt::format("{}{:02X}", i ? ":" : "", md[i]);
        *fingerprint = fp;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
}

}  // namespace

std::shared_ptr<ssl::context> make_client_tls(const tls_client_options& o) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3);
    if (!o.cacert.empty()) {
        require_readable(o.cacert, "--cacert");
        try_load([&](error_code& ec) { ctx->load_verify_file(o.cacert, ec); }, "--cacert", o.cacert);
    } else {
        error_code ec;
        ctx->set_default_verify_paths(ec);
    }
    if (!o.cert.empty() || !o.key.empty()) {
        if (o.cert.empty() || o.key.empty())
            throw failure(exit_code::usage, "--cert and --key go together: give both the client certificate and its key");
        require_readable(o.cert, "--cert");
        require_readable(o.key, "--key");
        try_load([&](error_code& ec) { ctx->use_certificate_chain_file(o.cert, ec); }, "--cert", o.cert);
        try_load([&](error_code& ec) { ctx->use_private_key_file(o.key, ssl::context::pem, ec); }, "--key", o.key);
    }
    ctx->set_verify_mode(o.insecure ? ssl::verify_none : ssl::verify_peer);
    enable_key_log(*ctx);
    return ctx;
}

std::shared_ptr<ssl::context> make_server_tls(const tls_server_options& o, std::string* fingerprint) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::single_dh_use);
    if (o.self_signed) {
        use_self_signed(*ctx, fingerprint);
    } else {
        if (o.cert.empty() || o.key.empty())
            throw failure(exit_code::usage, "--tls-cert and --tls-key go together (or use --tls-self-signed)");
        require_readable(o.cert, "--tls-cert");
        require_readable(o.key, "--tls-key");
        try_load([&](error_code& ec) { ctx->use_certificate_chain_file(o.cert, ec); }, "--tls-cert", o.cert);
        try_load([&](error_code& ec) { ctx->use_private_key_file(o.key, ssl::context::pem, ec); }, "--tls-key", o.key);
        if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
            throw failure(exit_code::usage, fmt::format("--tls-key '{}' does not match --tls-cert '{}'", o.key, o.cert));
    }
    if (!o.client_ca.empty()) {
        require_readable(o.client_ca, "--client-ca");
        try_load([&](error_code& ec) { ctx->load_verify_file(o.client_ca, ec); }, "--client-ca", o.client_ca);
        ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    enable_key_log(*ctx);
    return ctx;
}

void prepare_client_stream(beast::ssl_stream<beast::tcp_stream>& s, const tls_client_options& o, const std::string& host) {
    const std::string& name = o.sni.empty() ? host : o.sni;
    // SNI carries names only, never IP literals (RFC 6066 section 3).
    error_code ec;
    net::ip::make_address(name, ec);
    const bool is_ip = !ec;
    if (!is_ip) SSL_set_tlsext_host_name(s.native_handle(), name.c_str());
    if (o.insecure) return;
    // OpenSSL's own checks give precise failure reasons (e.g. "hostname mismatch").
    if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.native_handle()), name.c_str());
    else SSL_set1_host(s.native_handle(), name.c_str());
}

std::string describe_tls_error(const error_code& ec, beast::ssl_stream<beast::tcp_stream>* s) {
    if (s) {
        long v = SSL_get_verify_result(s->native_handle());
        if (v != X509_V_OK) return fmt::format("certificate verification failed: {}", X509_verify_cert_error_string(v));
    }
    if (ec.category() == net::error::get_ssl_category()) {
        char buf[256];
        ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
        std::string reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))
                                 ? ERR_reason_error_string(static_cast<unsigned long>(ec.value()))
                                 : buf;
        return reason;
    }
    return ec.message();
}

}  // namespace wsx
