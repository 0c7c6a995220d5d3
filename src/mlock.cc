// mlock2(2) over ranges, for lockMemory() (lib/lmk.ts).
//
// Why not mlockall: in a Node process it is fatal. V8 gives heap pages back with madvise(MADV_DONTNEED), the
// kernel refuses that on locked memory (EINVAL), and V8 aborts on the failure ("Check failed: 0 == ret" in
// OS::SetPermissions, Node 20), at the latest when the isolate is torn down. So the TypeScript side chooses ranges
// V8 never returns (the file-backed mappings: code and read-only data) and locks those.
#include <errno.h>
#include <sys/mman.h>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {
namespace {

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

// (BigUint64Array [addr0, len0, ...], flags) → number of ranges locked | -errno of the first failure.
Napi::Value Mlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    throw Napi::TypeError::New(env, "pidfd native: ranges must be a BigUint64Array");
  Napi::BigUint64Array a = info[0].As<Napi::BigUint64Array>();
  unsigned flags = static_cast<unsigned>(Int32Arg(info, 1));
  size_t n = a.ElementLength() / 2;
  for (size_t i = 0; i < n; i++) {
#ifdef SYS_mlock2
    long r = syscall(SYS_mlock2, static_cast<uintptr_t>(a[2 * i]), static_cast<size_t>(a[2 * i + 1]), flags);
#else
    long r = -1;
    errno = ENOSYS;
#endif
    if (r < 0) return Result(env, -static_cast<double>(errno));
  }
  return Result(env, static_cast<double>(n));
}

}  // namespace

void InitMlock(Napi::Env env, Napi::Object exports) {
  exports.Get("constants").As<Napi::Object>().Set("MLOCK_ONFAULT", Napi::Number::New(env, MLOCK_ONFAULT));
  exports.Set("mlock", Napi::Function::New(env, Mlock, "mlock"));
}

}  // namespace pidfd
