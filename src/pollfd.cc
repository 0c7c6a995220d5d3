// One libuv poll per fd, on the environment's own loop, for fds that cannot share the watcher's epoll set.
//
// A PSI trigger fd (a /proc/pressure or cgroup *.pressure file with a trigger written to it) reports its events as
// EPOLLPRI. Nested inside another epoll set (the watcher's) the event is lost: the outer set's readiness check
// polls the trigger and that poll consumes the event, so the inner epoll_wait then finds nothing. Each trigger fd
// therefore gets its own uv_poll_t with UV_PRIORITIZED.
//
// The poll takes the fd: it is closed when the poll is closed (pollStop, or the environment's teardown), after
// libuv has removed it from the loop. uv_poll_init sets O_NONBLOCK on the fd (TOOLCHAIN.md trap 14); these fds are
// private to the library, so that changes nothing anyone relies on.
//
// Teardown: each poll has its own async cleanup hook, removed only from the handle's close callback, so libuv has
// finished with the handle before Node unloads the environment (TOOLCHAIN.md trap 13).
#include <errno.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"

namespace pidfd {

struct Poller {
  napi_env env = nullptr;
  uv_poll_t handle = {};
  int fd = -1;
  int32_t id = 0;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;
  bool closing = false;
};

namespace {

void OnClose(uv_handle_t* h) {
  Poller* p = static_cast<Poller*>(h->data);
  close(p->fd);
  napi_async_cleanup_hook_handle hook = p->hook;
  delete p;
  if (hook) napi_remove_async_cleanup_hook(hook);
}

void ClosePoller(Poller* p) {
  if (p->closing) return;
  p->closing = true;
  if (p->callback) napi_delete_reference(p->env, p->callback);
  if (p->context) napi_async_destroy(p->env, p->context);
  p->callback = nullptr;
  p->context = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClose);
}

// Environment teardown. It must not touch State (it may be gone already); JS can no longer call pollStop.
void Cleanup(napi_async_cleanup_hook_handle, void* arg) { ClosePoller(static_cast<Poller*>(arg)); }

// libuv reports (status, events): status < 0 on an error (libuv has then stopped the poll), else the events seen.
void OnPoll(uv_poll_t* h, int status, int events) {
  Poller* p = static_cast<Poller*>(h->data);
  if (p->closing) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(p->env, &scope) != napi_ok) return;
  napi_value fn, recv, argv[2], result;
  if (napi_get_reference_value(p->env, p->callback, &fn) == napi_ok && fn != nullptr &&
      napi_get_global(p->env, &recv) == napi_ok && napi_create_int32(p->env, status, &argv[0]) == napi_ok &&
      napi_create_int32(p->env, events, &argv[1]) == napi_ok) {
    if (napi_make_callback(p->env, p->context, recv, fn, 2, argv, &result) == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(p->env, &err) == napi_ok) napi_fatal_exception(p->env, err);
    }
  }
  napi_close_handle_scope(p->env, scope);
}

Poller* Find(const Napi::CallbackInfo& info) {
  auto& pollers = GetState(info.Env())->pollers;
  auto it = pollers.find(Int32Arg(info, 0));
  return it == pollers.end() ? nullptr : it->second;
}

// (fd, uvEvents, callback(status, events)) → poll id (> 0) | -errno. On success the poll owns the fd. The poll
// keeps the loop alive (ref'd) until pollRef(id, false).
Napi::Value PollStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0);
  int events = Int32Arg(info, 1);
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "pidfd native: callback must be a function");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) throw Napi::Error::New(env, "pidfd: no event loop");
  State* st = GetState(env);
  // JS-side allocations first: in a worker being terminated any of them can throw, and a throw after the handle is
  // initialized would leave it open in the loop (Node aborts on "uv_loop_close() while having open handles").
  Napi::String name = Napi::String::New(env, "pidfd:poll");
  Poller* p = new Poller();
  p->env = env;
  if (napi_create_reference(env, info[2], 1, &p->callback) != napi_ok ||
      napi_async_init(env, nullptr, name, &p->context) != napi_ok) {
    if (p->callback) napi_delete_reference(env, p->callback);
    delete p;
    throw Napi::Error::New(env, "pidfd native: could not start the poll");
  }
  auto undo = [&]() {
    napi_delete_reference(env, p->callback);
    napi_async_destroy(env, p->context);
    p->callback = nullptr;
    p->context = nullptr;
  };
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    undo();
    delete p;
    return Result(env, r);  // libuv errors are -errno
  }
  p->handle.data = p;
  r = uv_poll_start(&p->handle, events, OnPoll);
  if (r < 0) {
    // The handle is initialized: it must be closed through libuv, but the fd stays the caller's.
    undo();
    p->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) { delete static_cast<Poller*>(h->data); });
    return Result(env, r);
  }
  p->fd = fd;
  p->id = st->nextPoller;
  st->nextPoller = st->nextPoller == 0x7fffffff ? 1 : st->nextPoller + 1;
  napi_add_async_cleanup_hook(env, Cleanup, p, &p->hook);
  st->pollers[p->id] = p;
  return Result(env, p->id);
}

// (id) → 0 | -EBADF (unknown id). Stops the poll and closes its fd; no callback runs after this returns.
Napi::Value PollStop(const Napi::CallbackInfo& info) {
  Poller* p = Find(info);
  if (!p) return Result(info.Env(), -static_cast<double>(EBADF));
  GetState(info.Env())->pollers.erase(p->id);
  ClosePoller(p);
  return Result(info.Env(), 0);
}

// (id, bool) → 0 | -EBADF: whether the poll keeps the event loop alive.
Napi::Value PollRef(const Napi::CallbackInfo& info) {
  Poller* p = Find(info);
  if (!p) return Result(info.Env(), -static_cast<double>(EBADF));
  uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&p->handle);
  if (info[1].ToBoolean()) uv_ref(h);
  else uv_unref(h);
  return Result(info.Env(), 0);
}

}  // namespace

void InitPoll(Napi::Env env, Napi::Object exports) {
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
  c.Set("UV_READABLE", Napi::Number::New(env, UV_READABLE));
  c.Set("UV_DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
  c.Set("UV_PRIORITIZED", Napi::Number::New(env, UV_PRIORITIZED));
  exports.Set("pollStart", Napi::Function::New(env, PollStart, "pollStart"));
  exports.Set("pollStop", Napi::Function::New(env, PollStop, "pollStop"));
  exports.Set("pollRef", Napi::Function::New(env, PollRef, "pollRef"));
}

}  // namespace pidfd
