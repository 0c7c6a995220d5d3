// The floor: how fast a process can possibly learn that another process died, measured the plainest way there is
// (a pidfd in an epoll set, one thread, no runtime). `npm run bench` compares every Node mechanism against it.
//
//   floor serve <victim> <settle-us>
//
// reads one command per line on stdin and answers one line on stdout:
//   c        fork+exec <victim> (our own child), open a pidfd, wait <settle-us>, then time kill(SIGKILL) → epoll
//            reports EPOLLIN. Answers "<ns>".
//   n <pid>  the same for a process that is not our child (its parent reaps it): kill → EPOLLIN (it exited), then
//            → EPOLLHUP (its parent reaped it). Answers "<ns-exited> <ns-reaped>".
// The clock is CLOCK_MONOTONIC, the one behind process.hrtime(); t0 is taken just before kill(2), as on the Node side.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char* what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void settle(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

// Blocks until the epoll set reports something; returns the events.
static uint32_t wait_one(int ep) {
  struct epoll_event ev;
  for (;;) {
    int n = epoll_wait(ep, &ev, 1, -1);
    if (n == 1) return ev.events;
    if (n < 0 && errno != EINTR) die("epoll_wait");
  }
}

// fork + exec, returning once the exec has succeeded (the close-on-exec pipe closes), as libuv's spawn does.
static pid_t spawn_victim(const char* victim) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    char* argv[] = {(char*)victim, (char*)"victim", NULL};
    execv(victim, argv);
    int e = errno;
    (void)!write(p[1], &e, sizeof e);
    _exit(127);
  }
  close(p[1]);
  int e = 0;
  ssize_t r;
  while ((r = read(p[0], &e, sizeof e)) < 0 && errno == EINTR) {
  }
  close(p[0]);
  if (r > 0) {
    errno = e;
    die("exec victim");
  }
  return pid;
}

int main(int argc, char** argv) {
  if (argc != 4 || strcmp(argv[1], "serve") != 0) {
    fprintf(stderr, "usage: floor serve <victim> <settle-us>\n");
    return 2;
  }
  const char* victim = argv[2];
  long settle_us = atol(argv[3]);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    int child = line[0] == 'c';
    pid_t pid = child ? spawn_victim(victim) : (pid_t)atol(line + 2);
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) die("pidfd_open");
    struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = fd}};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    settle(settle_us);

    int64_t t0 = now_ns();
    if (kill(pid, SIGKILL) < 0) die("kill");
    wait_one(ep);
    int64_t t1 = now_ns();

    if (child) {
      printf("%lld\n", (long long)(t1 - t0));
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
      }
    } else {
      // Level-triggered EPOLLIN would fire again at once; ask only for EPOLLHUP (always reported): the reap.
      ev.events = 0;
      if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl");
      wait_one(ep);
      int64_t t2 = now_ns();
      printf("%lld %lld\n", (long long)(t1 - t0), (long long)(t2 - t0));
    }
    fflush(stdout);
    close(fd);  // also removes it from the epoll set
  }
  return 0;
}
