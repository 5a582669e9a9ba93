// Keeps every pod on the node where its labels say: watches pods and namespaces, runs the same
// decision function as the plugin, enrols and unenrols running pods, and repairs drift.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/logger.h>

#include "agent/enroller.h"
#include "agent/informer.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/netns_finder.h"
#include "agent/pod_table.h"
#include "config/enrolment_policy.h"
#include "config/kube_objects.h"

namespace ambient::agent {

struct ReconcilerOptions {
  config::EnrolmentPolicy policy;
  NodeDefaults defaults;
  std::string node_name;  // empty: every pod the API lists (single-node testbeds)
  int workers = 4;
  std::chrono::milliseconds drift_interval{30000};
  std::chrono::milliseconds pending_retry{2000};  // pods whose rules could not be re-applied
  std::chrono::milliseconds watch_timeout{300000};
  std::chrono::milliseconds max_retry_backoff{30000};
};

struct ReconcilerDeps {
  PodTable& pods;
  Enroller& enroller;
  ApiPool& api;
  Informer::ClientFactory make_client;
  NetnsFinder& finder;
  Metrics& metrics;
  std::shared_ptr<spdlog::logger> log;
  // Told about label-driven enrolments and unenrolments and pods that wait (Events); may be null.
  PodReport* report = nullptr;
};

class Reconciler {
 public:
  Reconciler(ReconcilerOptions options, ReconcilerDeps deps);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Starts the watches; returns at once. startup_done() turns true once both collections were
  // listed and every pod on the node went through one pass.
  void start();
  void stop();
  bool startup_done() const { return startup_done_; }
  // Why the API refuses our list or watch of pods or namespaces ("" when it does not).
  std::string refused() const;
  // True when no pod is queued or being worked on.
  bool idle() const;

  // One drift pass now (also runs every drift_interval): in-pod rules and host probe SNAT.
  void repair_drift();

 private:
  struct Item {
    std::string uid;
    int attempt = 0;
    std::chrono::steady_clock::time_point not_before;
  };
  void on_pod(const std::string& key, const nlohmann::json* object);
  void on_namespace(const std::string& key, const nlohmann::json* object);
  void enqueue(const std::string& uid, int attempt = 0);
  void on_pod_list();
  static bool stale_annotation(const config::PodInfo& pod);  // annotated 'enabled'
  void worker();
  // Under mu_: takes the first due item whose pod no worker holds (true), or waits until the
  // earliest such item is due, an enqueue or a released pod wakes it, or 200 ms pass (false).
  bool take_due(std::unique_lock<std::mutex>& lock, Item& out);
  void housekeeping();
  // Returns false when the pod must be retried later.
  bool reconcile(const std::string& uid);
  bool reconcile_enrolment(const std::string& uid);
  // `why`: the decision's reason (for the pod's Event).
  bool enrol(const config::PodInfo& pod, const std::string& why);

  ReconcilerOptions o_;
  ReconcilerDeps d_;
  std::unique_ptr<Informer> pod_informer_;
  std::unique_ptr<Informer> ns_informer_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable idle_cv_;
  std::map<std::string, config::PodInfo> pods_;              // uid → pod
  std::map<std::string, std::string> pod_keys_;              // "ns/name" → uid
  std::map<std::string, config::NamespaceInfo> namespaces_;  // name → namespace
  std::deque<Item> queue_;
  std::set<std::string> queued_;  // uids in queue_ (a burst of events is one pass)
  std::set<std::string> busy_;

  std::atomic<bool> running_{false};
  std::atomic<bool> startup_done_{false};
  std::vector<std::thread> threads_;
};

}  // namespace ambient::agent
