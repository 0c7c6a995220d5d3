// Module init: per-environment state, the teardown hook, and the numeric constants the TypeScript layer needs.
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <cstring>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "pidfd native: argument must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

bool JsCallback::Init(napi_env env, napi_value f, const char* name) {
  napi_value n;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n) != napi_ok) return false;
  if (napi_create_reference(env, f, 1, &fn) != napi_ok) return false;
  if (napi_async_init(env, nullptr, n, &context) != napi_ok) {
    Destroy(env);
    return false;
  }
  return true;
}

namespace {
napi_status ToJs(napi_env env, int32_t v, napi_value* out) { return napi_create_int32(env, v, out); }
napi_status ToJs(napi_env env, double v, napi_value* out) { return napi_create_double(env, v, out); }

template <typename T>
bool CallWith(JsCallback& cb, napi_env env, size_t argc, const T* args) {
  napi_handle_scope scope;
  if (cb.fn == nullptr || napi_open_handle_scope(env, &scope) != napi_ok) return false;
  napi_value f, recv, argv[2], result;
  bool ok = argc <= 2 && napi_get_reference_value(env, cb.fn, &f) == napi_ok && f != nullptr &&
            napi_get_global(env, &recv) == napi_ok;
  for (size_t i = 0; ok && i < argc; i++) ok = ToJs(env, args[i], &argv[i]) == napi_ok;
  // The callback may destroy cb (it may stop what it belongs to): cb is not used after the call.
  if (ok && napi_make_callback(env, cb.context, recv, f, argc, argv, &result) == napi_pending_exception) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
  return ok;
}
}  // namespace

bool JsCallback::Call(napi_env env, size_t argc, const int32_t* args) { return CallWith(*this, env, argc, args); }
bool JsCallback::Call(napi_env env, size_t argc, const double* args) { return CallWith(*this, env, argc, args); }

void JsCallback::Destroy(napi_env env, bool destroyContext) {
  if (fn) napi_delete_reference(env, fn);
  if (context && destroyContext) napi_async_destroy(env, context);
  fn = nullptr;
  context = nullptr;
}

namespace {

// Runs when the environment is torn down (process exit or worker termination): a plain cleanup hook, which every
// runtime serves (Deno 2.9 double-frees an async cleanup hook that removes itself from inside the hook). The
// helper thread is joined first, so nothing it polls is closed under it. The libuv handles (Node only) close
// themselves through their own async hooks (watcher.cc, pollfd.cc).
void Cleanup(void* arg) {
  State* st = static_cast<State*>(arg);
  StopHelper(st);
  CloseThreadWatcher(st);
  CloseThreadPollers(st);
  CloseThreadSamplers(st);
  for (int fd : st->owned) close(fd);
  st->owned.clear();
}

// The kernel ABI fixes these numbers (the same on every architecture), but the build machine's headers may be older
// than the feature (Debian 12's uapi headers are Linux 6.1's: no PIDFD_THREAD, PIDFD_SIGNAL_*, PIDFD_INFO_*). A
// header that has a name wins; otherwise the number is written here.
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef PIDFD_SIGNAL_THREAD
#define PIDFD_SIGNAL_THREAD (1UL << 0)
#define PIDFD_SIGNAL_THREAD_GROUP (1UL << 1)
#define PIDFD_SIGNAL_PROCESS_GROUP (1UL << 2)
#endif
#ifndef PIDFD_INFO_PID
#define PIDFD_INFO_PID (1UL << 0)
#define PIDFD_INFO_CREDS (1UL << 1)
#define PIDFD_INFO_CGROUPID (1UL << 2)
#endif
#ifndef PIDFD_INFO_COREDUMP
#define PIDFD_INFO_COREDUMP (1UL << 4)
#endif
#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

void SetConstants(Napi::Env env, Napi::Object c) {
  auto set = [&](const char* name, double v) { c.Set(name, Napi::Number::New(env, v)); };
  set("PIDFD_NONBLOCK", O_NONBLOCK);  // as <linux/pidfd.h> defines it
  set("PIDFD_THREAD", PIDFD_THREAD);
  set("PIDFD_SIGNAL_THREAD", PIDFD_SIGNAL_THREAD);
  set("PIDFD_SIGNAL_THREAD_GROUP", PIDFD_SIGNAL_THREAD_GROUP);
  set("PIDFD_SIGNAL_PROCESS_GROUP", PIDFD_SIGNAL_PROCESS_GROUP);
  set("PIDFD_INFO_PID", PIDFD_INFO_PID);
  set("PIDFD_INFO_CREDS", PIDFD_INFO_CREDS);
  set("PIDFD_INFO_CGROUPID", PIDFD_INFO_CGROUPID);
  set("PIDFD_INFO_EXIT", kPidfdInfoExit);
  set("PIDFD_INFO_COREDUMP", PIDFD_INFO_COREDUMP);
  set("PIDFD_INFO_SIZE", sizeof(PidfdInfo));
  set("P_PIDFD", P_PIDFD);
  set("WEXITED", WEXITED);
  set("WSTOPPED", WSTOPPED);
  set("WCONTINUED", WCONTINUED);
  set("WNOHANG", WNOHANG);
  set("WNOWAIT", WNOWAIT);
  set("CLD_EXITED", CLD_EXITED);
  set("CLD_KILLED", CLD_KILLED);
  set("CLD_DUMPED", CLD_DUMPED);
  set("CLD_TRAPPED", CLD_TRAPPED);
  set("CLD_STOPPED", CLD_STOPPED);
  set("CLD_CONTINUED", CLD_CONTINUED);
  set("SI_QUEUE", SI_QUEUE);
  set("MADV_WILLNEED", MADV_WILLNEED);
  set("MADV_COLD", MADV_COLD);
  set("MADV_PAGEOUT", MADV_PAGEOUT);
  set("MADV_COLLAPSE", MADV_COLLAPSE);
  set("UIO_MAXIOV", kMaxIov);
  set("POLLIN", POLLIN);
  set("POLLHUP", POLLHUP);
  set("EPOLLIN", EPOLLIN);
  set("EPOLLHUP", EPOLLHUP);
  set("PAGE_SIZE", static_cast<double>(sysconf(_SC_PAGESIZE)));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  State* st = new State();
  const napi_node_version* v = nullptr;
  bool ok = napi_get_node_version(env, &v) == napi_ok && v && v->release;
  // Deno 2.9: napi_async_destroy from an environment cleanup hook aborts the process ("Cannot create a handle
  // without a HandleScope"); the environment is ending, so its async contexts are left to it.
  st->asyncDestroyInCleanup = !(ok && std::strcmp(v->release, "Deno") == 0);
  env.SetInstanceData<State>(st);  // deleted by node-addon-api when the environment goes away
  napi_add_env_cleanup_hook(env, Cleanup, st);
  Napi::Object constants = Napi::Object::New(env);
  SetConstants(env, constants);
  exports.Set("constants", constants);
  // Which runtime this is, as it reports itself ("node", "Deno", ...): JS decides from it whether libuv is there.
  if (ok) exports.Set("release", v->release);
  InitCalls(env, exports);
  InitWatcher(env, exports);
  InitPoll(env, exports);
  InitMlock(env, exports);
  InitSampler(env, exports);
  return exports;
}

}  // namespace pidfd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return pidfd::Init(env, exports); }
NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
