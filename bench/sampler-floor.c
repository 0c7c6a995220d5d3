// The C floor of sampling /proc/meminfo every 10 ms: pread from offset 0 of a file opened once, then sleep.
// argv: samples. Prints the CPU time it used (user + system, ms) on stdout.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  static char buf[65536];
  struct timespec ts = {0, 10 * 1000 * 1000};
  for (int i = 0; i < n; i++) {
    if (pread(fd, buf, sizeof buf, 0) < 0) return 1;
    nanosleep(&ts, NULL);
  }
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  double ms = r.ru_utime.tv_sec * 1e3 + r.ru_utime.tv_usec / 1e3 + r.ru_stime.tv_sec * 1e3 + r.ru_stime.tv_usec / 1e3;
  printf("%.2f\n", ms);
  return 0;
}
