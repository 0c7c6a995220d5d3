// Processes for bench/terminate.mjs and bench/killtree.mjs. A subreaper parent (PR_SET_CHILD_SUBREAPER) that
// reaps every process below it the moment it dies, as a supervisor would, so for the benchmark they are
// non-children whose death kill(pid, 0) can see. Commands on stdin, one answer line each:
//   v <n> <ignore 0|1>  fork n victims (sleeping in pause(); ignoring SIGTERM if 1); answer their pids
//   t <n> <fork 0|1>    fork a tree of n processes (breadth first, 3 children each) under one root; with fork 1
//                       the root also forks a new long-lived child every 50 ms while it runs (up to 400, not
//                       counted in n), so the tree grows while it is being killed. Answer: "<root> <n pids>"
//   c                   count the live processes below this helper: "alive <n>"
//   k                   SIGKILL everything below this helper (again and again, until nothing is left): "killed"
// At end of input it does `k` and exits. Every process dies with the helper (PR_SET_PDEATHSIG) only if its
// parent is the helper; the `k` command and the subreaper role take care of the rest.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reaper.h"

static pid_t self;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static void child_setup(int ignore) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGTERM, ignore ? SIG_IGN : SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
}

static void victim(int ignore) {
  child_setup(ignore);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) pause();
}

// A tree member: its pipe write end gets its pid, then it forks its share of children.
static int g_fork_loop;
static void member_loop(int is_root) __attribute__((noreturn));
static void member_loop(int is_root) {
  int extra = 0;
  for (;;) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (g_fork_loop && is_root && extra < 400) {
      pid_t c = fork();
      if (c == 0) {
        for (;;) pause();
      }
      if (c > 0) extra++;
      sleep_ms(50);
    } else {
      pause();
    }
  }
}

// Builds a tree of n processes, breadth first with fanout 3, by handing out indices through a pipe: member i
// forks members 3i+1 .. 3i+3 (those < n). Each writes its pid to `out`.
static void member(int index, int n, int out) {
again:;
  pid_t me = getpid();
  if (write(out, &me, sizeof me) != sizeof me) _exit(3);
  for (int k = 1; k <= 3; k++) {
    int c = 3 * index + k;
    if (c >= n) break;
    pid_t p = fork();
    if (p == 0) {
      index = c;  // the child becomes member c
      goto again;
    }
  }
  close(out);
  member_loop(index == 0);
}

static int list_children(pid_t pid, pid_t *out, int max) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    if (e->d_name[0] == '.') continue;
    char cp[300];
    snprintf(cp, sizeof cp, "/proc/%d/task/%s/children", pid, e->d_name);
    FILE *f = fopen(cp, "r");
    int c;
    while (f && n < max && fscanf(f, "%d", &c) == 1) out[n++] = c;
    if (f) fclose(f);
  }
  closedir(d);
  return n;
}

static char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char s = 0;
  if (fgets(buf, sizeof buf, f)) {
    char *q = strrchr(buf, ')');
    if (q) s = q[2];
  }
  fclose(f);
  return s;
}

#define MAXP 65536
static pid_t stack[MAXP];

// Every live (non-zombie) descendant, depth first. Returns the count; with kill_them, SIGKILLs each.
static int descendants(int kill_them) {
  int sp = 0, count = 0;
  sp = list_children(self, stack, MAXP);
  while (sp > 0) {
    pid_t p = stack[--sp];
    char s = state_of(p);
    if (s && s != 'Z') {
      count++;
      if (kill_them) kill(p, SIGKILL);
    }
    sp += list_children(p, stack + sp, MAXP - sp);
  }
  return count;
}

static void reap_all(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  self = getpid();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int sfd = reaper_signalfd();
  setvbuf(stdout, NULL, _IOLBF, 0);
  char line[256];
  size_t used = 0;
  for (;;) {
    struct pollfd p[2] = {{sfd, POLLIN, 0}, {0, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) break;
    if (p[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
      }
      reap_all();
    }
    if (!p[1].revents) continue;
    ssize_t r = read(0, line + used, sizeof line - 1 - used);
    if (r <= 0) break;
    used += r;
    line[used] = 0;
    char *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = 0;
      int a = 0, b = 0;
      if (sscanf(line, "v %d %d", &a, &b) == 2) {
        for (int i = 0; i < a; i++) {
          pid_t c = fork();
          if (c == 0) victim(b);
          printf(i ? " %d" : "%d", c);
        }
        printf("\n");
      } else if (sscanf(line, "t %d %d", &a, &b) == 2) {
        int fds[2];
        if (pipe(fds) < 0) return 2;
        g_fork_loop = b;
        pid_t root = fork();
        if (root == 0) {
          close(fds[0]);
          child_setup(0);
          member(0, a, fds[1]);
          _exit(0);
        }
        close(fds[1]);
        printf("%d", root);
        pid_t got;
        int n = 0;
        while (n < a && read(fds[0], &got, sizeof got) == sizeof got) {
          printf(" %d", got);
          n++;
        }
        close(fds[0]);
        printf("\n");
      } else if (strcmp(line, "c") == 0) {
        reap_all();
        printf("alive %d\n", descendants(0));
      } else if (strcmp(line, "k") == 0) {
        for (int i = 0; i < 200 && descendants(1) > 0; i++) {
          sleep_ms(2);
          reap_all();
        }
        reap_all();
        printf("killed\n");
      }
      memmove(line, nl + 1, used - (nl + 1 - line) + 1);
      used -= nl + 1 - line;
    }
  }
  for (int i = 0; i < 200 && descendants(1) > 0; i++) {
    sleep_ms(2);
    reap_all();
  }
  return 0;
}
