// Keeps the prebuilds loadable by the C++ runtime of old distributions (the libstdc++ of GCC 4.8: GLIBCXX_3.4.19,
// CXXABI_1.3.7, as in RHEL/CentOS 7 and Ubuntu 14.04, the manylinux2014 baseline), although they are built with a
// current GCC. scripts/check-glibc-floor.mjs fails the build when a newer symbol version appears.
//
// binding.gyp already avoids most of the newer runtime: -D_GLIBCXX_USE_CXX11_ABI=0 (the pre-GCC-5 std::string,
// which never crosses into Node: N-API is a C interface) and -fno-sized-deallocation (no C++14 operator delete).
// Three symbols are left that GCC 11+ headers reference from code we cannot change.
//
// The overflow checks. GCC 11+ calls from code we cannot change: the overflow checks of `new T[n]`
// (node-addon-api's CallbackInfo allocates its argument array that way) and of std::allocator<T>::allocate (every
// std container). Both can only fire on a size that overflows, which no call here produces. Defining them in the
// addon, hidden, binds those calls locally instead of to GLIBCXX_3.4.29 / CXXABI_1.3.8 (Firefox's stdc++compat
// does the same). They throw std::bad_alloc, the base class of std::bad_array_new_length, which older runtimes have.
//
// __libc_single_threaded (glibc 2.32). With glibc 2.32+ headers, libstdc++ reads this flag to skip atomic
// operations (the old std::string's reference count) in a single-threaded process. A Node process never is one
// (libuv's thread pool, V8's platform threads), so glibc's flag is always 0 here. Our own hidden 0 makes the same
// choice, atomic reference counts, without needing glibc 2.32.
#include <new>

extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}

// Declared here only for the definition below; <cxxabi.h> would declare it with default visibility.
extern "C" __attribute__((visibility("hidden"), noreturn)) void __cxa_throw_bad_array_new_length();

extern "C" void __cxa_throw_bad_array_new_length() { throw std::bad_alloc(); }

namespace std {
// Declared (default visibility) by <bits/functexcept.h>; hidden here so the addon exports nothing new.
__attribute__((visibility("hidden"))) void __throw_bad_array_new_length() { throw std::bad_alloc(); }
}  // namespace std
