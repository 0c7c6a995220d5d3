// Shared by the bench's C helpers that reap children: die with the parent, and take SIGCHLD through a signalfd
// (blocked first, so no death between the spawn and the poll is lost).
#pragma once
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

static int reaper_signalfd(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  return signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
}
