#include "agent/pod_table.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/errors.h"

namespace ambient::agent {
namespace {

namespace fs = std::filesystem;

nlohmann::json to_json(const EnrolledPod& p) {
  config::AgentRequest r;  // the same shape the plugin sends: one format to read
  r.op = "add";
  r.pod = p.record;
  r.service_account = p.service_account;
  r.redirect = p.redirect;
  return config::to_json(r);
}

}  // namespace

PodTable::PodTable(std::string run_dir) : dir_(config::run_dir::enrolled_dir(run_dir)) {}

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
  std::error_code ec;
  fs::create_directories(dir_, ec);
  const fs::path path = fs::path(dir_) / (pod.record.uid + ".json");
  const auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json(pod).dump();
  }
  fs::rename(tmp, path, ec);
  std::lock_guard g(mu_);
  pods_[pod.record.uid] = std::move(pod);
}

void PodTable::erase(const std::string& uid) {
  std::error_code ec;
  fs::remove(fs::path(dir_) / (uid + ".json"), ec);
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
    if (p.record.container_id == container_id) return p;
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

std::vector<EnrolledPod> PodTable::load_persisted(std::vector<std::string>& errors) const {
  std::vector<EnrolledPod> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const auto j = nlohmann::json::parse(in, nullptr, false);
    try {
      const auto r = config::agent_request_from_json(j);
      if (r.pod.uid.empty())
        throw config::ConfigError(config::ConfigError::Kind::kDecode, "uid", "no uid");
      out.push_back({r.pod, r.service_account, r.redirect, nullptr});
    } catch (const config::ConfigError& e) {
      errors.push_back(entry.path().string() + ": " + e.what());
    }
  }
  return out;
}

}  // namespace ambient::agent
