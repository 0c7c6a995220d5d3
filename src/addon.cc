// Module init: per-environment state, the teardown hook, and the numeric constants the TypeScript layer needs.
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "addon.h"
#include "syscalls.h"

namespace pidfd {

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "pidfd native: argument must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

namespace {

// Runs when the environment is torn down (process exit or worker termination). It is an *async* cleanup hook
// because the watcher's uv_poll_t must finish closing before Node unloads the environment: closing it from a plain
// cleanup hook let libuv run the close callback after the environment was gone (SIGSEGV on worker.terminate()).
void Cleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  State* st = static_cast<State*>(arg);
  for (int fd : st->owned) close(fd);
  st->owned.clear();
  if (st->watcher) {
    Watcher* w = st->watcher;
    st->watcher = nullptr;
    CloseWatcher(w, hook);  // removes the hook from the handle's close callback
  } else {
    napi_remove_async_cleanup_hook(hook);
  }
}

void SetConstants(Napi::Env env, Napi::Object c) {
  auto set = [&](const char* name, double v) { c.Set(name, Napi::Number::New(env, v)); };
  set("PIDFD_NONBLOCK", O_NONBLOCK);
  set("PIDFD_THREAD", O_EXCL);
  set("PIDFD_SIGNAL_THREAD", 1 << 0);
  set("PIDFD_SIGNAL_THREAD_GROUP", 1 << 1);
  set("PIDFD_SIGNAL_PROCESS_GROUP", 1 << 2);
  set("PIDFD_INFO_PID", 1 << 0);
  set("PIDFD_INFO_CREDS", 1 << 1);
  set("PIDFD_INFO_CGROUPID", 1 << 2);
  set("PIDFD_INFO_EXIT", kPidfdInfoExit);
  set("PIDFD_INFO_COREDUMP", 1 << 4);
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
  set("MADV_COLD", 20);
  set("MADV_PAGEOUT", 21);
  set("MADV_COLLAPSE", 25);
  set("UIO_MAXIOV", 1024);
  set("POLLIN", POLLIN);
  set("POLLHUP", POLLHUP);
  set("EPOLLIN", EPOLLIN);
  set("EPOLLHUP", EPOLLHUP);
  set("PAGE_SIZE", static_cast<double>(sysconf(_SC_PAGESIZE)));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  State* st = new State();
  env.SetInstanceData<State>(st);  // deleted by node-addon-api when the environment goes away
  napi_add_async_cleanup_hook(env, Cleanup, st, &st->cleanup);
  Napi::Object constants = Napi::Object::New(env);
  SetConstants(env, constants);
  exports.Set("constants", constants);
  InitCalls(env, exports);
  InitWatcher(env, exports);
  InitPoll(env, exports);
  InitMlock(env, exports);
  return exports;
}

}  // namespace pidfd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return pidfd::Init(env, exports); }
NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
