// Raw system calls and kernel ABI pieces this addon uses.
//
// We call syscall(2) directly instead of glibc's pidfd_* wrappers: the wrappers need glibc 2.36 (which would raise
// the prebuild's glibc floor) and <sys/pidfd.h> has no extern "C" guard. The numbers from 424 up are shared by
// every architecture that uses the generic syscall table (x86_64 and arm64 alike), so the fallbacks are safe.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace pidfd {

// UIO_MAXIOV: the most ranges one process_madvise call takes (<linux/uio.h> clashes with <sys/uio.h>).
constexpr size_t kMaxIov = 1024;

// struct pidfd_info from <linux/pidfd.h>. It is size-versioned: 64 bytes (6.13, VER0), 72 (coredump fields),
// 80 (supported_mask). The size is encoded in the ioctl number; a kernel that knows less fills what it knows and
// leaves the rest zero, and only the bits it sets in `mask` say which fields are valid.
struct PidfdInfo {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid;
  uint32_t tgid;
  uint32_t ppid;
  uint32_t ruid;
  uint32_t rgid;
  uint32_t euid;
  uint32_t egid;
  uint32_t suid;
  uint32_t sgid;
  uint32_t fsuid;
  uint32_t fsgid;
  int32_t exit_code;
  uint32_t coredump_mask;
  uint32_t coredump_signal;
  uint64_t supported_mask;
};
static_assert(sizeof(PidfdInfo) == 80, "pidfd_info layout");

constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);
constexpr uint64_t kPidfdInfoExit = 1 << 3;

inline int sys_pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}
inline int sys_pidfd_send_signal(int fd, int sig, siginfo_t* info, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, fd, sig, info, flags));
}
inline int sys_pidfd_getfd(int fd, int target, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, fd, target, flags));
}
inline long sys_process_madvise(int fd, const struct iovec* iov, size_t n, int advice, unsigned flags) {
  return syscall(SYS_process_madvise, fd, iov, n, advice, flags);
}
inline int sys_process_mrelease(int fd, unsigned flags) {
  return static_cast<int>(syscall(SYS_process_mrelease, fd, flags));
}
// fcntl(fd, F_DUPFD_CLOEXEC, 0) by number: glibc 2.28 routes fcntl() through fcntl64, above the prebuild's floor.
inline int sys_dup_cloexec(int fd) { return static_cast<int>(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0)); }
inline int sys_waitid_pidfd(int fd, siginfo_t* info, int options) {
  // The raw waitid takes a fifth argument (struct rusage*); NULL is fine.
  return static_cast<int>(syscall(SYS_waitid, P_PIDFD, fd, info, options, nullptr));
}

// waitid(P_PIDFD) as one number: si_code << 8 | (si_status & 0xff) (> 0), 0 when WNOHANG found nothing, or -errno.
inline int waitid_packed(int fd, int options) {
  siginfo_t si = {};
  if (sys_waitid_pidfd(fd, &si, options) < 0) return -errno;
  if (si.si_pid == 0) return 0;
  return (si.si_code << 8) | (si.si_status & 0xff);
}

// PIDFD_INFO_EXIT as one number: the wait(2)-style status (>= 0), -ENODATA when the kernel has none (yet), or -errno.
inline int exit_status(int fd) {
  PidfdInfo pi = {};
  pi.mask = kPidfdInfoExit;
  if (ioctl(fd, kPidfdGetInfo, &pi) < 0) return -errno;
  if (!(pi.mask & kPidfdInfoExit)) return -ENODATA;
  return pi.exit_code & 0xffff;
}

}  // namespace pidfd
