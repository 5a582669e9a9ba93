#include "agent/metrics.h"

#include <sstream>

namespace ambient::agent {

void Metrics::count_request(const std::string& op, const std::string& result) {
  std::lock_guard g(mu_);
  ++requests_[{op, result}];
}

void Metrics::count_repair(const std::string& what) {
  std::lock_guard g(mu_);
  ++repairs_[what];
}

void Metrics::count_degraded(const std::string& what) {
  std::lock_guard g(mu_);
  ++degraded_[what];
}

void Metrics::count_event(const std::string& reason, const std::string& result, std::uint64_t n) {
  std::lock_guard g(mu_);
  events_[{reason, result}] += n;
}

void Metrics::observe_add_latency(std::chrono::duration<double> seconds) {
  std::lock_guard g(mu_);
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds.count() <= kBuckets[i]) ++bucket_counts_[i];
  }
  ++latency_count_;
  latency_sum_ += seconds.count();
}

std::string Metrics::render() const {
  std::ostringstream o;
  std::lock_guard g(mu_);
  o << "# HELP ambient_cni_requests_total Plugin requests handled by the node agent.\n"
    << "# TYPE ambient_cni_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    o << "ambient_cni_requests_total{op=\"" << key.first << "\",result=\"" << key.second << "\"} "
      << n << '\n';
  }
  o << "# HELP ambient_cni_repairs_total Drift found and repaired by the agent.\n"
    << "# TYPE ambient_cni_repairs_total counter\n";
  for (const auto& [what, n] : repairs_) {
    o << "ambient_cni_repairs_total{what=\"" << what << "\"} " << n << '\n';
  }
  o << "# HELP ambient_cni_degraded_total Environmental failures the agent handled, by kind.\n"
    << "# TYPE ambient_cni_degraded_total counter\n";
  for (const auto& [what, n] : degraded_) {
    o << "ambient_cni_degraded_total{what=\"" << what << "\"} " << n << '\n';
  }
  o << "# HELP ambient_cni_events_total Kubernetes Events about pods, by reason and result.\n"
    << "# TYPE ambient_cni_events_total counter\n";
  for (const auto& [key, n] : events_) {
    o << "ambient_cni_events_total{reason=\"" << key.first << "\",result=\"" << key.second << "\"} "
      << n << '\n';
  }
  o << "# HELP ambient_cni_enrolled_pods Pods enrolled in ambient on this node.\n"
    << "# TYPE ambient_cni_enrolled_pods gauge\n"
    << "ambient_cni_enrolled_pods " << enrolled_.load() << '\n'
    << "# HELP ambient_cni_ztunnel_connections Connected ztunnels.\n"
    << "# TYPE ambient_cni_ztunnel_connections gauge\n"
    << "ambient_cni_ztunnel_connections " << ztunnels_.load() << '\n'
    << "# HELP ambient_cni_add_duration_seconds Enrolment of a pod by the agent, rules to ztunnel "
       "ack.\n"
    << "# TYPE ambient_cni_add_duration_seconds histogram\n";
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    o << "ambient_cni_add_duration_seconds_bucket{le=\"" << kBuckets[i] << "\"} "
      << bucket_counts_[i] << '\n';
  }
  o << "ambient_cni_add_duration_seconds_bucket{le=\"+Inf\"} " << latency_count_ << '\n'
    << "ambient_cni_add_duration_seconds_sum " << latency_sum_ << '\n'
    << "ambient_cni_add_duration_seconds_count " << latency_count_ << '\n';
  return o.str();
}

}  // namespace ambient::agent
