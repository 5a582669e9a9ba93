// The agent's Prometheus metrics (text exposition format 0.0.4).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace ambient::agent {

class Metrics {
 public:
  void count_request(const std::string& op, const std::string& result);
  void count_repair(const std::string& what);
  // An environmental failure the agent handled (docs/decisions/010-error-policy.md names each).
  void count_degraded(const std::string& what);
  // Kubernetes Events on pods (agent/pod_events.h): result "posted" (one Event object),
  // "aggregated" (occurrences folded into a posted one), "failed".
  void count_event(const std::string& reason, const std::string& result, std::uint64_t n = 1);
  void observe_add_latency(std::chrono::duration<double> seconds);
  void set_enrolled_pods(std::size_t n) { enrolled_ = n; }
  void set_ztunnel_connections(std::size_t n) { ztunnels_ = n; }

  std::string render() const;

 private:
  static constexpr std::array<double, 10> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,  0.1,    0.25,  1,    5};
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> requests_;
  std::map<std::string, std::uint64_t> repairs_;
  std::map<std::string, std::uint64_t> degraded_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> events_;
  std::array<std::uint64_t, kBuckets.size()> bucket_counts_{};
  std::uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
  std::atomic<std::size_t> enrolled_{0};
  std::atomic<std::size_t> ztunnels_{0};
};

}  // namespace ambient::agent
