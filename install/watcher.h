// Keeps the plugin installed: inotify on the CNI conf dir, the CNI bin dir (our binary), the
// service-account dir (kubelet rotates the token by swapping its `..data` symlink, so the
// directory is watched, not the token file) and the kubeconfig's directory. Any change there
// triggers an installer pass within a debounce delay; a full pass also runs every `resync`
// in case an event was lost (queue overflow, a directory replaced).
//
// A pass that has to rewrite something after the plugin was installed means another component
// reverted us (a primary CNI rewriting its conflist, a node agent cleaning the bin dir). Each
// revert is counted; when they keep coming (LoopDetector) the watcher warns loudly, because
// between their write and ours new pods start without ambient-cni.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string_view>
#include <thread>

#include <spdlog/logger.h>

#include "install/installer.h"

namespace ambient::install {

class LoopDetector {
 public:
  struct Options {
    std::size_t threshold = 5;  // reverts within `window` that make a loop
    std::chrono::seconds window{60};
  };
  explicit LoopDetector(Options options) : options_(options) {}

  // Records one revert at `now`. True when this one completes a loop (threshold reverts within
  // the window) and no loop warning was given within the last window.
  bool record(std::chrono::steady_clock::time_point now);
  // Reverts recorded within the window before `now`.
  std::size_t recent(std::chrono::steady_clock::time_point now) const;

 private:
  Options options_;
  std::deque<std::chrono::steady_clock::time_point> reverts_;
  std::optional<std::chrono::steady_clock::time_point> last_warning_;
};

struct WatcherOptions {
  std::chrono::milliseconds debounce{50};    // quiet time after an event before the pass
  std::chrono::milliseconds max_delay{300};  // an event stream never delays a pass longer
  std::chrono::milliseconds resync{30000};   // a full pass even without events
  std::chrono::milliseconds retry{1000};     // after a failed pass or a directory not watchable
  LoopDetector::Options loop;
};

struct WatcherStats {
  std::uint64_t passes = 0;
  std::uint64_t reverts = 0;        // things of ours another component changed or removed
  std::uint64_t loop_warnings = 0;  // loud warnings about a component that keeps reverting us
  std::uint64_t kubeconfig_rewrites = 0;
  std::uint64_t failures = 0;  // passes that threw
};

class Watcher {
 public:
  // Called (on the watcher thread) with "cni_config", "plugin_binary" or "kubeconfig" for each
  // revert, and with "loop" for each loop warning: the node wires it to its metrics.
  using EventFn = std::function<void(std::string_view what)>;

  Watcher(Installer& installer, WatcherOptions options, std::shared_ptr<spdlog::logger> log,
          EventFn on_event = {});
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Starts the thread (which runs a first pass at once). Throws InstallError when inotify is
  // unavailable.
  void start();
  void stop();

  // Running, every directory watched, and the last pass succeeded.
  bool healthy() const;
  WatcherStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::install
