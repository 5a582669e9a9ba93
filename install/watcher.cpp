#include "install/watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "config/constants.h"
#include "install/errors.h"
#include "install/files.h"

namespace ambient::install {

using Clock = std::chrono::steady_clock;

bool LoopDetector::record(Clock::time_point now) {
  reverts_.push_back(now);
  while (!reverts_.empty() && now - reverts_.front() > options_.window) reverts_.pop_front();
  if (reverts_.size() < options_.threshold) return false;
  if (last_warning_ && now - *last_warning_ <= options_.window) return false;
  last_warning_ = now;
  return true;
}

std::size_t LoopDetector::recent(Clock::time_point now) const {
  return static_cast<std::size_t>(std::count_if(
      reverts_.begin(), reverts_.end(), [&](auto t) { return now - t <= options_.window; }));
}

namespace {

namespace fs = std::filesystem;

enum class Kind { kConfDir, kBinDir, kServiceAccountDir, kKubeconfigDir };

struct Target {
  Kind kind;
  fs::path dir;
  std::string name;  // the one file that matters in that dir (bin: binary, kubeconfig); "" = any
  int wd = -1;
  bool warned = false;  // "cannot watch" said once per outage
};

constexpr std::uint32_t kMask = IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

bool relevant(const Target& t, std::string_view name) {
  if (name.empty()) return true;                    // the directory itself
  if (name.starts_with(kTempPrefix)) return false;  // our own writes in progress
  switch (t.kind) {
    case Kind::kConfDir:
      return is_cni_config_name(name);
    case Kind::kServiceAccountDir:
      return true;  // ..data swaps, token, ca.crt
    case Kind::kBinDir:
    case Kind::kKubeconfigDir:
      return name == t.name;
  }
  return true;
}

}  // namespace

struct Watcher::Impl {
  Installer& installer;
  WatcherOptions options;
  std::shared_ptr<spdlog::logger> log;
  EventFn on_event;
  LoopDetector loops;
  std::vector<Target> targets;
  int inotify_fd = -1;
  int stop_fd = -1;
  std::thread thread;
  std::atomic<bool> running{false};
  std::atomic<bool> watches_ok{false};
  std::atomic<bool> last_pass_ok{false};
  mutable std::mutex stats_mu;
  WatcherStats stats;

  Impl(Installer& i, WatcherOptions o, std::shared_ptr<spdlog::logger> l, EventFn f)
      : installer(i), options(o), log(std::move(l)), on_event(std::move(f)), loops(o.loop) {
    const auto& io = installer.options();
    const fs::path kubeconfig = installer.kubeconfig_path();
    targets = {{Kind::kConfDir, io.cni_conf_dir, "", -1, false},
               {Kind::kBinDir, io.cni_bin_dir, std::string(contract::kPluginType), -1, false},
               {Kind::kServiceAccountDir, io.service_account_dir, "", -1, false},
               {Kind::kKubeconfigDir, kubeconfig.parent_path(), kubeconfig.filename().string(), -1,
                false}};
  }

  ~Impl() {
    if (inotify_fd >= 0) ::close(inotify_fd);
    if (stop_fd >= 0) ::close(stop_fd);
  }

  void ensure_watches() {
    bool ok = true;
    for (auto& t : targets) {
      if (t.wd >= 0) continue;
      t.wd = ::inotify_add_watch(inotify_fd, t.dir.c_str(), kMask);
      if (t.wd < 0) {
        ok = false;
        if (!t.warned) {
          log->warn("cannot watch {}: {} (retrying)", t.dir.string(), std::strerror(errno));
        }
        t.warned = true;
      } else {
        t.warned = false;
      }
    }
    watches_ok = ok;
  }

  // Reads every queued event; true when one of them matters.
  bool drain() {
    alignas(struct inotify_event) char buf[16384];
    bool any = false;
    for (;;) {
      const ssize_t n = ::read(inotify_fd, buf, sizeof buf);
      if (n <= 0) break;  // EAGAIN: drained
      for (char* p = buf; p < buf + n;) {
        const auto* ev = reinterpret_cast<const struct inotify_event*>(p);
        p += sizeof(struct inotify_event) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
          any = true;
          continue;
        }
        const std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
        for (auto& t : targets) {
          if (t.wd != ev->wd) continue;
          if (ev->mask & IN_IGNORED) {
            t.wd = -1;  // the directory went away: watched again once it is back
            watches_ok = false;
            any = true;
          } else if (relevant(t, name)) {
            any = true;
          }
        }
      }
    }
    return any;
  }

  void count(std::string_view what, std::uint64_t WatcherStats::*field) {
    {
      std::lock_guard g(stats_mu);
      ++(stats.*field);
    }
    if (on_event) on_event(what);
  }

  void revert(std::string_view what, const std::string& detail) {
    log->warn("{} was changed by another component; restored ({})", what, detail);
    count(what, &WatcherStats::reverts);
    const auto now = Clock::now();
    if (loops.record(now)) {
      log->error(
          "LOOP: another component keeps reverting ambient-cni's installation ({} times in the "
          "last {} s, latest: {}). Between its writes and ours, new pods start without "
          "ambient-cni. Find the component that rewrites the CNI configuration (e.g. the "
          "primary CNI's installer) and configure it to keep chained plugins, or use the owned "
          "conflist mode.",
          loops.recent(now), options.loop.window.count(), what);
      count("loop", &WatcherStats::loop_warnings);
    }
  }

  void pass() {
    const bool was_installed = installer.installed();
    try {
      const auto r = installer.reconcile();
      {
        std::lock_guard g(stats_mu);
        ++stats.passes;
      }
      last_pass_ok = true;
      if (!was_installed) return;
      if (!r.conf_ops.empty()) {
        std::string detail;
        for (const auto& op : r.conf_ops) {
          detail += (detail.empty() ? "" : ", ") +
                    std::string(op.kind == FileOp::Kind::kWrite ? "wrote " : "removed ") + op.name;
        }
        revert("cni_config", detail);
      }
      if (r.binary_written) revert("plugin_binary", installer.binary_path().string());
      if (r.kubeconfig_written) {
        log->info("plugin kubeconfig rewritten (service-account token rotated, or file changed)");
        std::lock_guard g(stats_mu);
        ++stats.kubeconfig_rewrites;
      }
    } catch (const std::exception& e) {
      last_pass_ok = false;
      log->error("installer pass failed: {} (retrying in {} ms)", e.what(), options.retry.count());
      std::lock_guard g(stats_mu);
      ++stats.failures;
    }
  }

  void loop() {
    auto last_pass = Clock::now();
    bool pending = true;  // the first pass runs at once
    auto first_event = last_pass;
    auto last_event = last_pass - options.debounce;
    while (true) {
      ensure_watches();
      const auto now = Clock::now();
      Clock::time_point due;
      if (pending) {
        due = std::min(last_event + options.debounce, first_event + options.max_delay);
      } else {
        due = last_pass + (watches_ok && last_pass_ok ? options.resync : options.retry);
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count();
      struct pollfd fds[2] = {{stop_fd, POLLIN, 0}, {inotify_fd, POLLIN, 0}};
      const int rc = ::poll(fds, 2, static_cast<int>(std::clamp<long long>(wait, 0, 60000)));
      if (rc < 0 && errno != EINTR) {
        log->error("watcher poll failed: {}", std::strerror(errno));
        break;
      }
      if (fds[0].revents & POLLIN) break;
      if ((fds[1].revents & POLLIN) && drain()) {
        if (!pending) first_event = Clock::now();
        pending = true;
        last_event = Clock::now();
        // Debounce: wait for quiet, but never past max_delay after the first event.
        due = std::min(last_event + options.debounce, first_event + options.max_delay);
      }
      if (Clock::now() >= due) {
        pass();
        pending = false;
        last_pass = Clock::now();
      }
    }
    running = false;
  }
};

Watcher::Watcher(Installer& installer, WatcherOptions options, std::shared_ptr<spdlog::logger> log,
                 EventFn on_event)
    : impl_(std::make_unique<Impl>(installer, options, std::move(log), std::move(on_event))) {}

Watcher::~Watcher() {
  stop();
}

void Watcher::start() {
  auto& s = *impl_;
  if (s.running) return;
  if (s.inotify_fd < 0) s.inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (s.inotify_fd < 0) throw InstallError(std::string("inotify: ") + std::strerror(errno));
  if (s.stop_fd < 0) s.stop_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.stop_fd < 0) throw InstallError(std::string("eventfd: ") + std::strerror(errno));
  s.running = true;
  s.thread = std::thread([&s] { s.loop(); });
}

void Watcher::stop() {
  auto& s = *impl_;
  if (!s.thread.joinable()) return;
  const std::uint64_t one = 1;
  if (::write(s.stop_fd, &one, sizeof one) < 0)
    s.log->warn("watcher stop: {}", std::strerror(errno));
  s.thread.join();
  std::uint64_t drained = 0;
  if (::read(s.stop_fd, &drained, sizeof drained) < 0) drained = 0;  // ready for a restart
  for (auto& t : s.targets) {
    if (t.wd >= 0) ::inotify_rm_watch(s.inotify_fd, t.wd);
    t.wd = -1;
  }
  s.running = false;
}

bool Watcher::healthy() const {
  return impl_->running && impl_->watches_ok && impl_->last_pass_ok;
}

WatcherStats Watcher::stats() const {
  std::lock_guard g(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace ambient::install
