// Compiled-once implementations of header-heavy Boost libraries.
#include <boost/beast/src.hpp>
#include <boost/url/src.hpp>
