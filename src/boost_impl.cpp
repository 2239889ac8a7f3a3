// Compiled-once implementations of header-heavy Boost libraries. Asio (with its SSL layer) is
// built here too, under BOOST_ASIO_SEPARATE_COMPILATION: every other unit sees only its
// declarations, which takes about a tenth off the compile time of a unit that uses it.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/url/src.hpp>
