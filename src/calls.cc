// One small JS-callable function per kernel call. Each returns its result or -errno; argument checking and every
// decision about what an error means happen in TypeScript (lib/).
#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>


#include "addon.h"
#include "syscalls.h"

namespace pidfd {
namespace {

inline double Neg(int e) { return -static_cast<double>(e); }

Napi::Value Open(const Napi::CallbackInfo& info) {
  int fd = sys_pidfd_open(Int32Arg(info, 0), static_cast<unsigned>(Int32Arg(info, 1)));
  if (fd < 0) return Result(info.Env(), Neg(errno));
  GetState(info.Env())->owned.insert(fd);
  return Result(info.Env(), fd);
}

// (fd, sig, flags, value?) — with a value, the signal carries a siginfo as sigqueue(3) builds it (SI_QUEUE), so
// the target reads it from si_value.
Napi::Value SendSignal(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0), sig = Int32Arg(info, 1);
  unsigned flags = static_cast<unsigned>(Int32Arg(info, 2));
  int r;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    siginfo_t si = {};
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = Int32Arg(info, 3);
    r = sys_pidfd_send_signal(fd, sig, &si, flags);
  } else {
    r = sys_pidfd_send_signal(fd, sig, nullptr, flags);
  }
  return Result(info.Env(), r < 0 ? Neg(errno) : 0);
}

Napi::Value GetFd(const Napi::CallbackInfo& info) {
  int fd = sys_pidfd_getfd(Int32Arg(info, 0), Int32Arg(info, 1), 0);
  return Result(info.Env(), fd < 0 ? Neg(errno) : fd);
}

// (fd, options) → see waitid_packed. One number rather than an object: this is on the exit-notification hot path.
Napi::Value Waitid(const Napi::CallbackInfo& info) {
  return Result(info.Env(), waitid_packed(Int32Arg(info, 0), Int32Arg(info, 1)));
}

// (fd) → see exit_status: the hot-path sibling of GetInfo.
Napi::Value ExitStatus(const Napi::CallbackInfo& info) {
  return Result(info.Env(), exit_status(Int32Arg(info, 0)));
}

// (fd, requestMask) → the raw pidfd_info fields (only those whose bit is in `mask` are meaningful) | -errno
Napi::Value GetInfo(const Napi::CallbackInfo& info) {
  PidfdInfo pi = {};
  pi.mask = static_cast<uint32_t>(Int32Arg(info, 1));
  Napi::Env env = info.Env();
  if (ioctl(Int32Arg(info, 0), kPidfdGetInfo, &pi) < 0) return Result(env, Neg(errno));
  Napi::Object o = Napi::Object::New(env);
  o.Set("mask", Napi::Number::New(env, static_cast<double>(pi.mask)));
  o.Set("cgroupid", Napi::BigInt::New(env, static_cast<uint64_t>(pi.cgroupid)));
  o.Set("pid", Napi::Number::New(env, pi.pid));
  o.Set("tgid", Napi::Number::New(env, pi.tgid));
  o.Set("ppid", Napi::Number::New(env, pi.ppid));
  o.Set("ruid", Napi::Number::New(env, pi.ruid));
  o.Set("rgid", Napi::Number::New(env, pi.rgid));
  o.Set("euid", Napi::Number::New(env, pi.euid));
  o.Set("egid", Napi::Number::New(env, pi.egid));
  o.Set("suid", Napi::Number::New(env, pi.suid));
  o.Set("sgid", Napi::Number::New(env, pi.sgid));
  o.Set("fsuid", Napi::Number::New(env, pi.fsuid));
  o.Set("fsgid", Napi::Number::New(env, pi.fsgid));
  o.Set("exitCode", Napi::Number::New(env, pi.exit_code));
  o.Set("coredumpMask", Napi::Number::New(env, pi.coredump_mask));
  return o;
}

// (fd, BigUint64Array [addr0, len0, addr1, len1, ...], advice) → bytes advised | -errno.
// Batching (UIO_MAXIOV, the per-call byte cap) and resuming after partial progress are the caller's job.
Napi::Value Madvise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    throw Napi::TypeError::New(env, "pidfd native: ranges must be a BigUint64Array");
  Napi::BigUint64Array a = info[1].As<Napi::BigUint64Array>();
  size_t n = a.ElementLength() / 2;
  // The kernel takes at most UIO_MAXIOV ranges per call; a fixed array keeps this free of heap allocation (and of
  // std::vector, whose newer libstdc++ symbols would raise the prebuild's GLIBCXX floor).
  struct iovec iov[kMaxIov];
  if (n > kMaxIov) return Result(env, Neg(EINVAL));
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = reinterpret_cast<void*>(static_cast<uintptr_t>(a[2 * i]));
    iov[i].iov_len = static_cast<size_t>(a[2 * i + 1]);
  }
  long r = sys_process_madvise(Int32Arg(info, 0), iov, n, Int32Arg(info, 2), 0);
  return Result(env, r < 0 ? Neg(errno) : static_cast<double>(r));
}

Napi::Value Mrelease(const Napi::CallbackInfo& info) {
  int r = sys_process_mrelease(Int32Arg(info, 0), 0);
  return Result(info.Env(), r < 0 ? Neg(errno) : 0);
}

// Zero-timeout poll of one fd → revents (0 when nothing is ready) | -errno.
Napi::Value Poll(const Napi::CallbackInfo& info) {
  struct pollfd p = {Int32Arg(info, 0), POLLIN, 0};
  int r = poll(&p, 1, 0);
  return Result(info.Env(), r < 0 ? Neg(errno) : p.revents);
}

// Closes an fd this environment handed out. Any other number gives -EBADF without reaching close(2).
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0);
  if (GetState(info.Env())->owned.erase(fd) == 0) return Result(info.Env(), Neg(EBADF));
  return Result(info.Env(), close(fd) < 0 && errno != EINTR ? Neg(errno) : 0);
}

// A pidfd for a process that has exited and been reaped: what the capability probe needs to learn whether the
// kernel keeps exit information for reaped processes (PIDFD_INFO_EXIT). The vfork child only calls _exit.
Napi::Value OpenReaped(const Napi::CallbackInfo& info) {
  pid_t pid = vfork();
  if (pid == 0) _exit(0);
  if (pid < 0) return Result(info.Env(), Neg(errno));
  int fd = sys_pidfd_open(pid, 0);
  int err = errno;
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (fd < 0) return Result(info.Env(), Neg(err));
  GetState(info.Env())->owned.insert(fd);
  return Result(info.Env(), fd);
}

}  // namespace

void InitCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("sendSignal", Napi::Function::New(env, SendSignal, "sendSignal"));
  exports.Set("getfd", Napi::Function::New(env, GetFd, "getfd"));
  exports.Set("waitid", Napi::Function::New(env, Waitid, "waitid"));
  exports.Set("info", Napi::Function::New(env, GetInfo, "info"));
  exports.Set("exitStatus", Napi::Function::New(env, ExitStatus, "exitStatus"));
  exports.Set("madvise", Napi::Function::New(env, Madvise, "madvise"));
  exports.Set("mrelease", Napi::Function::New(env, Mrelease, "mrelease"));
  exports.Set("poll", Napi::Function::New(env, Poll, "poll"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("openReaped", Napi::Function::New(env, OpenReaped, "openReaped"));
}

}  // namespace pidfd
