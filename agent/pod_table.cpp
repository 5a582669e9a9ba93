#include "agent/pod_table.h"

namespace ambient::agent {

PodTable::PodLock::PodLock(PodTable& table, std::string uid) : table_(table), uid_(std::move(uid)) {
  Slot* slot = nullptr;
  {
    std::lock_guard g(table_.locks_mu_);
    auto& s = table_.locks_[uid_];
    if (!s) s = std::make_unique<Slot>();
    ++s->users;  // the slot stays while anyone holds or waits for it
    slot = s.get();
  }
  slot->m.lock();
}

PodTable::PodLock::~PodLock() {
  std::lock_guard g(table_.locks_mu_);
  const auto it = table_.locks_.find(uid_);
  it->second->m.unlock();
  if (--it->second->users == 0) table_.locks_.erase(it);
}

std::size_t PodTable::lock_slots() const {
  std::lock_guard g(locks_mu_);
  return locks_.size();
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

void PodTable::mark_releasing(const std::string& uid) {
  std::lock_guard g(mu_);
  if (const auto it = pods_.find(uid); it != pods_.end()) it->second.releasing = true;
}

void PodTable::mark_enrolled(const std::string& uid) {
  std::lock_guard g(mu_);
  if (const auto it = pods_.find(uid); it != pods_.end()) it->second.enrolling = false;
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
