#include "key_passphrase.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ui.h>

namespace wsx::cli {
namespace {

/// The passphrase OpenSSL is given for any encrypted key it reads from now on.
std::string& stored_passphrase() {
    static std::string passphrase;
    return passphrase;
}

/// The option whose key's passphrase is stored; empty while there is none.
std::string& stored_for() {
    static std::string option;
    return option;
}

/// OpenSSL's UI reader: answers a passphrase prompt from memory instead of the terminal.
int answer_from_memory(UI* ui, UI_STRING* uis) {
    switch (UI_get_string_type(uis)) {
    case UIT_PROMPT:
    case UIT_VERIFY: return UI_set_result(ui, uis, stored_passphrase().c_str()) == 0 ? 1 : 0;
    default: return 1;
    }
}

void answer_passphrase_prompts(std::string passphrase) {
    stored_passphrase() = std::move(passphrase);
    static UI_METHOD* method = [] {
        UI_METHOD* m = UI_create_method("wsx key passphrase");
        UI_method_set_reader(m, answer_from_memory);
        return m;
    }();
    UI_set_default_method(method);
}

enum class key_state { plain, encrypted, opened, wrong, unreadable };

/// Reads the key at `path` with `passphrase` (nullptr: as if no passphrase could be had).
key_state try_key(const std::string& path, const std::string* passphrase) {
    BIO* bio = BIO_new_file(path.c_str(), "r");
    if (bio == nullptr) return key_state::unreadable;
    struct asked {
        const std::string* passphrase;
        bool called = false;
    } state{passphrase};
    auto cb = [](char* buf, int size, int, void* u) -> int {
        auto* s = static_cast<asked*>(u);
        s->called = true;
        if (s->passphrase == nullptr || size <= 0) return -1;
        const int n = static_cast<int>(std::min<std::size_t>(s->passphrase->size(), static_cast<std::size_t>(size)));
        std::memcpy(buf, s->passphrase->data(), static_cast<std::size_t>(n));
        return n;
    };
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, cb, &state);
    BIO_free(bio);
    ERR_clear_error();
    if (key != nullptr) EVP_PKEY_free(key);
    if (!state.called) return key != nullptr ? key_state::plain : key_state::unreadable;
    if (key != nullptr) return key_state::opened;
    return passphrase == nullptr ? key_state::encrypted : key_state::wrong;
}

/// Asks for the passphrase on the controlling terminal, without echo; false when there is none.
bool ask_on_terminal(const std::string& prompt, std::string* out) {
    const int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return false;
    ::close(fd);
    char buf[1024];
    // OpenSSL's own prompt (echo off, on /dev/tty); it is the default UI method until a
    // passphrase is stored.
    if (EVP_read_pw_string(buf, sizeof buf, prompt.c_str(), 0) != 0) {
        ERR_clear_error();
        return false;
    }
    *out = buf;
    OPENSSL_cleanse(buf, sizeof buf);
    return true;
}

}  // namespace

bool prepare_key_passphrase(problems& p, const std::string& option, const std::string& key,
                            const std::string& passphrase_file) {
    if (key.empty()) {
        if (passphrase_file.empty()) return true;
        p.add(fmt::format("{}-passphrase-file needs {}", option, option));
        return false;
    }
    std::string passphrase;
    std::string source;
    if (!passphrase_file.empty()) {
        std::ifstream f(passphrase_file);
        if (!f) {
            p.add(fmt::format("{}-passphrase-file '{}': cannot read the file ({})", option, passphrase_file,
                              std::strerror(errno)));
            return false;
        }
        std::getline(f, passphrase);  // the first line, as openssl's -passin file: does
        if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
        source = fmt::format(" from {}-passphrase-file", option);
    }
    switch (try_key(key, passphrase_file.empty() ? nullptr : &passphrase)) {
    case key_state::plain:
    case key_state::unreadable: return true;  // nothing to ask; reading errors are reported with the key
    case key_state::opened: break;
    case key_state::wrong:
        p.add(fmt::format("{} '{}': the passphrase{} does not open the key", option, key, source));
        return false;
    case key_state::encrypted:
        if (!ask_on_terminal(fmt::format("Passphrase for {} {}: ", option, key), &passphrase)) {
            p.add(fmt::format("{} '{}' is encrypted and there is no terminal to ask for its passphrase: "
                              "give it with {}-passphrase-file FILE", option, key, option));
            return false;
        }
        if (try_key(key, &passphrase) != key_state::opened) {
            p.add(fmt::format("{} '{}': the passphrase does not open the key", option, key));
            return false;
        }
        break;
    }
    // OpenSSL's prompt does not say which key it reads, so every key gets the one answer.
    if (!stored_for().empty() && passphrase != stored_passphrase()) {
        p.add(fmt::format("{} '{}' and {} have different passphrases; wsx can use only one: give both keys "
                          "the same passphrase, or one without", option, key, stored_for()));
        return false;
    }
    stored_for() = option;
    answer_passphrase_prompts(std::move(passphrase));
    return true;
}

}  // namespace wsx::cli
