#pragma once
/// Plain HTTP GET/HEAD of the files under one directory, for `serve --static`.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "server.hpp"

namespace wsx {

/// The Content-Type for a file name, from its extension ("application/octet-stream" if unknown).
std::string_view content_type_for(std::string_view filename);

/// Maps a request target ("/a/b.html?x=1") to a path relative to the root: percent-decoded,
/// query dropped, "." segments removed. Returns nullopt for anything that could leave the
/// root or is malformed: ".." segments, NUL bytes, backslashes, bad %-escapes.
std::optional<std::string> safe_relative_path(std::string_view target);

/// Serves files below `root`; symbolic links that lead outside it are refused.
class static_files {
public:
    /// Throws wsx::failure(usage) when `root` is not a readable directory.
    explicit static_files(const std::string& root);
    /// Answers GET/HEAD for a file (a directory serves its index.html): 200, 301 (a directory
    /// without its final '/'), 403, 404, 405. A GET streams the file; a HEAD does not read it.
    http_answer serve(const http_request& req) const;

private:
    std::filesystem::path root_;  // canonical
};

}  // namespace wsx
