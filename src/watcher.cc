// The readiness watcher: one private epoll set per JS environment; any number of pidfds share it: no thread per
// wait, no timer. On Node one uv_poll_t on the environment's own libuv loop polls the set; elsewhere the helper
// thread does (thread.cc). JS chooses which at start.
//
// Why a private epoll set instead of one uv_poll_t per pidfd: uv_poll_init sets O_NONBLOCK on the fd it is given,
// which would silently change the user's pidfd (a later blocking waitid on it would fail with EAGAIN).
//
// Registrations are one-shot (EPOLLONESHOT): the kernel disables a pidfd's registration in the same step that
// reports it, so it never fires twice and the wake-up costs no epoll_ctl; the disabled entry leaves the set when
// the fd is closed, or is re-armed by the next watch of that fd. The fired (fd, events) pairs go into an
// Int32Array shared with JS, and JS is called once per wake-up with the count: no allocation on the hot path.
// Each slot is four numbers: the token, the events, and what the kernel says of the exit right now:
// waitid(WEXITED|WNOHANG|WNOWAIT) and PIDFD_INFO_EXIT (see syscalls.h). Reading both here, always and without
// interpreting them, spares JS two calls into the addon on the path from a death to the settled promise; WNOWAIT
// leaves any zombie to its parent. The layout is exported (watcherLayout), so JS never restates it.
#include <errno.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <uv.h>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {

namespace {
constexpr int kMaxEvents = 256;
constexpr int kSlot = 4;  // int32s per fired event: token, events, waited, status
constexpr int kRefCell = kSlot * kMaxEvents;  // after the slots: JS's count of ref'd waits
}

class Watcher {
 public:
  napi_env env = nullptr;
  int epfd = -1;
  bool thread = false;  // polled by the helper thread, not by `poll`
  uv_poll_t poll = {};
  napi_ref buffer = nullptr;
  int32_t* slots = nullptr;
  JsCallback callback;
  napi_async_cleanup_hook_handle hook = nullptr;

  void Drain();
  void SetRef(bool ref);
  void Free(bool destroyContext = true);
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnClose(uv_handle_t* handle);
  static void Cleanup(napi_async_cleanup_hook_handle hook, void* arg);
};

// Reads every fired pidfd into the slots, kMaxEvents at a time, and calls JS once per batch.
void Watcher::Drain() {
  struct epoll_event ev[kMaxEvents];
  for (;;) {
    int n = epoll_wait(epfd, ev, kMaxEvents, 0);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      int fd = static_cast<int>(ev[i].data.u64 & 0xffffffffu);
      int32_t* slot = slots + kSlot * i;
      slot[0] = static_cast<int32_t>(ev[i].data.u64 >> 32);
      slot[1] = static_cast<int32_t>(ev[i].events);
      slot[2] = waitid_packed(fd, WEXITED | WNOHANG | WNOWAIT);
      // Our own child's status came from waitid; PIDFD_INFO_EXIT is read only for everyone else's.
      slot[3] = slot[2] > 0 ? -ENODATA : exit_status(fd);
    }
    int32_t count = n;
    bool ok = callback.Call(env, 1, &count);
    // JS keeps its count of ref'd waits in the last cell; waits settled during the callback only lowered the
    // count there, so apply it now instead of one watcherRef call per settle.
    SetRef(slots[kRefCell] > 0);
    if (!ok || n < kMaxEvents) return;
  }
}

void Watcher::SetRef(bool ref) {
  if (thread) {
    HelperRef(env, GetState(Napi::Env(env)), kWatcherKey, ref);
    return;
  }
  uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&poll);
  if (ref) uv_ref(h);
  else uv_unref(h);
}

void Watcher::Free(bool destroyContext) {
  if (epfd >= 0) close(epfd);
  if (buffer) napi_delete_reference(env, buffer);
  callback.Destroy(env, destroyContext);
  delete this;
}

void Watcher::OnPoll(uv_poll_t* handle, int status, int) {
  if (status >= 0) static_cast<Watcher*>(handle->data)->Drain();
}

void Watcher::OnClose(uv_handle_t* handle) {
  Watcher* w = static_cast<Watcher*>(handle->data);
  napi_async_cleanup_hook_handle hook = w->hook;
  w->Free();
  napi_remove_async_cleanup_hook(hook);
}

// Environment teardown (libuv path). An async cleanup hook, removed only from the handle's close callback: libuv
// may run that callback after a plain cleanup hook returned and the environment was gone (SIGSEGV on
// worker.terminate()). It must not touch State, which may be gone already.
void Watcher::Cleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  Watcher* w = static_cast<Watcher*>(arg);
  w->hook = hook;
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), Watcher::OnClose);
}

void WatcherFired(State* st) {
  Watcher* w = st->watcher;
  if (!w) return;
  w->Drain();
  HelperRearm(st, w->epfd, EPOLLIN, kWatcherKey);
}

void CloseThreadWatcher(State* st) {
  Watcher* w = st->watcher;
  if (!w || !w->thread) return;
  st->watcher = nullptr;
  w->Free(st->asyncDestroyInCleanup);
}

namespace {

Watcher* Need(const Napi::CallbackInfo& info) {
  Watcher* w = GetState(info.Env())->watcher;
  if (!w) throw Napi::Error::New(info.Env(), "pidfd native: watcher not started");
  return w;
}

// (onReady(count), thread) → the Int32Array of slots (see the top of this file) | -errno (-ENOTSUP: the runtime
// cannot run the helper thread). Once per environment. thread: poll on the helper thread instead of libuv.
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* st = GetState(env);
  if (st->watcher) throw Napi::Error::New(env, "pidfd native: watcher already started");
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "pidfd native: callback must be a function");
  bool thread = info[1].ToBoolean();
  uv_loop_t* loop = nullptr;
  if (!thread && (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)) {
    throw Napi::Error::New(env, "pidfd native: no event loop");
  }
  // Everything that can fail on the JS side first (in a worker being terminated, any allocation can): once the
  // uv_poll_t is initialized it belongs to the loop, and a throw after that point would leave an open handle the
  // loop cannot close (Node aborts on "uv_loop_close() while having open handles").
  Napi::Int32Array slots = Napi::Int32Array::New(env, kRefCell + 1);
  Watcher* w = new Watcher();
  w->env = env;
  w->thread = thread;
  w->slots = slots.Data();
  if (napi_create_reference(env, slots, 1, &w->buffer) != napi_ok ||
      !w->callback.Init(env, info[0], "pidfd:watcher")) {
    w->Free();
    throw Napi::Error::New(env, "pidfd native: could not start the watcher");
  }
  // From here on nothing calls into JS until the watcher is recorded in the State.
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  int r = w->epfd < 0 ? -errno : 0;
  if (r == 0 && thread) r = HelperAdd(env, st, w->epfd, EPOLLIN, kWatcherKey);
  else if (r == 0) r = uv_poll_init(loop, &w->poll, w->epfd);  // libuv errors are -errno too
  if (r < 0) {
    w->Free();
    return Result(env, r);
  }
  st->watcher = w;
  if (!thread) {
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, Watcher::OnPoll);
    napi_add_async_cleanup_hook(env, Watcher::Cleanup, w, &w->hook);
  }
  w->SetRef(false);  // only ref'd watches keep the loop alive (see Ref)
  return slots;
}

// (fd, events, token): events is EPOLLIN for "exited", or 0 for "reaped" (EPOLLHUP is always reported). JS hears
// the token, not the fd: an fd number can be closed and reused between the wake-up and the dispatch, a token not.
// → 0 | -errno
Napi::Value Watch(const Napi::CallbackInfo& info) {
  Watcher* w = Need(info);
  int fd = Int32Arg(info, 0);
  struct epoll_event ev = {};
  ev.events = static_cast<uint32_t>(Int32Arg(info, 1)) | EPOLLONESHOT;
  ev.data.u64 = (static_cast<uint64_t>(static_cast<uint32_t>(Int32Arg(info, 2))) << 32) | static_cast<uint32_t>(fd);
  int r = epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
  if (r < 0 && errno == EEXIST) r = epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev);
  return Result(info.Env(), r < 0 ? -static_cast<double>(errno) : 0);
}

// (fd) → 0 | -errno (ENOENT: not watched)
Napi::Value Unwatch(const Napi::CallbackInfo& info) {
  Watcher* w = Need(info);
  int r = epoll_ctl(w->epfd, EPOLL_CTL_DEL, Int32Arg(info, 0), nullptr);
  return Result(info.Env(), r < 0 ? -static_cast<double>(errno) : 0);
}

// (bool): whether the watcher keeps the event loop alive. JS counts its ref'd waits and flips this at 0 <-> 1.
Napi::Value Ref(const Napi::CallbackInfo& info) {
  Need(info)->SetRef(info[0].ToBoolean());
  return info.Env().Undefined();
}

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports) {
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("maxEvents", Napi::Number::New(env, kMaxEvents));
  layout.Set("slot", Napi::Number::New(env, kSlot));
  layout.Set("refCell", Napi::Number::New(env, kRefCell));
  exports.Set("watcherLayout", layout);
  exports.Set("watcherStart", Napi::Function::New(env, Start, "watcherStart"));
  exports.Set("watch", Napi::Function::New(env, Watch, "watch"));
  exports.Set("unwatch", Napi::Function::New(env, Unwatch, "unwatch"));
  exports.Set("watcherRef", Napi::Function::New(env, Ref, "watcherRef"));
}

}  // namespace pidfd
