// One poll per fd, for fds that cannot share the watcher's epoll set: on Node a libuv poll on the environment's own
// loop, elsewhere one registration in the helper thread's epoll set (thread.cc). JS chooses which at start.
//
// A PSI trigger fd (a /proc/pressure or cgroup *.pressure file with a trigger written to it) reports its events as
// EPOLLPRI. Nested inside another epoll set (the watcher's) the event is lost: the outer set's readiness check
// polls the trigger and that poll consumes the event, so the inner epoll_wait then finds nothing. Each trigger fd
// therefore gets its own uv_poll_t with UV_PRIORITIZED, or its own registration in the thread's set (polled
// directly by epoll_wait there, one level as on libuv's loop). Both report libuv's (status, events) to JS.
//
// The poll works on a duplicate of the fd it is given (F_DUPFD_CLOEXEC; a PSI trigger belongs to the open file, so
// it lives on in the duplicate) and the caller closes its own: the caller's fd came from Node's fs, and in a worker
// Node closes every fd its fs opened when the worker ends, whatever the number has been reused for by then. The
// duplicate is closed when the poll is closed (pollStop, or the environment's teardown), after
// libuv has removed it from the loop. uv_poll_init sets O_NONBLOCK on the fd it is given; these fds are
// private to the library, so that changes nothing anyone relies on.
//
// Teardown (libuv): each poll has its own async cleanup hook, removed only from the handle's close callback, so
// libuv has finished with the handle before Node unloads the environment (else SIGSEGV on worker.terminate()).
// On the thread, the environment's cleanup hook closes the polls once the thread has been joined.
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {

struct Poller {
  napi_env env = nullptr;
  uv_poll_t handle = {};
  int fd = -1;
  int32_t id = 0;
  bool thread = false;
  uint32_t epollEvents = 0;  // on the thread: what it waits for
  JsCallback callback;
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

void ClosePoller(Poller* p, bool destroyContext = true) {
  if (p->closing) return;
  p->closing = true;
  p->callback.Destroy(p->env, destroyContext);
  if (p->thread) {
    close(p->fd);
    delete p;
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClose);
}

// Environment teardown. It must not touch State (it may be gone already); JS can no longer call pollStop.
void Cleanup(napi_async_cleanup_hook_handle, void* arg) { ClosePoller(static_cast<Poller*>(arg)); }

void Fire(Poller* p, int status, int events) {
  if (p->closing) return;
  int32_t argv[2] = {status, events};
  p->callback.Call(p->env, 2, argv);
}

// libuv reports (status, events): status < 0 on an error (libuv has then stopped the poll), else the events seen.
void OnPoll(uv_poll_t* h, int status, int events) { Fire(static_cast<Poller*>(h->data), status, events); }

Poller* Find(State* st, int32_t id) {
  auto it = st->pollers.find(id);
  return it == st->pollers.end() ? nullptr : it->second;
}

Poller* Find(const Napi::CallbackInfo& info) { return Find(GetState(info.Env()), Int32Arg(info, 0)); }

uint32_t ToEpoll(int uvEvents) {
  uint32_t e = 0;
  if (uvEvents & UV_READABLE) e |= EPOLLIN;
  if (uvEvents & UV_PRIORITIZED) e |= EPOLLPRI;
  if (uvEvents & UV_DISCONNECT) e |= EPOLLRDHUP;
  return e;
}

// (fd, uvEvents, callback(status, events), thread) → poll id (> 0) | -errno. The poll owns a duplicate of fd; fd
// stays the caller's, to close in every case. The
// poll keeps the loop alive (ref'd) until pollRef(id, false). thread: on the helper thread instead of libuv.
Napi::Value PollStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0);
  int events = Int32Arg(info, 1);
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "pidfd native: callback must be a function");
  bool thread = info[3].ToBoolean();
  uv_loop_t* loop = nullptr;
  if (!thread && (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop)) {
    throw Napi::Error::New(env, "pidfd native: no event loop");
  }
  State* st = GetState(env);
  // JS-side allocations first: in a worker being terminated any of them can throw, and a throw after the handle is
  // initialized would leave it open in the loop (Node aborts on "uv_loop_close() while having open handles").
  Poller* p = new Poller();
  p->env = env;
  p->thread = thread;
  if (!p->callback.Init(env, info[2], "pidfd:poll")) {
    delete p;
    throw Napi::Error::New(env, "pidfd native: could not start the poll");
  }
  int32_t id = st->nextPoller;
  int own = sys_dup_cloexec(fd);
  if (own < 0) {
    int e = errno;
    p->callback.Destroy(env);
    delete p;
    return Result(env, -e);
  }
  p->fd = own;
  int r;
  if (thread) {
    p->epollEvents = ToEpoll(events);
    r = HelperAdd(env, st, own, p->epollEvents, static_cast<uint64_t>(id));
  } else {
    r = uv_poll_init(loop, &p->handle, own);
    if (r == 0) {
      p->handle.data = p;
      r = uv_poll_start(&p->handle, events, OnPoll);
      if (r < 0) {
        // The handle is initialized: it must be closed through libuv; the duplicate after it.
        p->callback.Destroy(env);
        p->closing = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), [](uv_handle_t* h) {
          Poller* q = static_cast<Poller*>(h->data);
          close(q->fd);
          delete q;
        });
        return Result(env, r);
      }
    }
  }
  if (r < 0) {
    p->callback.Destroy(env);
    close(own);
    delete p;
    return Result(env, r);  // libuv errors are -errno
  }
  p->id = id;
  st->nextPoller = st->nextPoller == 0x7fffffff ? 1 : st->nextPoller + 1;
  if (thread) HelperRef(env, st, static_cast<uint64_t>(id), true);
  else napi_add_async_cleanup_hook(env, Cleanup, p, &p->hook);
  st->pollers[p->id] = p;
  return Result(env, p->id);
}

// (id) → 0 | -EBADF (unknown id). Stops the poll and closes its fd; no callback runs after this returns.
Napi::Value PollStop(const Napi::CallbackInfo& info) {
  State* st = GetState(info.Env());
  Poller* p = Find(info);
  if (!p) return Result(info.Env(), -static_cast<double>(EBADF));
  st->pollers.erase(p->id);
  if (p->thread) HelperDel(st, p->fd, static_cast<uint64_t>(p->id));
  ClosePoller(p);
  return Result(info.Env(), 0);
}

// (id, bool) → 0 | -EBADF: whether the poll keeps the event loop alive.
Napi::Value PollRef(const Napi::CallbackInfo& info) {
  Poller* p = Find(info);
  if (!p) return Result(info.Env(), -static_cast<double>(EBADF));
  bool ref = info[1].ToBoolean();
  if (p->thread) {
    HelperRef(info.Env(), GetState(info.Env()), static_cast<uint64_t>(p->id), ref);
    return Result(info.Env(), 0);
  }
  uv_handle_t* h = reinterpret_cast<uv_handle_t*>(&p->handle);
  if (ref) uv_ref(h);
  else uv_unref(h);
  return Result(info.Env(), 0);
}

}  // namespace

// What the helper thread saw on a poll's fd, reported as libuv would: an error (EPOLLERR) as status -EBADF, with
// the poll stopped; otherwise the events in libuv's bits, and the fd re-armed.
void PollerFired(State* st, uint64_t key, uint32_t e) {
  Poller* p = Find(st, static_cast<int32_t>(key));
  if (!p) return;  // stopped since the thread saw it
  if (e & EPOLLERR) {
    Fire(p, -EBADF, 0);
    return;
  }
  int events = 0;
  if (e & (EPOLLIN | EPOLLHUP)) events |= UV_READABLE;
  if (e & EPOLLPRI) events |= UV_PRIORITIZED;
  if (e & (EPOLLRDHUP | EPOLLHUP)) events |= UV_DISCONNECT;
  Fire(p, 0, events);
  // The callback may have stopped it.
  if (Find(st, static_cast<int32_t>(key)) == p) HelperRearm(st, p->fd, p->epollEvents, key);
}

void CloseThreadPollers(State* st) {
  for (auto it = st->pollers.begin(); it != st->pollers.end();) {
    Poller* p = it->second;
    if (p->thread) {
      it = st->pollers.erase(it);
      ClosePoller(p, st->asyncDestroyInCleanup);
    } else {
      ++it;
    }
  }
}

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
