#pragma once
// What this build is: one version number (project(VERSION) in CMakeLists.txt), the git commit it
// was built from and the build type. The definitions are generated at build time into one small
// unit (cmake/build_identity.cmake), so that a new commit recompiles that unit alone.
#include <string>
#include <string_view>

namespace wsx::cli {

std::string_view build_version();  ///< "0.1.0"
std::string_view build_commit();   ///< "abc1234", "abc1234-dirty", or "" when built without git
std::string_view build_type();     ///< "Release", "Debug", ...
std::string_view build_date();     ///< "2026-12-04": the commit's date (SOURCE_DATE_EPOCH, or the build's, without git)

/// "0.1.0 (abc1234-dirty, Release)", or "0.1.0 (Release)" without a commit.
inline std::string build_identity() {
    std::string s(build_version());
    s += " (";
    if (!build_commit().empty()) (s += build_commit()) += ", ";
    s += build_type();
    s += ')';
    return s;
}

}  // namespace wsx::cli
