// List-then-watch of one Kubernetes collection, kept in a local store: resourceVersion
// bookkeeping, bookmarks, reconnect with backoff, 410 Gone → relist. Changes are reported to a
// handler (object null = deleted); a relist reports every difference it finds.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/logger.h>
#include <nlohmann/json.hpp>

#include "kube/client.h"

namespace ambient::agent {

// One watch event as the informer reads it, whatever the API sent: what to do with it and, when
// it is to be skipped, why. Pure (fuzzed: tests/fuzz/fuzz_watch_event.cpp).
struct WatchEvent {
  enum class Action { kApply, kRelist, kSkip };
  Action action = Action::kSkip;
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  std::string key;   // "namespace/name" or "name"
  std::string why;   // kSkip, kRelist: for the log
};
WatchEvent classify_watch_event(const nlohmann::json& event);

class Informer {
 public:
  using Handler = std::function<void(const std::string& key, const nlohmann::json* object)>;
  using ClientFactory = std::function<std::unique_ptr<kube::Client>()>;

  struct Options {
    std::string name;  // for logs: "pods", "namespaces"
    std::string path;  // collection path with its query, e.g. /api/v1/pods?fieldSelector=…
    std::chrono::milliseconds watch_timeout{
        300000};  // one watch request (the server may end it sooner)
    std::chrono::milliseconds max_backoff{5000};
    // Told about each handled failure: "api_list_failed", "api_watch_interrupted".
    std::function<void(const std::string& what)> degraded;
    // After every list (the first and each relist), once its changes were handed out: what
    // the watch gap hid (an object created and deleted while no watch ran) is in no change, so
    // the owner re-checks what it holds against the fresh cache.
    std::function<void()> on_list;
  };

  Informer(Options options, ClientFactory make_client, Handler on_change,
           std::shared_ptr<spdlog::logger> log);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void start();
  void stop();
  bool synced() const { return synced_; }  // the first list completed
  // What the API answered when it last refused this informer's list or watch (401/403: a verb
  // missing from our RBAC, a deleted identity), "" once a list or a watch event got through.
  // The agent is not ready meanwhile: it would miss label changes.
  std::string refused() const;
  bool wait_synced(std::chrono::milliseconds timeout) const;
  std::optional<nlohmann::json> get(const std::string& key) const;
  std::vector<nlohmann::json> items() const;

  // "namespace/name" for namespaced objects, "name" otherwise.
  static std::string key_of(const nlohmann::json& object);

 private:
  void run();
  bool relist(kube::Client& client);
  // Returns false when the stream must be relisted (410, or the store is no longer trusted).
  bool watch_once(kube::Client& client);
  void apply(const std::string& type, const nlohmann::json& object);
  void sleep_for(std::chrono::milliseconds d);
  void note_refusal(const kube::ApiError& e);  // 401/403: refused_ set, logged loudly
  void clear_refusal();

  Options options_;
  ClientFactory make_client_;
  Handler on_change_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};  // aborts an idle watch
  std::atomic<bool> synced_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, nlohmann::json> store_;
  std::string resource_version_;
  std::string refused_;  // see refused(); under mu_
};

}  // namespace ambient::agent
