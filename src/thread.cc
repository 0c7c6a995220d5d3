// The helper thread: where the runtime is not Node, libuv is not there to poll (Bun 1.4's uv_* functions abort
// the process; Deno 2.9's uv polls fire once, ignore UV_PRIORITIZED and close synchronously), so one thread per
// environment blocks in epoll_wait and hands each wake-up to the JS thread through a threadsafe function. Threshold
// samplers (sampler.cc) run here on every runtime, Node included: their timerfds are in the same set, and the
// thread itself takes each sample, calling JS only for a crossing.
//
// Its epoll set holds the watcher's private set (nested, as the libuv poll holds it on Node), each PSI trigger fd
// directly (a trigger inside a set that is itself polled loses its events; one level is fine), and an eventfd that
// stops the thread. Every registration is one-shot (EPOLLONESHOT): the thread sees an fd once, JS handles it and
// re-arms it, so the thread never spins on a level-triggered fd that JS has not drained yet.
//
// Ref/unref: the threadsafe function keeps the loop alive exactly while some key asks for it. Teardown: the
// environment cleanup hook stops and joins the thread (StopHelper) before anything it polls is closed.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mutex>
#include <utility>
#include <vector>

#include "addon.h"

// glibc 2.34 moved the pthread functions into libc under a new symbol version; binding to the original version
// keeps the prebuild within the glibc floor (src/compat.cc, scripts/check-glibc-floor.mjs); std::thread would also
// need GLIBCXX_3.4.22.
#if defined(__x86_64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.17");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.17");
#endif

namespace pidfd {

namespace {
constexpr uint64_t kStopKey = ~0ULL;
constexpr int kThreadEvents = 64;
}

struct Helper {
  napi_env env = nullptr;
  State* st = nullptr;
  int ep = -1;
  int stop = -1;
  pthread_t thread = {};
  bool running = false;
  napi_threadsafe_function tsfn = nullptr;
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint32_t>> fired;  // (key, events) the thread saw since JS last looked
  std::unordered_set<uint64_t> refs;  // keys that keep the loop alive
  bool refd = true;  // the threadsafe function's own state
  bool closed = false;
  int owners = 2;  // the cleanup hook and the threadsafe function's finalizer: the last one frees it
};

namespace {

void Release(Helper* h) {
  if (--h->owners == 0) delete h;
}

void* Run(void* arg) {
  Helper* h = static_cast<Helper*>(arg);
  struct epoll_event ev[kThreadEvents];
  for (;;) {
    int n = epoll_wait(h->ep, ev, kThreadEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return nullptr;
    }
    bool stop = false, wake = false;
    for (int i = 0; i < n; i++) {
      uint64_t key = ev[i].data.u64;
      if (key == kStopKey) {
        stop = true;
        continue;
      }
      // A sampler samples here, on this thread, and wakes JS only when its number crossed the bound.
      if ((key & kSamplerKeyBit) != 0 && !SamplerTick(h->st, key)) continue;
      std::lock_guard<std::mutex> lock(h->mu);
      h->fired.emplace_back(key, uint32_t{ev[i].events});
      wake = true;
    }
    if (stop) return nullptr;
    if (!wake) continue;
    // napi_closing: the environment is going away; its cleanup hook joins us.
    if (napi_call_threadsafe_function(h->tsfn, nullptr, napi_tsfn_nonblocking) != napi_ok) return nullptr;
  }
}

// On the JS thread, once per call from Run (calls may coalesce: each takes everything seen so far).
void OnWake(napi_env env, napi_value, void* context, void*) {
  Helper* h = static_cast<Helper*>(context);
  if (env == nullptr || h->closed) return;
  std::vector<std::pair<uint64_t, uint32_t>> fired;
  {
    std::lock_guard<std::mutex> lock(h->mu);
    fired.swap(h->fired);
  }
  for (auto& [key, events] : fired) {
    if (h->closed) return;
    if (key == kWatcherKey) WatcherFired(h->st);
    else if ((key & kSamplerKeyBit) != 0) SamplerFired(h->st, key);
    else PollerFired(h->st, key, events);
  }
}

void Finalize(napi_env, void*, void* hint) { Release(static_cast<Helper*>(hint)); }

void ApplyRef(napi_env env, Helper* h) {
  bool want = !h->refs.empty();
  if (want == h->refd) return;
  h->refd = want;
  if (want) napi_ref_threadsafe_function(env, h->tsfn);
  else napi_unref_threadsafe_function(env, h->tsfn);
}

// → the helper, started; or -errno (-ENOTSUP: the runtime has no threadsafe functions)
int Start(napi_env env, State* st) {
  if (st->helper) return 0;
  Helper* h = new Helper();
  h->env = env;
  h->st = st;
  h->ep = epoll_create1(EPOLL_CLOEXEC);
  h->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int r = 0;
  if (h->ep < 0 || h->stop < 0) r = -errno;
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kStopKey;
  if (r == 0 && epoll_ctl(h->ep, EPOLL_CTL_ADD, h->stop, &ev) < 0) r = -errno;
  napi_value name;
  if (r == 0 && (napi_create_string_utf8(env, "pidfd:thread", NAPI_AUTO_LENGTH, &name) != napi_ok ||
                 napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, h, Finalize, h, OnWake,
                                                 &h->tsfn) != napi_ok)) {
    r = -ENOTSUP;
  }
  if (r == 0) {
    // The thread blocks every signal, so they keep going to the threads that expect them.
    // (sigprocmask sets the calling thread's mask, and the new thread inherits it.)
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    r = -pthread_create(&h->thread, nullptr, Run, h);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    h->running = r == 0;
    if (r < 0) {
      h->closed = true;
      napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);  // its finalizer drops one owner
      h->tsfn = nullptr;
    }
  }
  if (r < 0) {
    if (h->ep >= 0) close(h->ep);
    if (h->stop >= 0) close(h->stop);
    if (h->tsfn == nullptr && h->closed) Release(h);
    else delete h;
    return r;
  }
  ApplyRef(env, h);  // nothing asks for the loop yet
  st->helper = h;
  return 0;
}

}  // namespace

int HelperAdd(napi_env env, State* st, int fd, uint32_t events, uint64_t key, bool oneshot) {
  int r = Start(env, st);
  if (r < 0) return r;
  struct epoll_event ev = {};
  ev.events = oneshot ? events | EPOLLONESHOT : events;
  ev.data.u64 = key;
  return epoll_ctl(st->helper->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void HelperRearm(State* st, int fd, uint32_t events, uint64_t key) {
  if (!st->helper) return;
  struct epoll_event ev = {};
  ev.events = events | EPOLLONESHOT;
  ev.data.u64 = key;
  epoll_ctl(st->helper->ep, EPOLL_CTL_MOD, fd, &ev);
}

void HelperDel(State* st, int fd, uint64_t key) {
  Helper* h = st->helper;
  if (!h) return;
  epoll_ctl(h->ep, EPOLL_CTL_DEL, fd, nullptr);
  h->refs.erase(key);
  ApplyRef(h->env, h);
}

void HelperRef(napi_env env, State* st, uint64_t key, bool ref) {
  Helper* h = st->helper;
  if (!h) return;
  if (ref) h->refs.insert(key);
  else h->refs.erase(key);
  ApplyRef(env, h);
}

void StopHelper(State* st) {
  Helper* h = st->helper;
  if (!h) return;
  st->helper = nullptr;
  h->closed = true;
  uint64_t one = 1;
  if (write(h->stop, &one, sizeof one) < 0) {
    // An eventfd write fails only on counter overflow; the thread is then already woken.
  }
  if (h->running) pthread_join(h->thread, nullptr);
  close(h->ep);
  close(h->stop);
  napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
  Release(h);
}

}  // namespace pidfd
