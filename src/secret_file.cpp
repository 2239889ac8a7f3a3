#include "secret_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace wsx {

secret_file read_secret_file(const std::string& path) {
    secret_file r;
    constexpr std::size_t max_bytes = 64 * 1024;
    // O_NONBLOCK: a FIFO must not hang the start-up (it is refused below, once opened).
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r.error = std::string("cannot read the file (") + std::strerror(errno) + "): check the path, and that this user may read it";
        return r;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r.error = S_ISDIR(st.st_mode) ? "is a directory, not a file" : "is not a regular file";
        ::close(fd);
        return r;
    }
    r.mode = st.st_mode & 07777;
    r.others_can_read = (st.st_mode & 0044) != 0;
    std::string text;
    char buf[4096];
    for (;;) {
        const auto n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r.error = std::string("cannot read the file (") + std::strerror(errno) + ")";
            ::close(fd);
            return r;
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_bytes) {
            r.error = "is larger than 64 KiB: a secret file holds the secret alone, on one line";
            ::close(fd);
            return r;
        }
    }
    ::close(fd);
    if (!text.empty() && text.back() == '\n') {
        text.pop_back();
        if (!text.empty() && text.back() == '\r') text.pop_back();
    }
    if (text.empty()) {
        r.error = "is empty: put the secret in it, on one line";
        return r;
    }
    if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        r.error = "holds more than one line (or a NUL): put the secret alone on one line";
        return r;
    }
    r.secret = std::move(text);
    return r;
}

}  // namespace wsx
