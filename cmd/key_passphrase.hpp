#pragma once
// The passphrase of an encrypted client key (--key): asked once on the terminal, or read from
// --key-passphrase-file, and then given to OpenSSL whenever it reads the key.
//
// The key is read in more than one place (the check before connecting, each connection's TLS
// context) through OpenSSL's default passphrase prompt, which asks the terminal every time and
// fails with "UI routines" errors where there is none. Replacing that prompt (OpenSSL's default
// UI method, a process-wide setting) with one that answers from memory makes every read use
// the one passphrase, without threading it through the TLS options of every command.
#include <string>

#include "commands.hpp"

namespace wsx::cli {

/// For `option` (e.g. "--key") naming the PEM key at `key`: when the key is encrypted, gets its
/// passphrase (from `passphrase_file` when given, else asked once on the controlling terminal)
/// and checks that it opens the key. Problems go to `p`: no terminal and no file, an
/// unreadable file, a wrong passphrase, `passphrase_file` without a key, or two encrypted keys
/// (proxy: --key and --tls-key) with different passphrases, which OpenSSL's prompt cannot tell
/// apart. False after a
/// problem: the key must then not be loaded (OpenSSL would prompt for the passphrase itself).
bool prepare_key_passphrase(problems& p, const std::string& option, const std::string& key,
                            const std::string& passphrase_file);

}  // namespace wsx::cli
