#pragma once
/// permessage-deflate (RFC 7692), once for every connection in wsx (sessions of every command,
/// bench's connections): the client's offer, the server's choice among offers, the client's
/// reading of the answer, and whole-message compression both ways.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsx {

/// What the user asked for (--compress and its options), either role.
struct deflate_options {
    bool enabled = false;
    int window_bits = 15;             ///< 9..15, for both directions
    bool no_context_takeover = false;  ///< ask for no context takeover both ways
};

}  // namespace wsx

namespace wsx::pmd {

/// One element of a Sec-WebSocket-Extensions list (RFC 6455 9.1): a name and its parameters,
/// values unquoted. A parameter given without `=` has no value; `name=""` has an empty one.
struct extension {
    std::string name;
    std::vector<std::pair<std::string, std::optional<std::string>>> params;
};

/// Reads an extension list: `1#( token *( OWS ";" OWS token [ "=" ( token / quoted-string ) ] ) )`,
/// elements separated by commas (empty elements allowed, as RFC 9110 5.6.1 asks). None when
/// the text is not such a list.
std::optional<std::vector<extension>> parse_extensions(std::string_view text);

/// The Sec-WebSocket-Extensions value a client sends for `d`: always `client_max_window_bits`
/// (so the server may ask for a smaller window), `server_max_window_bits=N` and an explicit
/// `client_max_window_bits=N` when N < 15, and both no-context-takeover parameters when asked.
std::string client_offer(const deflate_options& d);

/// The parameters in force after the server's answer (RFC 7692 section 7.1).
struct agreement {
    int client_max_window_bits = 15;          ///< the window our deflater may use
    int server_max_window_bits = 15;          ///< the server's window (we inflate with 15 anyway)
    bool client_no_context_takeover = false;  ///< reset our deflater after every message
    bool server_no_context_takeover = false;  ///< the server resets; so may our inflater
};

enum class answer_status {
    accepted,  ///< permessage-deflate is on, with `params`
    declined,  ///< the server answered without permessage-deflate
    invalid,   ///< the answer is not one a client may accept (`error` says why)
};

struct answer {
    answer_status status = answer_status::declined;
    agreement params;
    std::string error;
};

/// Reads the server's Sec-WebSocket-Extensions value (empty when absent) against what `offered` asked.
answer parse_answer(std::string_view header, const deflate_options& offered);

/// A server's acceptance of one permessage-deflate offer.
struct acceptance {
    agreement params;      ///< what both sides use from now on
    std::string response;  ///< the Sec-WebSocket-Extensions value to answer with
};

/// The server's choice (RFC 7692 section 5): the first offer among the request's
/// Sec-WebSocket-Extensions values (`fields`, in order) that it can accept with `ours`; none
/// when compression is off or no offer is acceptable (the connection then goes uncompressed).
/// An offer with an unknown or repeated parameter, or a value out of range, is declined.
std::optional<acceptance> choose_offer(const std::vector<std::string_view>& fields, const deflate_options& ours);


/// Compresses whole messages as one sender of a connection (context kept between messages
/// unless the agreement or the options say otherwise).
class deflater {
public:
    /// `window_bits`: the largest window we may use (the agreement's client_max_window_bits).
    deflater(int window_bits, bool reset_each_message);
    ~deflater();
    deflater(const deflater&) = delete;
    deflater& operator=(const deflater&) = delete;
    /// Appends the compressed form of `message` to `out`, without the final 00 00 ff ff.
    void compress(std::string_view message, std::string& out);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// Decompresses whole messages as one receiver of a connection.
class inflater {
public:
    explicit inflater(bool reset_each_message);
    ~inflater();
    inflater(const inflater&) = delete;
    inflater& operator=(const inflater&) = delete;
    /// Replaces `out` with the decompressed message. False when the data is not valid deflate
    /// data or the message would exceed `limit` bytes (`out` is then unspecified). Whatever the
    /// data, `out` never grows past max(256, 4 × compressed size, 2 × (limit + 1 KiB)) bytes.
    bool decompress(std::string_view compressed, std::string& out, std::uint64_t limit);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The compression state of one connection, for the side `client` (or the server): a deflater
/// for what it sends and an inflater for what it receives, set up from the agreement.
struct codec {
    codec(const agreement& a, bool client);
    std::unique_ptr<deflater> out;
    std::unique_ptr<inflater> in;
};

}  // namespace wsx::pmd
