// Processes the benchmarks need and Node cannot be: every one dies with its parent (PR_SET_PDEATHSIG).
//
//   helper victim        sleeps until killed (the process whose death is timed)
//   helper reaper        parent of victims that are not the benchmark's children. Commands on stdin:
//                          s      spawn one victim, answer its pid
//                          m <n>  spawn n victims, answer their pids on one line
//                        and reaps every victim the moment it dies (SIGCHLD through a signalfd), as a supervisor
//                        would. At end of input it kills and reaps whatever is left.
//   helper hog <MiB> [cpu]  waits for one byte on stdin (time to move it into a cgroup), touches <MiB> of anonymous
//                        memory, prints "ready", then sleeps until killed; with a cpu, it runs only on that CPU
//   helper spin <cpu>    burns that CPU until killed (to make a victim wait for the CPU while it exits)
//   helper pin <pid> <cpu>  restricts every thread of <pid> to that CPU (-1: to all CPUs again)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reaper.h"

static void die(const char* what) {
  fprintf(stderr, "helper: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void orphan_guard(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);  // the parent died before the line above
}

static int victim(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) pause();
  return 0;
}

// ---- reaper ----
static pid_t* live;
static size_t nlive, caplive;
static const char* self;

static pid_t spawn_victim(void) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    orphan_guard(parent);
    char* argv[] = {(char*)self, (char*)"victim", NULL};
    execv(self, argv);
    _exit(127);
  }
  close(p[1]);
  char c;
  while (read(p[0], &c, 1) < 0 && errno == EINTR) {
  }
  close(p[0]);
  if (nlive == caplive) {
    caplive = caplive ? 2 * caplive : 1024;
    live = realloc(live, caplive * sizeof *live);
    if (!live) die("realloc");
  }
  live[nlive++] = pid;
  return pid;
}

static void reap_all(int block) {
  for (;;) {
    pid_t pid = waitpid(-1, NULL, block ? 0 : WNOHANG);
    if (pid <= 0) {
      if (pid < 0 && errno == EINTR) continue;
      return;
    }
    for (size_t i = 0; i < nlive; i++) {
      if (live[i] == pid) {
        live[i] = live[--nlive];
        break;
      }
    }
  }
}

static int reaper(void) {
  int sfd = reaper_signalfd();
  if (sfd < 0) die("signalfd");
  FILE* in = stdin;
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
  char line[64];
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap_all(0);
    }
    if (fds[0].revents) {
      // One command per wake-up: commands are strictly request/answer, so stdio never holds a second line.
      if (!fgets(line, sizeof line, in)) break;
      if (line[0] == 's') {
        printf("%d\n", spawn_victim());
      } else if (line[0] == 'm') {
        long n = atol(line + 2);
        for (long i = 0; i < n; i++) printf(i ? " %d" : "%d", spawn_victim());
        printf("\n");
      }
      fflush(stdout);
    }
  }
  for (size_t i = 0; i < nlive; i++) kill(live[i], SIGKILL);
  reap_all(1);
  return 0;
}

// ---- hog ----
static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
}

static int pin_threads(pid_t pid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) {
    CPU_SET(cpu, &set);
  } else {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR* d = opendir(path);
  if (!d) die("opendir");
  struct dirent* e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (sched_setaffinity(atoi(e->d_name), sizeof set, &set) < 0 && errno != ESRCH) die("sched_setaffinity");
  }
  closedir(d);
  return 0;
}

static int spin(int cpu) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pin(cpu);
  for (volatile unsigned long i = 0;; i++) {
  }
  return 0;
}

static int hog(long mib, int cpu) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (cpu >= 0) pin(cpu);
  char c;
  if (read(0, &c, 1) != 1) return 1;
  size_t len = (size_t)mib << 20;
  char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  long page = sysconf(_SC_PAGESIZE);
  for (size_t off = 0; off < len; off += (size_t)page) p[off] = 1;
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}

int main(int argc, char** argv) {
  self = argv[0];
  if (argc >= 2 && strcmp(argv[1], "victim") == 0) return victim();
  if (argc >= 2 && strcmp(argv[1], "reaper") == 0) return reaper();
  if (argc >= 3 && strcmp(argv[1], "hog") == 0) return hog(atol(argv[2]), argc >= 4 ? atoi(argv[3]) : -1);
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) return spin(atoi(argv[2]));
  if (argc >= 4 && strcmp(argv[1], "pin") == 0) return pin_threads(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: helper victim | reaper | hog <MiB> [cpu] | spin <cpu> | pin <pid> <cpu>\n");
  return 2;
}
