#pragma once
/// TLS contexts for clients and servers. With SSLKEYLOGFILE set, every context made here
/// appends its connections' secrets to that file (NSS key log format, mode 0600 when created).
#include <memory>
#include <string>

#include "net.hpp"

namespace wsx {

struct tls_client_options {
    std::string cacert;      ///< PEM bundle to trust instead of the system store
    std::string cert, key;   ///< client certificate and key (PEM)
    bool insecure = false;   ///< skip certificate and host name verification
    std::string sni;         ///< server name to send and verify instead of the URL host
};

struct tls_server_options {
    std::string cert, key;   ///< PEM certificate chain and key
    std::string client_ca;   ///< require client certificates signed by this CA (mutual TLS)
    bool self_signed = false;  ///< generate a throw-away certificate at start-up
};

/// Builds a client context; throws wsx::failure(usage) naming the file that cannot be used.
std::shared_ptr<ssl::context> make_client_tls(const tls_client_options& o);

/// Builds a server context; throws wsx::failure(usage) naming the file that cannot be used.
/// With self_signed, *fingerprint receives the SHA-256 fingerprint of the generated certificate.
std::shared_ptr<ssl::context> make_server_tls(const tls_server_options& o, std::string* fingerprint = nullptr);

/// Prepares a client TLS stream for `host`: SNI and host name verification (unless insecure).
void prepare_client_stream(beast::ssl_stream<beast::tcp_stream>& s, const tls_client_options& o, const std::string& host);

/// A readable description of the last TLS failure (includes certificate verification results).
std::string describe_tls_error(const error_code& ec, beast::ssl_stream<beast::tcp_stream>* s = nullptr);

}  // namespace wsx
