#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "secret_file.hpp"

using namespace wsx;

namespace {
/// A file in a fresh temporary directory, removed with it.
struct temp_file {
    std::string dir, path;
    temp_file(const std::string& content, mode_t mode = 0600) {
        char tmpl[] = "/tmp/wsx-secret-XXXXXX";
        dir = ::mkdtemp(tmpl);
        path = dir + "/secret";
        std::ofstream(path, std::ios::binary) << content;
        ::chmod(path.c_str(), mode);
    }
    ~temp_file() {
        std::remove(path.c_str());
        ::rmdir(dir.c_str());
    }
};
}  // namespace

TEST_CASE("read_secret_file drops one trailing newline", "[secret_file]") {
    CHECK(read_secret_file(temp_file("s3cret").path).secret == std::optional<std::string>("s3cret"));
    CHECK(read_secret_file(temp_file("s3cret\n").path).secret == std::optional<std::string>("s3cret"));
    CHECK(read_secret_file(temp_file("s3cret\r\n").path).secret == std::optional<std::string>("s3cret"));
    CHECK(read_secret_file(temp_file(" spaced out \n").path).secret == std::optional<std::string>(" spaced out "));
    CHECK(read_secret_file(temp_file("user:pa:ss\n").path).secret == std::optional<std::string>("user:pa:ss"));
}

TEST_CASE("read_secret_file refuses what cannot be a secret", "[secret_file]") {
    auto error_of = [](const std::string& content) {
        temp_file f(content);
        auto r = read_secret_file(f.path);
        CHECK_FALSE(r.secret);
        return r.error;
    };
    CHECK(error_of("").find("is empty") == 0);
    CHECK(error_of("\n").find("is empty") == 0);
    CHECK(error_of("a\n\n").find("more than one line") != std::string::npos);
    CHECK(error_of("a\nb").find("more than one line") != std::string::npos);
    CHECK(error_of(std::string("a\0b", 3)).find("NUL") != std::string::npos);
    CHECK(error_of(std::string(64 * 1024 + 1, 'x')).find("larger than 64 KiB") != std::string::npos);
    CHECK(read_secret_file(temp_file(std::string(64 * 1024, 'x')).path).secret->size() == 64 * 1024);

    auto missing = read_secret_file("/nonexistent/wsx-secret");
    CHECK_FALSE(missing.secret);
    CHECK(missing.error.find("cannot read the file (No such file or directory)") == 0);
    auto dir = read_secret_file("/tmp");
    CHECK_FALSE(dir.secret);
    CHECK(dir.error == "is a directory, not a file");
}

TEST_CASE("read_secret_file tells whether others may read the file", "[secret_file]") {
    for (auto [mode, others] : {std::pair{0600u, false}, {0400u, false}, {0644u, true}, {0640u, true}, {0604u, true}}) {
        temp_file f("k\n", mode);
        auto r = read_secret_file(f.path);
        CHECK(r.secret == std::optional<std::string>("k"));
        CHECK(r.others_can_read == others);
        CHECK(r.mode == mode);
    }
}
