#pragma once
/// Framing and display of message payloads for the stdio channel: splitting a
/// byte stream into records, hex/base64 views, terminal-safe text, UTF-8
/// validation, JSON pretty printing and the JSON-lines event format.
///
/// Everything here is pure (no I/O, no global state) and safe on untrusted bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace wsx {

/// Cuts a byte stream that arrives in arbitrary chunks into records.
///
/// Records are handed to a callback as string_views that are valid only during
/// the call. A record that lies entirely inside one chunk is passed without
/// copying; only a record that straddles chunks is gathered in a pending buffer.
///
/// - lines: records end at '\n'. One '\r' right before the '\n' is removed, so
///   CRLF files give the same records as LF files; a '\r' anywhere else is data.
///   An empty line is an empty record. Text after the last '\n' is a record too,
///   delivered by finish() (nothing is lost when the input lacks a final newline).
/// - nul: records end at '\0'; otherwise as lines, without the '\r' rule.
/// - chunks: every non-empty chunk is one record, as read.
///
/// Records longer than max_record bytes are delivered in consecutive pieces of
/// max_record bytes (the last piece holds the rest), the same way whatever the
/// chunk boundaries. A record of exactly max_record bytes is one piece.
/// max_record == 0 means no limit.
class record_splitter {
public:
    enum class mode { lines, nul, chunks };

    /// A splitter for `m`; `max_record` bytes per delivered record (0: unlimited).
    explicit record_splitter(mode m, std::size_t max_record = 0) noexcept
        : mode_(m), max_record_(max_record) {}

    /// Consumes the next chunk of the stream, calling on_record(std::string_view)
    /// for every record it completes (in order).
    template <class F>
    void feed(std::string_view chunk, F&& on_record);

    /// Ends the stream: delivers the unterminated last record, if any. The
    /// splitter is then empty and may be reused for a new stream.
    template <class F>
    void finish(F&& on_record);

    /// Bytes held back waiting for a delimiter.
    std::size_t pending() const noexcept { return pending_.size(); }

    /// How many records were longer than max_record and so delivered in pieces.
    std::uint64_t split_records() const noexcept { return split_records_; }

private:
    char delimiter() const noexcept { return mode_ == mode::nul ? '\0' : '\n'; }

    /// Delivers `rec`, cut into pieces when above the limit.
    template <class F>
    void deliver(std::string_view rec, F& on_record);

    /// Delivers a record whose delimiter has been seen (the delimiter excluded).
    template <class F>
    void complete(std::string_view rec, F& on_record);

    mode mode_;
    std::size_t max_record_;
    std::string pending_;
    /// True while pending_ holds the rest of a record whose first pieces were
    /// already delivered (so that the record counts once in split_records_).
    /// Implies !pending_.empty(): pieces are cut only while more than a piece remains.
    bool pending_was_split_ = false;
    std::uint64_t split_records_ = 0;
};

/// xxd-style dump, one line per 16 bytes, each ending in '\n':
/// "00000000: 4865 6c6c 6f0a                           Hello."
/// Bytes outside printable ASCII show as '.' in the text column. Empty input
/// gives an empty string.
std::string hex_dump(std::string_view data);

/// Lower-case hex digits, two per byte, no separators: "48656c6c6f".
std::string to_hex(std::string_view data);

/// Reads hex digits (either case). Blanks and line breaks between digits are
/// ignored, so "48 65 6C" and xxd-style groups "4865 6c6c" both work. Returns
/// nullopt for any other character or an odd number of digits.
std::optional<std::string> from_hex(std::string_view text);

/// Standard base64 (RFC 4648 section 4) with '=' padding.
/// Decodes %XX escapes (URL user info, query parameters); nullopt when an escape is malformed.
std::optional<std::string> percent_decode(std::string_view s);

std::string base64_encode(std::string_view data);

/// Decodes base64. Accepts the standard and the URL-safe alphabet ('-', '_'),
/// with or without padding, ignoring blanks and line breaks. Returns nullopt for
/// other characters, padding in the middle, or a length no encoder produces.
std::optional<std::string> base64_decode(std::string_view text);

/// True when `data` is well-formed UTF-8 (RFC 3629): no overlong forms, no
/// surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences.
bool is_valid_utf8(std::string_view data) noexcept;
/// For UTF-8 checked piece by piece as it arrives (RFC 6455 8.1: fail as soon as the text
/// is known to be invalid): the length of the longest prefix of `data` made of whole
/// well-formed sequences. The rest, at most 3 bytes, is the start of a sequence that may
/// still be completed. npos when `data` holds bytes no continuation can make well-formed.
std::size_t utf8_complete_prefix(std::string_view data) noexcept;

/// Makes remote text safe to print on a terminal, keeping it readable:
/// - printable ASCII, '\t', '\n' and well-formed UTF-8 are kept as they are;
/// - other C0 controls (ESC included) and DEL become "\xNN" ("\x1b", "\x0d");
/// - bytes that are not part of well-formed UTF-8 become "\xNN";
/// - C1 controls (U+0080..U+009F) and the bidirectional formatting characters
///   (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), which can reorder or hide
///   what is displayed, become "\uNNNN".
/// Backslashes are not doubled, so the escaping is for eyes, not reversible.
std::string escape_for_terminal(std::string_view text);

/// When `text` is a JSON object or array, returns it indented by two spaces,
/// keys in their original order, and with ANSI colours (keys, strings, numbers,
/// literals) if `colour`. The result is terminal-safe (see escape_for_terminal)
/// apart from the colour codes, and has no trailing newline. Returns nullopt
/// for anything else, including bare scalars, invalid JSON and nesting deeper
/// than 256 levels.
std::optional<std::string> pretty_json(std::string_view text, bool colour);

/// Appends `s` as a JSON string literal (quotes included) to `out`. Bytes that
/// are not well-formed UTF-8 are replaced with U+FFFD, so the output is always
/// valid JSON.
void append_json_string(std::string& out, std::string_view s);

// ---------------------------------------------------------------------------
// record_splitter implementation (a template so the callback can be inlined).

template <class F>
void record_splitter::deliver(std::string_view rec, F& on_record) {
    if (max_record_ == 0 || rec.size() <= max_record_) {
        on_record(rec);
        return;
    }
    ++split_records_;
    while (rec.size() > max_record_) {
        on_record(rec.substr(0, max_record_));
        rec.remove_prefix(max_record_);
    }
    on_record(rec);
}

template <class F>
void record_splitter::complete(std::string_view rec, F& on_record) {
    if (mode_ == mode::lines && !rec.empty() && rec.back() == '\r') rec.remove_suffix(1);
    const auto counted = split_records_;
    const bool was_split = pending_was_split_;
    pending_was_split_ = false;
    deliver(rec, on_record);
    // Earlier pieces of this record went out already and counted it then.
    if (was_split) split_records_ = counted;
}

template <class F>
void record_splitter::feed(std::string_view chunk, F&& on_record) {
    if (chunk.empty()) return;
    if (mode_ == mode::chunks) {
        deliver(chunk, on_record);
        return;
    }
    const char delim = delimiter();
    if (!pending_.empty()) {
        const void* hit = std::memchr(chunk.data(), delim, chunk.size());
        if (hit == nullptr) {
            pending_.append(chunk);
            chunk = {};
        } else {
            const auto n = static_cast<std::size_t>(static_cast<const char*>(hit) - chunk.data());
            pending_.append(chunk.data(), n);
            complete(pending_, on_record);
            pending_.clear();
            chunk.remove_prefix(n + 1);
        }
    }
    // Records wholly inside this chunk go out without a copy.
    while (!chunk.empty()) {
        const void* hit = std::memchr(chunk.data(), delim, chunk.size());
        if (hit == nullptr) {
            pending_.append(chunk);
            break;
        }
        const auto n = static_cast<std::size_t>(static_cast<const char*>(hit) - chunk.data());
        complete(chunk.substr(0, n), on_record);
        chunk.remove_prefix(n + 1);
    }
    if (max_record_ == 0 || pending_.size() <= max_record_) return;
    // Hand over the full pieces of an over-long unterminated record now, so
    // memory stays bounded. A final '\r' is kept back in lines mode: it may be
    // half of a CRLF, and then it does not count towards the record's length.
    const std::size_t keep =
        max_record_ + ((mode_ == mode::lines && pending_.back() == '\r') ? 1 : 0);
    std::size_t off = 0;
    while (pending_.size() - off > keep) {
        if (!pending_was_split_) {
            ++split_records_;
            pending_was_split_ = true;
        }
        on_record(std::string_view(pending_).substr(off, max_record_));
        off += max_record_;
    }
    pending_.erase(0, off);
}

template <class F>
void record_splitter::finish(F&& on_record) {
    if (mode_ == mode::chunks || pending_.empty()) return;
    // An unterminated record; a trailing '\r' here is not half of a CRLF, so it stays.
    const std::string rest = std::move(pending_);
    pending_.clear();
    const auto counted = split_records_;
    const bool was_split = pending_was_split_;
    pending_was_split_ = false;
    deliver(rest, on_record);
    if (was_split) split_records_ = counted;
}

}  // namespace wsx
