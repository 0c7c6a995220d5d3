// The readiness watcher: one private epoll set per JS environment, polled by one uv_poll_t on that environment's
// own libuv loop. Any number of pidfds share it: no thread per wait, no timer.
//
// Why a private epoll set instead of one uv_poll_t per pidfd: uv_poll_init sets O_NONBLOCK on the fd it is given,
// which would silently change the user's pidfd (a later blocking waitid on it would fail with EAGAIN).
//
// Registrations are one-shot: when a pidfd fires, it is removed from the set before JS hears of it, so the set
// holds exactly the pending watches. The fired (fd, events) pairs go into an Int32Array shared with JS, and JS is
// called once per wake-up with the count: no allocation on the hot path. Each slot is four numbers: the token,
// the events, and what the kernel says of the exit right now: waitid(WEXITED|WNOHANG|WNOWAIT) and PIDFD_INFO_EXIT
// (see syscalls.h). Reading both here, always and without interpreting them, spares JS two calls into the addon
// on the path from a death to the settled promise; WNOWAIT leaves any zombie to its parent.
#include <errno.h>
#include <sys/epoll.h>
#include <uv.h>

#include <sys/wait.h>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {

namespace {
constexpr int kMaxEvents = 256;
constexpr int kSlot = 4;  // int32s per fired event
constexpr int kRefCell = kSlot * kMaxEvents;  // after the slots: JS's count of ref'd waits
}

class Watcher {
 public:
  napi_env env = nullptr;
  int epfd = -1;
  uv_poll_t poll = {};
  napi_ref callback = nullptr;
  napi_ref buffer = nullptr;
  int32_t* slots = nullptr;
  napi_async_context context = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnClose(uv_handle_t* handle);
};

void Watcher::OnPoll(uv_poll_t* handle, int status, int) {
  Watcher* w = static_cast<Watcher*>(handle->data);
  if (status < 0) return;
  struct epoll_event ev[kMaxEvents];
  for (;;) {
    int n = epoll_wait(w->epfd, ev, kMaxEvents, 0);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      int fd = static_cast<int>(ev[i].data.u64 & 0xffffffffu);
      epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, nullptr);
      int32_t* slot = w->slots + kSlot * i;
      slot[0] = static_cast<int32_t>(ev[i].data.u64 >> 32);
      slot[1] = static_cast<int32_t>(ev[i].events);
      slot[2] = waitid_packed(fd, WEXITED | WNOHANG | WNOWAIT);
      // Our own child's status came from waitid; PIDFD_INFO_EXIT is read only for everyone else's.
      slot[3] = slot[2] > 0 ? -ENODATA : exit_status(fd);
    }
    napi_handle_scope scope;
    if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
    napi_value fn, recv, count, result;
    bool ok = napi_get_reference_value(w->env, w->callback, &fn) == napi_ok && fn != nullptr &&
              napi_get_global(w->env, &recv) == napi_ok && napi_create_int32(w->env, n, &count) == napi_ok;
    if (ok) {
      // napi_make_callback: async context is kept and microtasks (the awaiting code) run before we return.
      if (napi_make_callback(w->env, w->context, recv, fn, 1, &count, &result) == napi_pending_exception) {
        napi_value err;
        if (napi_get_and_clear_last_exception(w->env, &err) == napi_ok) napi_fatal_exception(w->env, err);
      }
    }
    napi_close_handle_scope(w->env, scope);
    // JS keeps its count of ref'd waits in the last cell; waits settled during the callback only lowered the
    // count there, so apply it now instead of one watcherRef call per settle.
    uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&w->poll);
    if (w->slots[kRefCell] > 0) uv_ref(h);
    else uv_unref(h);
    if (!ok || n < kMaxEvents) return;
  }
}

void Watcher::OnClose(uv_handle_t* handle) {
  Watcher* w = static_cast<Watcher*>(handle->data);
  if (w->epfd >= 0) close(w->epfd);
  napi_async_cleanup_hook_handle hook = w->hook;
  delete w;
  if (hook) napi_remove_async_cleanup_hook(hook);
}

void CloseWatcher(Watcher* w, napi_async_cleanup_hook_handle hook) {
  w->hook = hook;
  if (w->callback) napi_delete_reference(w->env, w->callback);
  if (w->buffer) napi_delete_reference(w->env, w->buffer);
  if (w->context) napi_async_destroy(w->env, w->context);
  w->callback = w->buffer = nullptr;
  w->context = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), Watcher::OnClose);
}

namespace {

Watcher* Need(const Napi::CallbackInfo& info) {
  Watcher* w = GetState(info.Env())->watcher;
  if (!w) throw Napi::Error::New(info.Env(), "pidfd native: watcher not started");
  return w;
}

// (onReady(count)) → the Int32Array of slots (see the top of this file). Once per environment.
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* st = GetState(env);
  if (st->watcher) throw Napi::Error::New(env, "pidfd native: watcher already started");
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "pidfd native: callback must be a function");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) throw Napi::Error::New(env, "pidfd: no event loop");
  // Everything that can fail on the JS side first (in a worker being terminated, any allocation can): once the
  // uv_poll_t is initialized it belongs to the loop, and a throw after that point would leave an open handle the
  // loop cannot close (Node aborts on "uv_loop_close() while having open handles": seen under the sanitizer build).
  Napi::Int32Array slots = Napi::Int32Array::New(env, kRefCell + 1);
  Napi::String name = Napi::String::New(env, "pidfd:watcher");
  Watcher* w = new Watcher();
  w->env = env;
  w->slots = slots.Data();
  if (napi_create_reference(env, slots, 1, &w->buffer) != napi_ok ||
      napi_create_reference(env, info[0], 1, &w->callback) != napi_ok ||
      napi_async_init(env, nullptr, name, &w->context) != napi_ok) {
    if (w->buffer) napi_delete_reference(env, w->buffer);
    if (w->callback) napi_delete_reference(env, w->callback);
    delete w;
    throw Napi::Error::New(env, "pidfd native: could not start the watcher");
  }
  // From here on nothing calls into JS until the watcher is recorded in the State.
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  int r = epfd < 0 ? -errno : uv_poll_init(loop, &w->poll, epfd);
  if (r < 0) {
    if (epfd >= 0) close(epfd);
    napi_delete_reference(env, w->buffer);
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->context);
    delete w;
    return Result(env, r);  // -errno; libuv errors are -errno too
  }
  w->epfd = epfd;
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, Watcher::OnPoll);
  uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));  // only ref'd watches keep the loop alive (see Ref)
  st->watcher = w;
  return slots;
}

// (fd, events, token): events is EPOLLIN for "exited", or 0 for "reaped" (EPOLLHUP is always reported). JS hears
// the token, not the fd: an fd number can be closed and reused between the wake-up and the dispatch, a token not.
// → 0 | -errno
Napi::Value Watch(const Napi::CallbackInfo& info) {
  Watcher* w = Need(info);
  int fd = Int32Arg(info, 0);
  struct epoll_event ev = {};
  ev.events = static_cast<uint32_t>(Int32Arg(info, 1));
  ev.data.u64 = (static_cast<uint64_t>(static_cast<uint32_t>(Int32Arg(info, 2))) << 32) | static_cast<uint32_t>(fd);
  int r = epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
  if (r < 0 && errno == EEXIST) r = epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev);
  return Result(info.Env(), r < 0 ? -static_cast<double>(errno) : 0);
}

// (fd) → 0 | -errno (ENOENT: not watched, e.g. it fired already)
Napi::Value Unwatch(const Napi::CallbackInfo& info) {
  Watcher* w = Need(info);
  int r = epoll_ctl(w->epfd, EPOLL_CTL_DEL, Int32Arg(info, 0), nullptr);
  return Result(info.Env(), r < 0 ? -static_cast<double>(errno) : 0);
}

// (bool): whether the watcher keeps the event loop alive. JS counts its ref'd waits and flips this at 0 <-> 1.
Napi::Value Ref(const Napi::CallbackInfo& info) {
  Watcher* w = Need(info);
  uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&w->poll);
  if (info[0].ToBoolean()) uv_ref(h);
  else uv_unref(h);
  return info.Env().Undefined();
}

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports) {
  exports.Set("watcherStart", Napi::Function::New(env, Start, "watcherStart"));
  exports.Set("watch", Napi::Function::New(env, Watch, "watch"));
  exports.Set("unwatch", Napi::Function::New(env, Unwatch, "unwatch"));
  exports.Set("watcherRef", Napi::Function::New(env, Ref, "watcherRef"));
}

}  // namespace pidfd
