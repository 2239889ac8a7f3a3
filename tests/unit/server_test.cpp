#include <catch2/catch.hpp>

#include "server.hpp"

using namespace wsx;

namespace {
http_request offering(std::initializer_list<const char*> extensions) {
    http_request req{http::verb::get, "/", 11};
    for (const char* e : extensions) req.insert(http::field::sec_websocket_extensions, e);
    return req;
}
}  // namespace

TEST_CASE("offers_deflate sees the permessage-deflate offers Beast's accept sees", "[server]") {
    CHECK(offers_deflate(offering({"permessage-deflate"})));
    CHECK(offers_deflate(offering({"x-webkit-deflate-frame, PerMessage-Deflate; client_max_window_bits"})));
    CHECK(offers_deflate(offering({"foo", "permessage-deflate"})));  // any field, where Beast reads the first
    CHECK_FALSE(offers_deflate(offering({})));
    CHECK_FALSE(offers_deflate(offering({"x-webkit-deflate-frame"})));
    // Found by fuzzing: Beast took the offer at the start of this value and agreed to compress,
    // while this check, splitting on ',' and ';', saw none, so the session parsed the frames
    // itself and the client's compressed messages were refused.
    CHECK(offers_deflate(offering({"permessage-deflate\xc5^client_max_window_bits, x-webkit-deflate-frame"})));
}
