#include "agent/kube_access.h"

#include "config/constants.h"

namespace ambient::agent {
namespace {

std::string status_path(const std::string& ns, const std::string& name) {
  return "/api/v1/namespaces/" + ns + "/pods/" + name + "/status";
}

nlohmann::json annotation_patch(const std::string& uid, nlohmann::json value) {
  nlohmann::json patch = {
      {"metadata",
       {{"annotations", {{std::string(contract::kRedirectionAnnotation), std::move(value)}}}}}};
  if (!uid.empty()) patch["metadata"]["uid"] = uid;  // a precondition: uid is immutable
  return patch;
}

}  // namespace

ApiPool::ApiPool(kube::Kubeconfig config, kube::ClientOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}

std::unique_ptr<kube::Client> ApiPool::acquire() {
  {
    std::unique_lock g(mu_);
    free_.wait(g, [this] { return in_use_ < kMaxClients; });
    ++in_use_;
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  try {
    return std::make_unique<kube::Client>(config_, options_);
  } catch (...) {
    std::lock_guard g(mu_);
    --in_use_;
    free_.notify_one();
    throw;
  }
}

void ApiPool::release(std::unique_ptr<kube::Client> c) {
  std::lock_guard g(mu_);
  --in_use_;
  if (c) idle_.push_back(std::move(c));
  free_.notify_one();
}

void StatusAnnotator::set(const std::string& ns, const std::string& name, const std::string& uid,
                          std::string_view value) {
  api_.with([&](kube::Client& c) {
    return c.patch(status_path(ns, name), annotation_patch(uid, std::string(value)),
                   "application/merge-patch+json");
  });
}

void StatusAnnotator::clear(const std::string& ns, const std::string& name,
                            const std::string& uid) {
  try {
    api_.with([&](kube::Client& c) {
      return c.patch(status_path(ns, name), annotation_patch(uid, nullptr),
                     "application/merge-patch+json");
    });
  } catch (const kube::ApiError& e) {
    // Gone, or replaced by a pod of the same name (422: uid is immutable): nothing of ours.
    if (e.kind() != kube::ApiError::Kind::kNotFound && e.http_status() != 422) throw;
  }
}

}  // namespace ambient::agent
