#pragma once
/// Secrets kept off the command line (where every user sees them in `ps`): read from a file
/// named by a --*-file option.
#include <optional>
#include <string>

namespace wsx {

/// What read_secret_file found.
struct secret_file {
    std::optional<std::string> secret;  ///< the file's one line; nullopt when it cannot be used
    std::string error;                  ///< why not (set when `secret` is empty), to follow the path
    bool others_can_read = false;       ///< group or others may read the file (mode & 0044)
    unsigned mode = 0;                  ///< its permission bits
};

/// Reads the secret in `path`: the whole file, less one trailing newline ("\n" or "\r\n").
/// Refused (error set): a file that cannot be read, is not a regular file (a directory, a
/// FIFO that would block), is empty, is larger than 64 KiB, or holds a line break or NUL
/// before its end (a secret is one line: a header or a comparison would not survive more).
secret_file read_secret_file(const std::string& path);

}  // namespace wsx
