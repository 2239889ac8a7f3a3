#include "static_files.hpp"


#include <fmt/format.h>

#include "exit_code.hpp"

namespace wsx {

namespace fs = std::filesystem;

std::string_view content_type_for(std::string_view filename) {
    struct entry {
        std::string_view ext, type;
    };
    static constexpr entry types[] = {
        {".html", "text/html; charset=utf-8"},  {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},    {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"},  {".md", "text/markdown; charset=utf-8"},
        {".csv", "text/csv; charset=utf-8"},    {".xml", "application/xml"},
        {".svg", "image/svg+xml"},              {".png", "image/png"},
        {".jpg", "image/jpeg"},                 {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},                  {".webp", "image/webp"},
        {".ico", "image/vnd.microsoft.icon"},   {".wasm", "application/wasm"},
        {".pdf", "application/pdf"},            {".woff", "font/woff"},
        {".woff2", "font/woff2"},               {".mp3", "audio/mpeg"},
        {".mp4", "video/mp4"},                  {".webm", "video/webm"},
        {".map", "application/json"},
    };
    auto dot = filename.rfind('.');
    auto slash = filename.rfind('/');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return "application/octet-stream";
    std::string ext(filename.substr(dot));
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& t : types)
        if (t.ext == ext) return t.type;
    return "application/octet-stream";
}

std::optional<std::string> safe_relative_path(std::string_view target) {
    auto q = target.find_first_of("?#");
    if (q != std::string_view::npos) target = target.substr(0, q);
    if (target.empty() || target[0] != '/') return std::nullopt;
    std::string decoded;
    for (std::size_t i = 0; i < target.size(); ++i) {
        char c = target[i];
        if (c == '%') {
            if (i + 2 >= target.size() || !std::isxdigit(static_cast<unsigned char>(target[i + 1])) ||
                !std::isxdigit(static_cast<unsigned char>(target[i + 2])))
                return std::nullopt;
            c = static_cast<char>(std::stoi(std::string(target.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        }
        if (c == '\0' || c == '\\') return std::nullopt;
        decoded += c;
    }
    std::string out;
    std::size_t pos = 0;
    while (pos <= decoded.size()) {
        auto next = decoded.find('/', pos);
        if (next == std::string::npos) next = decoded.size();
        std::string_view seg(decoded.data() + pos, next - pos);
        if (seg == "..") return std::nullopt;
        if (!seg.empty() && seg != ".") {
            if (!out.empty()) out += '/';
            out.append(seg);
        }
        pos = next + 1;
    }
    return out;
}

static_files::static_files(const std::string& root) {
    std::error_code sec;
    auto canon = fs::canonical(root, sec);
    if (sec || !fs::is_directory(canon, sec))
        throw failure(exit_code::usage, fmt::format("--static '{}': not a directory", root));
    root_ = canon;
}

http_answer static_files::serve(const http_request& req) const {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        auto res = make_response(http::status::method_not_allowed, "only GET and HEAD are served here");
        res.set(http::field::allow, "GET, HEAD");
        return res;
    }
    auto target = std::string_view(req.target().data(), req.target().size());
    auto rel = safe_relative_path(target);
    if (!rel) return make_response(http::status::not_found, "not found");
    std::error_code ec;
    fs::path p = root_ / *rel;
    auto canon = fs::canonical(p, ec);
    if (ec) return make_response(http::status::not_found, "not found");
    // Symbolic links may point anywhere: what is served must still lie under the root.
    auto [root_end, ignored] = std::mismatch(root_.begin(), root_.end(), canon.begin(), canon.end());
    if (root_end != root_.end()) return make_response(http::status::not_found, "not found");
    if (fs::is_directory(canon, ec)) {
        const auto path_end = target.find_first_of("?#");
        if (!target.empty() && path_end != 0 && target.substr(0, path_end).back() != '/') {
            auto res = make_response(http::status::moved_permanently, "moved");
            auto path = target.substr(0, path_end);
            // "//host/x" would name another host: one leading slash, always a path on this one.
            path.remove_prefix(std::min(path.find_first_not_of('/'), path.size()) - 1);
            res.set(http::field::location, std::string(path) + "/");
            return res;
        }
        canon /= "index.html";
        if (!fs::is_regular_file(canon, ec)) return make_response(http::status::not_found, "not found");
    }
    if (!fs::is_regular_file(canon, ec)) return make_response(http::status::not_found, "not found");
    beast::error_code fec;
    http::file_body::value_type file;
    file.open(canon.c_str(), beast::file_mode::scan, fec);
    if (fec) return make_response(http::status::forbidden, "cannot read this file");
    auto headers = [&](auto& res) {
        res.set(http::field::server, "wsx/" WSX_VERSION);
        res.set(http::field::content_type, content_type_for(canon.filename().string()));
        res.set(http::field::cache_control, "no-cache");
    };
    if (req.method() == http::verb::head) {  // the length, without reading the file
        http_response res{http::status::ok, req.version()};
        headers(res);
        res.content_length(file.size());
        return res;
    }
    file_response res{http::status::ok, req.version()};
    headers(res);
    res.body() = std::move(file);
    res.prepare_payload();
    return res;
}

}  // namespace wsx
