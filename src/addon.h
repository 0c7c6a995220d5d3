// Per-environment state shared by the addon's parts. Each JS environment (the main thread and every worker) loads
// the addon once and gets its own State through napi instance data; nothing here is a mutable static.
#pragma once

#include <napi.h>
#include <unordered_map>
#include <unordered_set>

namespace pidfd {

class Watcher;
struct Poller;

struct State {
  // Every fd this environment handed out and has not closed yet. close() only closes numbers found here, so a
  // stale number (closed once already, maybe reused by another file since) never reaches close(2); the environment
  // cleanup hook closes whatever is left when a worker ends.
  std::unordered_set<int> owned;
  Watcher* watcher = nullptr;
  napi_async_cleanup_hook_handle cleanup = nullptr;
  // Per-fd polls (pollfd.cc), by id; each closes itself at teardown through its own cleanup hook.
  std::unordered_map<int32_t, Poller*> pollers;
  int32_t nextPoller = 1;
};

inline State* GetState(Napi::Env env) { return env.GetInstanceData<State>(); }

// Result convention of every call: a non-negative result, or -errno. TypeScript turns -errno into a Node-shaped
// system error, so no policy about which errors matter lives here.
inline Napi::Number Result(Napi::Env env, double r) { return Napi::Number::New(env, r); }

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t i);

void InitCalls(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports);
void InitPoll(Napi::Env env, Napi::Object exports);
void InitMlock(Napi::Env env, Napi::Object exports);
// Closes the watcher's libuv handle; `done` runs once libuv has released it (see the cleanup hook in addon.cc).
void CloseWatcher(Watcher* w, napi_async_cleanup_hook_handle hook);

}  // namespace pidfd
