#include "agent/reconciler.h"

#include <malloc.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "config/constants.h"
#include "config/decision.h"
#include "config/errors.h"

namespace ambient::agent {
namespace {

// A pod leaves the mesh when its phase is final, when its object is gone, or when its sandbox's
// DEL comes — never merely because deletion started: its containers run (preStop, draining) for
// the whole grace period, and must stay captured meanwhile.
bool finished(const config::PodInfo& p) {
  return p.phase == "Succeeded" || p.phase == "Failed";
}

std::string who(const config::PodInfo& p) {
  return p.namespace_ + "/" + p.name;
}

}  // namespace

Reconciler::Reconciler(ReconcilerOptions options, ReconcilerDeps deps)
    : o_(std::move(options)), d_(std::move(deps)) {
  std::string pods_path = "/api/v1/pods";
  if (!o_.node_name.empty()) pods_path += "?fieldSelector=spec.nodeName%3D" + o_.node_name;
  pod_informer_ = std::make_unique<Informer>(
      Informer::Options{"pods", pods_path, o_.watch_timeout, std::chrono::milliseconds(5000),
                        [this](const std::string& w) { d_.metrics.count_degraded(w); },
                        [this] { on_pod_list(); }},
      d_.make_client, [this](const std::string& k, const nlohmann::json* o) { on_pod(k, o); },
      d_.log);
  ns_informer_ = std::make_unique<Informer>(
      Informer::Options{"namespaces", "/api/v1/namespaces", o_.watch_timeout,
                        std::chrono::milliseconds(5000),
                        [this](const std::string& w) { d_.metrics.count_degraded(w); }, nullptr},
      d_.make_client, [this](const std::string& k, const nlohmann::json* o) { on_namespace(k, o); },
      d_.log);
}

Reconciler::~Reconciler() {
  stop();
}

void Reconciler::start() {
  running_ = true;
  ns_informer_->start();
  pod_informer_->start();
  for (int i = 0; i < std::max(1, o_.workers); ++i) threads_.emplace_back([this] { worker(); });
  threads_.emplace_back([this] { housekeeping(); });
}

void Reconciler::stop() {
  if (!running_.exchange(false)) return;
  cv_.notify_all();
  // Both watches wind down together (each takes up to a second to notice).
  std::thread ns_stop([this] { ns_informer_->stop(); });
  pod_informer_->stop();
  ns_stop.join();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

bool Reconciler::idle() const {
  std::lock_guard lock(mu_);
  return queue_.empty() && busy_.empty();
}

void Reconciler::on_pod(const std::string& key, const nlohmann::json* object) {
  std::string uid;
  {
    std::lock_guard lock(mu_);
    if (object == nullptr) {
      const auto it = pod_keys_.find(key);
      if (it == pod_keys_.end()) return;
      uid = it->second;
      pods_.erase(uid);
      pod_keys_.erase(it);
      if (d_.report) d_.report->forget(uid);
    } else {
      try {
        auto pod = config::parse_pod(*object);
        if (pod.uid.empty()) return;
        uid = pod.uid;
        if (const auto old = pod_keys_.find(key); old != pod_keys_.end() && old->second != uid) {
          pods_.erase(old->second);  // same name, new pod: the old one is gone
          queued_.insert(old->second);
          queue_.push_back({old->second, 0, {}});
        }
        pod_keys_[key] = uid;
        pods_[uid] = std::move(pod);
      } catch (const config::ConfigError& e) {
        d_.log->warn("ignoring malformed pod {}: {}", key, e.what());
        d_.metrics.count_degraded("malformed_api_object");
        return;
      }
    }
  }
  enqueue(uid);
}

// A pod enrolled by its ADD whose object came and went while no watch ran (a 410, then a
// relist that no longer lists it) is in no change the relist hands out: every enrolled pod the
// fresh cache does not hold gets a pass, which releases it.
void Reconciler::on_pod_list() {
  std::vector<std::string> unknown;
  for (const auto& p : d_.pods.all()) unknown.push_back(p.uid());
  {
    std::lock_guard lock(mu_);
    std::erase_if(unknown, [&](const std::string& uid) { return pods_.contains(uid); });
  }
  for (const auto& uid : unknown) enqueue(uid);
}

void Reconciler::on_namespace(const std::string& key, const nlohmann::json* object) {
  std::vector<std::string> affected;
  {
    std::lock_guard lock(mu_);
    if (object == nullptr) {
      namespaces_.erase(key);
    } else {
      try {
        namespaces_[key] = config::parse_namespace(*object);
      } catch (const config::ConfigError& e) {
        d_.log->warn("ignoring malformed namespace {}: {}", key, e.what());
        d_.metrics.count_degraded("malformed_api_object");
        return;
      }
    }
    for (const auto& [uid, pod] : pods_) {
      if (pod.namespace_ == key) affected.push_back(uid);
    }
  }
  for (const auto& uid : affected) enqueue(uid);
}

void Reconciler::enqueue(const std::string& uid, int attempt) {
  {
    std::lock_guard lock(mu_);
    if (attempt == 0 && queued_.contains(uid)) {
      // Already queued: one pass covers it, but now — a fresh event (the pod deleted, its labels
      // changed) must not wait out a retry's backoff (up to max_retry_backoff).
      const auto now = std::chrono::steady_clock::now();
      for (auto& item : queue_) {
        if (item.uid == uid && item.not_before > now) item.not_before = now;
      }
      cv_.notify_one();
      return;
    }
    queued_.insert(uid);
    auto delay = std::chrono::milliseconds(0);
    if (attempt > 0) {
      delay = std::min(o_.max_retry_backoff,
                       std::chrono::milliseconds(100) * (1 << std::min(attempt, 10)));
    }
    queue_.push_back({uid, attempt, std::chrono::steady_clock::now() + delay});
  }
  cv_.notify_one();
}

bool Reconciler::take_due(std::unique_lock<std::mutex>& lock, Item& out) {
  const auto now = std::chrono::steady_clock::now();
  auto wake = now + std::chrono::milliseconds(200);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (busy_.contains(it->uid)) continue;  // its worker wakes us when it is done
    if (it->not_before > now) {
      wake = std::min(wake, it->not_before);
      continue;
    }
    out = *it;
    queue_.erase(it);
    if (std::none_of(queue_.begin(), queue_.end(),
                     [&](const Item& i) { return i.uid == out.uid; })) {
      queued_.erase(out.uid);
    }
    busy_.insert(out.uid);
    return true;
  }
  // Nothing to do now: sleep until there is (a backoff's item, or a pod held by another worker,
  // must not make this loop spin).
  cv_.wait_until(lock, wake);
  return false;
}

void Reconciler::worker() {
  while (running_) {
    Item item;
    {
      std::unique_lock lock(mu_);
      if (!running_) return;
      if (!take_due(lock, item)) continue;
    }
    bool done = true;
    try {
      done = reconcile(item.uid);
    } catch (const std::exception& e) {
      d_.log->error("reconciling pod uid {}: {}", item.uid, e.what());
      d_.metrics.count_degraded("reconcile_error");
      done = false;
    }
    {
      std::lock_guard lock(mu_);
      busy_.erase(item.uid);
    }
    cv_.notify_all();  // a worker may be waiting for this pod's next item
    if (!done) {
      d_.metrics.count_repair("retry");
      enqueue(item.uid, item.attempt + 1);
    }
    idle_cv_.notify_all();
  }
}

bool Reconciler::stale_annotation(const config::PodInfo& pod) {
  const auto it = pod.annotations.find(contract::kRedirectionAnnotation);
  return it != pod.annotations.end() && it->second == contract::kRedirectionEnabled;
}

bool Reconciler::reconcile(const std::string& uid) {
  const bool done = reconcile_enrolment(uid);
  // Not enrolled (released, or to be enrolled but not yet possible) yet annotated "enabled": an
  // earlier release could not remove it, or an agent died between the two. istiod would send
  // the pod HBONE it cannot take.
  std::optional<config::PodInfo> pod;
  {
    std::lock_guard lock(mu_);
    if (const auto it = pods_.find(uid); it != pods_.end()) pod = it->second;
  }
  if (pod && stale_annotation(*pod) && !d_.pods.get(uid)) {
    return d_.enroller.clear_stale_annotation(uid, pod->namespace_, pod->name) && done;
  }
  return done;
}

bool Reconciler::reconcile_enrolment(const std::string& uid) {
  std::optional<config::PodInfo> pod;
  config::NamespaceInfo ns;
  {
    std::lock_guard lock(mu_);
    if (const auto it = pods_.find(uid); it != pods_.end()) pod = it->second;
    if (pod) {
      if (const auto n = namespaces_.find(pod->namespace_); n != namespaces_.end()) {
        ns = n->second;
      } else {
        ns.name = pod->namespace_;
      }
    }
  }
  const auto current = d_.pods.get(uid);
  bool want = false;
  std::string why;    // the decision's reason
  bool gone = false;  // the API says the pod is deleted or replaced
  if (pod && !finished(*pod)) {
    const auto decision = config::decide(o_.policy, *pod, ns);
    want = decision.enrol;
    why = decision.reason;
  }
  if (want == current.has_value()) {
    // Enrolled with other redirect settings (an annotation changed): re-apply.
    if (current && pod) {
      const auto wanted = enrolment_for(*pod, current->pod(), o_.defaults);
      if (!(wanted.redirect == current->enrolment.redirect)) return enrol(*pod, why);
    }
    return true;
  }
  // To enrol but no sandbox yet (a pod just created): the plugin's ADD enrols it, and there is
  // nothing to confirm (enrol() would do nothing with it).
  if (want && !current && pod->ips.empty()) {
    d_.log->debug("pod {} has no IP yet; leaving it to the plugin", who(*pod));
    return true;
  }
  // The watch caches may lag behind what the plugin just saw: confirm a change of state with a
  // fresh read before acting on it.
  if (pod && !finished(*pod)) {
    try {
      const auto fresh = d_.api.with([&](kube::Client& c) {
        return std::pair{config::parse_pod(
                             c.get("/api/v1/namespaces/" + pod->namespace_ + "/pods/" + pod->name)),
                         config::parse_namespace(c.get("/api/v1/namespaces/" + pod->namespace_))};
      });
      if (fresh.first.uid != uid) {
        want = false;  // replaced by a pod of the same name
        gone = true;
      } else {
        const auto decision = config::decide(o_.policy, fresh.first, fresh.second);
        want = !finished(fresh.first) && decision.enrol;
        why = decision.reason;
        pod = fresh.first;
      }
    } catch (const kube::ApiError& e) {
      if (e.kind() != kube::ApiError::Kind::kNotFound) {
        d_.log->warn("pod {}: cannot confirm its labels: {}; will retry", who(*pod), e.what());
        d_.metrics.count_degraded("api_read_failed");
        return false;
      }
      want = false;
      gone = true;
    } catch (const config::ConfigError& e) {
      d_.log->warn("pod {}: malformed object from the API: {}", who(*pod), e.what());
      d_.metrics.count_degraded("malformed_api_object");
      return false;
    }
    if (want == current.has_value()) return true;
  }
  if (want) return enrol(*pod, why);
  if (!pod && current) {
    // Not in the watch cache: deleted, or the cache has not seen it yet (a pod that its ADD
    // enrolled while a relist ran). Only the API says which.
    const auto& rec = current->pod();
    try {
      const auto fresh = d_.api.with([&](kube::Client& c) {
        return config::parse_pod(
            c.get("/api/v1/namespaces/" + rec.namespace_ + "/pods/" + rec.name));
      });
      if (fresh.uid == uid && !finished(fresh)) return true;  // there: its events will come
    } catch (const kube::ApiError& e) {
      if (e.kind() != kube::ApiError::Kind::kNotFound) {
        d_.log->warn("pod {}/{}: cannot confirm it is gone: {}; will retry", rec.namespace_,
                     rec.name, e.what());
        d_.metrics.count_degraded("api_read_failed");
        return false;
      }
    } catch (const config::ConfigError&) {
      return false;
    }
  }
  d_.log->info("pod {} no longer selected for ambient{}: unenrolling",
               current->pod().namespace_ + "/" + current->pod().name,
               pod ? "" : " (deleted or finished)");
  const bool released =
      d_.enroller.release(uid, /*clear_annotation=*/pod.has_value(), current->pod().container_id);
  // A running pod a label change took out of the mesh: said on the pod. Deleted or finished
  // pods need no word.
  if (released && d_.report && pod && !gone && !finished(*pod) && !why.empty()) {
    d_.report->unenrolled({pod->namespace_, pod->name, uid},
                          "no longer selected for ambient (" + why +
                              "): its in-pod redirection was removed and ztunnel released it");
  }
  return true;
}

bool Reconciler::enrol(const config::PodInfo& pod, const std::string& why) {
  if (pod.ips.empty()) {
    // Its sandbox is not up yet: the plugin's ADD will enrol it.
    d_.log->debug("pod {} has no IP yet; leaving it to the plugin", who(pod));
    return true;
  }
  const auto found = d_.finder.find(pod.uid);
  if (!found) {
    d_.log->warn("pod {} should be enrolled but its network namespace was not found; will retry",
                 who(pod));
    d_.metrics.count_degraded("netns_not_found");
    if (d_.report) {
      d_.report->problem({pod.namespace_, pod.name, pod.uid}, PodReport::Problem::kPending,
                         "selected for ambient (" + why +
                             ") but its network namespace was not found on this node; the node "
                             "agent retries");
    }
    return false;
  }
  rundir::PodRecord sandbox;
  if (const auto rec = d_.finder.record(pod.uid)) sandbox = *rec;
  if (!found->container_id.empty()) sandbox.container_id = found->container_id;
  sandbox.netns = found->path;
  if (sandbox.ifname.empty()) sandbox.ifname = "eth0";
  sandbox.ips = pod.ips;  // what the API says now; the record's may be of an older sandbox
  const bool held_before = d_.pods.get(pod.uid).has_value();
  const auto reply = d_.enroller.enrol(enrolment_for(pod, std::move(sandbox), o_.defaults),
                                       Enroller::Source::kFound);
  if (!reply.ok) {
    d_.log->warn("pod {}: enrolment failed: {} {}; will retry", who(pod), reply.msg, reply.details);
    return false;
  }
  d_.log->info("pod {} enrolled by the agent (netns from {})", who(pod), found->source);
  if (d_.report && !held_before) {
    d_.report->enrolled({pod.namespace_, pod.name, pod.uid},
                        "enrolled by the node agent (" + why + ") while running");
  }
  return true;
}

std::string Reconciler::refused() const {
  std::string out;
  for (const auto* informer : {pod_informer_.get(), ns_informer_.get()}) {
    if (informer == nullptr) continue;
    const auto why = informer->refused();
    if (!why.empty()) out += (out.empty() ? "" : "; ") + why;
  }
  return out;
}

void Reconciler::repair_drift() {
  for (const auto& p : d_.pods.all()) {
    d_.enroller.repair(p.uid());  // under the pod's lock, re-checked there
  }
  try {
    const auto report = d_.enroller.repair_probes();
    if (report.base_repaired || report.added || report.removed) {
      d_.metrics.count_repair("host_probe");
      d_.log->warn(
          "host probe SNAT had drifted (base repaired: {}, {} added, {} removed); repaired",
          report.base_repaired, report.added, report.removed);
    }
  } catch (const netns::NetnsError& e) {
    d_.log->error("host probe reconcile failed: {}", e.what());
    d_.metrics.count_degraded("probe_reconcile_failed");
  }
}

void Reconciler::housekeeping() {
  // Startup: both collections listed, then every pod on the node through one pass.
  while (running_ && !(ns_informer_->wait_synced(std::chrono::milliseconds(200)) &&
                       pod_informer_->wait_synced(std::chrono::milliseconds(200)))) {
  }
  std::vector<std::string> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [uid, pod] : pods_) all.push_back(uid);
  }
  for (const auto& p : d_.pods.all()) all.push_back(p.uid());  // enrolled, maybe gone
  for (const auto& uid : all) enqueue(uid);
  while (running_ && !startup_done_) {
    std::unique_lock lock(mu_);
    idle_cv_.wait_for(lock, std::chrono::milliseconds(20));
    // Retries waiting for their backoff do not hold readiness back.
    const bool only_retries =
        std::all_of(queue_.begin(), queue_.end(), [](const Item& i) { return i.attempt > 0; });
    if (only_retries && busy_.empty()) {
      startup_done_ = true;
      d_.log->info("startup reconcile done: {} pods enrolled", d_.pods.size());
    }
  }
  auto next = std::chrono::steady_clock::now() + o_.drift_interval;
  auto next_retry = std::chrono::steady_clock::now() + o_.pending_retry;
  while (running_) {
    {
      std::unique_lock lock(mu_);
      idle_cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      repair_drift();
      // What bursts of pods freed goes back to the system (glibc keeps freed heap otherwise).
      malloc_trim(0);
      next = std::chrono::steady_clock::now() + o_.drift_interval;
    } else if (now >= next_retry) {
      for (const auto& uid : d_.enroller.pending()) d_.enroller.repair(uid);
      // A release by DEL whose annotation patch failed leaves no event to react to: look.
      std::vector<std::string> stale;
      {
        std::lock_guard lock(mu_);
        for (const auto& [uid, pod] : pods_) {
          if (stale_annotation(pod) && !queued_.contains(uid) && !busy_.contains(uid)) {
            stale.push_back(uid);
          }
        }
      }
      for (const auto& uid : stale) {
        if (!d_.pods.get(uid)) enqueue(uid);
      }
      next_retry = std::chrono::steady_clock::now() + o_.pending_retry;
    }
  }
}

}  // namespace ambient::agent
