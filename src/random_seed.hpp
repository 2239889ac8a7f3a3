#pragma once
/// Random seeds from the kernel.
///
/// std::random_device reads RDSEED or RDRAND on x86, and a hypervisor may trap those: about
/// 10 µs per call measured on a virtual machine, against 0.5 µs for getrandom(2). A one-shot
/// `wsx connect` needs several seeds (handshake key, frame masks, backoff jitter), so they
/// come from here.
#include <sys/random.h>

#include <cstdint>
#include <random>

namespace wsx {

/// 32 bits from getrandom(2); from std::random_device should that fail.
inline std::uint32_t random_seed() {
    std::uint32_t v = 0;
    if (::getrandom(&v, sizeof v, 0) == static_cast<ssize_t>(sizeof v)) return v;
    return std::random_device{}();
}

}  // namespace wsx
