// The processes of bench/peers.mjs (the low-memory killers side by side).
//
//   peers launch <cgroup> <log> [meminfo=<file>] <spec>... -- <killer argv>...
//       The init of a private pid namespace (run under `unshare --pid --fork --mount-proc`). With meminfo=, it
//       first bind-mounts <file> over /proc/meminfo (in its own mount namespace: no one else sees it). It starts
//       the workload processes (each joins <cgroup> and sets its oom_score_adj before touching anything), then the
//       killer (stdout and stderr to <log>), and reaps every process in the namespace the moment it dies, so a
//       pidfd held from outside reports each death at once. A spec is one process:
//         fill:<adj>:<MiB>            touches MiB at once, then sleeps
//         grow:<adj>:<MiB>:<MiB/s>    after "go", touches up to MiB (0: until killed) at MiB/s (0: flat out)
//         leader:<adj>:<MiB>:<MiB/s>  the same from a second thread, after the main thread called pthread_exit
//       stdout: "ready <workload pids> -- <killer pid>" (namespace pids), then "exit <pid> <wait status>" per
//       reaped process. stdin: "go" starts the growing processes; end of input kills the namespace and exits.
//   peers sample <usage file> <cross bytes> <low bytes> <rate-from bytes> <MemAvailable threshold bytes> [<file>]
//       Reads a memory cgroup's usage (and MemAvailable) every 1 ms and prints each crossing as it happens:
//       "cross <ns>" (usage up to <cross>), "low <ns>" (usage below <low> after a cross), "from <ns>" (usage up
//       to <rate-from>), "ma <ns>" (MemAvailable down to its threshold); times are CLOCK_MONOTONIC. On "end" it
//       prints "stats <samples> <max gap ns> <peak usage> <ns of the peak> <MemAvailable at cross>" and exits.
//       With <file> (a copy of /proc/meminfo taken when the group was empty), it rewrites that file's MemFree and
//       MemAvailable in place after every sample, as their values then minus the group's usage: a machine whose
//       memory moves with the group alone, whatever else runs. Every field keeps its width, so the file keeps its
//       length and a reader that rewinds an open descriptor (earlyoom) reads the new values.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char* what) {
  fprintf(stderr, "peers: %s: %s\n", what, strerror(errno));
  exit(2);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void write_file(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) die(path);
  close(fd);
}

// ---- workload ----
struct spec {
  char kind[8];
  int adj;
  long mib;
  long rate;  // MiB/s, 0: as fast as the kernel gives pages
};

static int go_fd = -1;

// Touches one byte per page, 2 MiB at a time, paced to `rate` when given; then sleeps until killed.
static void* grow(void* arg) {
  const struct spec* s = arg;
  char c;
  while (read(go_fd, &c, 1) < 0 && errno == EINTR) {
  }
  size_t len = s->mib > 0 ? (size_t)s->mib << 20 : (size_t)16 << 30;
  char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  const size_t step = 2 << 20;
  int64_t t0 = now_ns();
  for (size_t off = 0; off < len; off += step) {
    for (size_t o = off; o < off + step && o < len; o += 4096) p[o] = 1;
    if (s->rate > 0) {
      int64_t due = t0 + (int64_t)((double)(off + step) / ((double)s->rate * (1 << 20)) * 1e9);
      struct timespec ts = {due / 1000000000, due % 1000000000};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
    }
  }
  for (;;) pause();
  return NULL;
}

static void workload(const struct spec* s, const char* cgroup, int ready_fd) {
  char path[4096];
  snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
  write_file(path, "0");  // 0: the writer itself, whatever pid namespace it is in
  char adj[16];
  snprintf(adj, sizeof adj, "%d", s->adj);
  write_file("/proc/self/oom_score_adj", adj);
  if (strcmp(s->kind, "fill") == 0) {
    size_t len = (size_t)s->mib << 20;
    char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    for (size_t o = 0; o < len; o += 4096) p[o] = 1;
  }
  if (write(ready_fd, "r", 1) < 0) die("write");
  close(ready_fd);
  if (strcmp(s->kind, "grow") == 0) grow((void*)s);
  if (strcmp(s->kind, "leader") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, grow, (void*)s) != 0) die("pthread_create");
    pthread_exit(NULL);  // the leader goes; the process lives on in the growing thread
  }
  for (;;) pause();
}

static int launch(int argc, char** argv) {
  if (argc < 4) return fprintf(stderr, "usage: peers launch <cgroup> <log> <spec>... -- <killer>...\n"), 2;
  const char* cgroup = argv[0];
  const char* log = argv[1];
  if (strncmp(argv[2], "meminfo=", 8) == 0) {
    if (getpid() != 1) return fprintf(stderr, "peers launch: meminfo= only as the init of a new namespace\n"), 2;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("mount --make-rprivate /");
    if (mount(argv[2] + 8, "/proc/meminfo", NULL, MS_BIND, NULL) < 0) die("mount --bind meminfo");
    argv++, argc--;
  }
  int nspec = 0;
  while (2 + nspec < argc && strcmp(argv[2 + nspec], "--") != 0) nspec++;
  char** killer = argv + 2 + nspec + 1;
  if (2 + nspec >= argc || *killer == NULL) return fprintf(stderr, "peers launch: no killer after --\n"), 2;
  struct spec* specs = calloc(nspec, sizeof *specs);
  for (int i = 0; i < nspec; i++) {
    struct spec* s = &specs[i];
    if (sscanf(argv[2 + i], "%7[a-z]:%d:%ld:%ld", s->kind, &s->adj, &s->mib, &s->rate) < 3) {
      fprintf(stderr, "peers launch: bad spec %s\n", argv[2 + i]);
      return 2;
    }
  }
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");
  int go[2], ready[2];
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) die("pipe2");
  pid_t* pids = calloc(nspec, sizeof *pids);
  for (int i = 0; i < nspec; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      sigprocmask(SIG_UNBLOCK, &chld, NULL);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(go[1]);
      close(ready[0]);
      close(sfd);
      go_fd = go[0];
      workload(&specs[i], cgroup, ready[1]);
      _exit(0);
    }
    pids[i] = pid;
  }
  close(go[0]);
  close(ready[1]);
  for (int got = 0; got < nspec;) {
    char c;
    ssize_t r = read(ready[0], &c, 1);
    if (r == 1) got++;
    else if (r == 0 || errno != EINTR) die("a workload process failed to start");
  }
  close(ready[0]);
  pid_t kp = fork();
  if (kp < 0) die("fork");
  if (kp == 0) {
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (lfd < 0 || nul < 0) die(log);
    dup2(nul, 0);
    dup2(lfd, 1);
    dup2(lfd, 2);
    execvp(killer[0], killer);
    fprintf(stderr, "peers: exec %s: %s\n", killer[0], strerror(errno));
    _exit(127);
  }
  printf("ready");
  for (int i = 0; i < nspec; i++) printf(" %d", pids[i]);
  printf(" -- %d\n", kp);
  fflush(stdout);

  struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
  char line[64];
  int open_in = 1;
  while (open_in) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) printf("exit %d %d\n", pid, status);
      fflush(stdout);
    }
    if (fds[0].revents) {
      ssize_t r = read(0, line, sizeof line - 1);
      if (r <= 0) open_in = 0;
      else if (strncmp(line, "go", 2) == 0) close(go[1]);
    }
  }
  // As the init of its own pid namespace, kill(-1) reaches every process of the namespace and nothing outside it.
  if (getpid() == 1) kill(-1, SIGKILL);
  else {
    for (int i = 0; i < nspec; i++) kill(pids[i], SIGKILL);
    kill(kp, SIGKILL);
  }
  while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR) {
  }
  return 0;
}

// ---- sampler ----
static long long read_number(int fd, const char* key) {
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  if (key == NULL) return atoll(buf);
  char* at = strstr(buf, key);
  return at ? atoll(at + strlen(key)) * 1024 : -1;
}

// The offset of the 8-digit number of `key` in a meminfo text ("MemFree:        22147232 kB"), and its value.
static long field(const char* text, const char* key, long long* value) {
  const char* at = strstr(text, key);
  const char* kb = at ? strstr(at, " kB") : NULL;
  if (!kb || kb - at < 8) return -1;
  *value = atoll(kb - 8);
  return kb - 8 - text;
}

static void put_field(int fd, long off, long long kib) {
  char num[16];
  snprintf(num, sizeof num, "%8lld", kib < 0 ? 0 : kib > 99999999 ? 99999999 : kib);
  if (pwrite(fd, num, 8, off) != 8) die("pwrite meminfo");
}

static int sample(int argc, char** argv) {
  if (argc < 5) return fprintf(stderr, "usage: peers sample <usage> <cross> <low> <from> <ma> [<file>]\n"), 2;
  int ufd = open(argv[0], O_RDONLY | O_CLOEXEC);
  int mfd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (ufd < 0 || mfd < 0) die("open");
  int vfd = -1;
  long free_off = -1, avail_off = -1;
  long long free0 = 0, avail0 = 0;
  if (argc > 5) {
    char text[8192];
    vfd = open(argv[5], O_RDWR | O_CLOEXEC);
    ssize_t n = vfd < 0 ? -1 : pread(vfd, text, sizeof text - 1, 0);
    if (n <= 0) die(argv[5]);
    text[n] = 0;
    free_off = field(text, "MemFree:", &free0);
    avail_off = field(text, "MemAvailable:", &avail0);
    if (free_off < 0 || avail_off < 0) {
      fprintf(stderr, "peers sample: %s: no MemFree/MemAvailable\n", argv[5]);
      return 2;
    }
  }
  long long cross = atoll(argv[1]), low = atoll(argv[2]), from = atoll(argv[3]), ma = atoll(argv[4]);
  long long peak = 0, ma_at_cross = -1;
  int64_t peak_t = 0, last = 0, max_gap = 0, samples = 0;
  int above = 0, crossed = 0, went_low = 0, from_seen = 0, ma_seen = 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("started\n");
  struct timespec due;
  clock_gettime(CLOCK_MONOTONIC, &due);
  struct pollfd in = {.fd = 0, .events = POLLIN};
  for (;;) {
    long long u = read_number(ufd, NULL);
    long long avail = read_number(mfd, "MemAvailable:");
    int64_t t = now_ns();
    if (last && t - last > max_gap) max_gap = t - last;
    last = t;
    samples++;
    if (vfd >= 0) {
      put_field(vfd, free_off, free0 - u / 1024);
      put_field(vfd, avail_off, avail0 - u / 1024);
    }
    if (u > peak) peak = u, peak_t = t;
    if (!from_seen && u >= from) from_seen = 1, printf("from %lld\n", (long long)t);
    if (u >= cross && !above) {
      above = 1;
      if (!crossed) ma_at_cross = avail;
      crossed = 1;
      printf("cross %lld\n", (long long)t);
    } else if (u < cross) {
      above = 0;
    }
    if (crossed && !went_low && u < low) went_low = 1, printf("low %lld\n", (long long)t);
    if (!ma_seen && avail >= 0 && avail <= ma) ma_seen = 1, printf("ma %lld\n", (long long)t);
    if (poll(&in, 1, 0) > 0) break;  // "end", or the end of input
    due.tv_nsec += 1000000;
    if (due.tv_nsec >= 1000000000) due.tv_sec++, due.tv_nsec -= 1000000000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
    }
    if (now_ns() > (int64_t)due.tv_sec * 1000000000 + due.tv_nsec + 5000000) clock_gettime(CLOCK_MONOTONIC, &due);
  }
  printf("stats %lld %lld %lld %lld %lld\n", (long long)samples, (long long)max_gap, peak, (long long)peak_t,
         ma_at_cross);
  return 0;
}

int main(int argc, char** argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (argc > 1 && strcmp(argv[1], "launch") == 0) return launch(argc - 2, argv + 2);
  if (argc > 1 && strcmp(argv[1], "sample") == 0) return sample(argc - 2, argv + 2);
  fprintf(stderr, "usage: peers launch ... | peers sample ...\n");
  return 2;
}
