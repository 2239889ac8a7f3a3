// wsx bench: parse options → bench_options → validate (every problem at once) → run → reports.
#include "commands.hpp"
#include "exit_code.hpp"

#include <iostream>

namespace wsx::cli {

runner setup_bench(CLI::App& app) {
    auto url = std::make_shared<std::string>();
    app.add_option("url", *url, "ws:// or wss:// URL of the server under test")->type_name("URL");
    return [] {
        std::cerr << "wsx: error: bench: not implemented yet\n";
        return static_cast<int>(exit_code::failure);
    };
}

}  // namespace wsx::cli
