#include "agent/pod_table.h"

namespace ambient::agent {

std::unique_lock<std::mutex> PodTable::lock_pod(const std::string& uid) {
  std::shared_ptr<std::mutex> m;
  {
    std::lock_guard g(locks_mu_);
    auto& slot = locks_[uid];
    if (!slot) slot = std::make_shared<std::mutex>();
    m = slot;
  }
  // The map keeps the mutex alive; pods are few hundred per node, so entries are not reaped.
  return std::unique_lock<std::mutex>(*m);
}

void PodTable::put(EnrolledPod pod) {
  dir_.write_enrolled(pod.enrolment);
  std::lock_guard g(mu_);
  pods_[pod.uid()] = std::move(pod);
}

void PodTable::adopt(EnrolledPod pod) {
  std::lock_guard g(mu_);
  pods_[pod.uid()] = std::move(pod);
}

void PodTable::erase(const std::string& uid) {
  dir_.remove_enrolled(uid);
  std::lock_guard g(mu_);
  pods_.erase(uid);
}

std::optional<EnrolledPod> PodTable::get(const std::string& uid) const {
  std::lock_guard g(mu_);
  const auto it = pods_.find(uid);
  if (it == pods_.end()) return std::nullopt;
  return it->second;
}

std::optional<EnrolledPod> PodTable::find_by_container(const std::string& container_id) const {
  std::lock_guard g(mu_);
  for (const auto& [uid, p] : pods_) {
    if (p.pod().container_id == container_id) return p;
  }
  return std::nullopt;
}

std::vector<EnrolledPod> PodTable::all() const {
  std::lock_guard g(mu_);
  std::vector<EnrolledPod> out;
  out.reserve(pods_.size());
  for (const auto& [uid, p] : pods_) out.push_back(p);
  return out;
}

std::size_t PodTable::size() const {
  std::lock_guard g(mu_);
  return pods_.size();
}

}  // namespace ambient::agent
