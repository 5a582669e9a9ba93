#include "agent/informer.h"

#include <spdlog/spdlog.h>

namespace ambient::agent {
namespace {

std::string rv_of(const nlohmann::json& o) {
  const auto m = o.find("metadata");
  if (m == o.end() || !m->is_object()) return {};
  return m->value("resourceVersion", "");
}

}  // namespace

Informer::Informer(Options options, ClientFactory make_client, Handler on_change,
                   std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      make_client_(std::move(make_client)),
      on_change_(std::move(on_change)),
      log_(std::move(log)) {}

Informer::~Informer() {
  stop();
}

std::string Informer::key_of(const nlohmann::json& o) {
  const auto& m = o.at("metadata");
  const auto ns = m.value("namespace", "");
  const auto name = m.value("name", "");
  return ns.empty() ? name : ns + "/" + name;
}

void Informer::start() {
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void Informer::stop() {
  stopping_ = true;
  if (!running_.exchange(false)) return;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Informer::wait_synced(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return synced_.load(); });
}

std::optional<nlohmann::json> Informer::get(const std::string& key) const {
  std::lock_guard lock(mu_);
  const auto it = store_.find(key);
  if (it == store_.end()) return std::nullopt;
  return it->second;
}

std::vector<nlohmann::json> Informer::items() const {
  std::lock_guard lock(mu_);
  std::vector<nlohmann::json> out;
  out.reserve(store_.size());
  for (const auto& [k, v] : store_) out.push_back(v);
  return out;
}

void Informer::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return !running_.load(); });
}

bool Informer::relist(kube::Client& client) {
  nlohmann::json list;
  try {
    list = client.list(options_.path);
  } catch (const kube::ApiError& e) {
    log_->warn("{}: list failed: {}", options_.name, e.what());
    if (options_.degraded) options_.degraded("api_list_failed");
    return false;
  }
  std::map<std::string, nlohmann::json> fresh;
  for (const auto& item : list["items"]) {
    if (item.is_object() && item.contains("metadata")) fresh[key_of(item)] = item;
  }
  std::vector<std::pair<std::string, std::optional<nlohmann::json>>> changes;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, v] : fresh) {
      const auto it = store_.find(k);
      if (it == store_.end() || rv_of(it->second) != rv_of(v)) changes.emplace_back(k, v);
    }
    for (const auto& [k, v] : store_) {
      if (!fresh.contains(k)) changes.emplace_back(k, std::nullopt);
    }
    store_ = std::move(fresh);
    resource_version_ = list["metadata"].value("resourceVersion", "");
  }
  for (const auto& [k, v] : changes) on_change_(k, v ? &*v : nullptr);
  if (!synced_.exchange(true)) {
    log_->info("{}: synced ({} objects)", options_.name, store_.size());
    cv_.notify_all();
  }
  return true;
}

void Informer::apply(const std::string& type, const nlohmann::json& object) {
  const auto key = key_of(object);
  {
    std::lock_guard lock(mu_);
    if (const auto rv = rv_of(object); !rv.empty()) resource_version_ = rv;
    if (type == "BOOKMARK") return;
    if (type == "DELETED") {
      store_.erase(key);
    } else {
      store_[key] = object;
    }
  }
  on_change_(key, type == "DELETED" ? nullptr : &object);
}

bool Informer::watch_once(kube::Client& client) {
  std::string rv;
  {
    std::lock_guard lock(mu_);
    rv = resource_version_;
  }
  const char sep = options_.path.find('?') == std::string::npos ? '?' : '&';
  const auto seconds = std::max<long long>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options_.watch_timeout).count());
  const std::string path = options_.path + sep +
                           "watch=1&allowWatchBookmarks=true&resourceVersion=" + rv +
                           "&timeoutSeconds=" + std::to_string(seconds);
  bool expired = false;
  client.watch(
      path,
      [&](const nlohmann::json& event) {
        const auto type = event.value("type", "");
        const auto& object = event.contains("object") ? event["object"] : nlohmann::json();
        if (type == "ERROR") {
          // 410 Gone: our resourceVersion was compacted away; anything else is also a reason
          // to start from a fresh list rather than guess.
          log_->info("{}: watch error {} ({}); relisting", options_.name, object.value("code", 0),
                     object.value("reason", ""));
          expired = true;
          return false;
        }
        if (!object.is_object() || !object.contains("metadata")) return true;
        apply(type, object);
        return running_.load();
      },
      options_.watch_timeout + std::chrono::seconds(2), &stopping_);
  return !expired;
}

void Informer::run() {
  auto backoff = std::chrono::milliseconds(100);
  std::unique_ptr<kube::Client> client;
  bool need_list = true;
  while (running_) {
    try {
      if (!client) client = make_client_();
      if (need_list) {
        if (!relist(*client))
          throw kube::ApiError(kube::ApiError::Kind::kUnreachable, 0, "list failed");
        need_list = false;
      }
      need_list = !watch_once(*client);
      backoff = std::chrono::milliseconds(100);
    } catch (const kube::ApiError& e) {
      if (e.kind() == kube::ApiError::Kind::kGone) {
        need_list = true;
        continue;
      }
      log_->warn("{}: watch interrupted: {}; retrying in {} ms", options_.name, e.what(),
                 backoff.count());
      if (options_.degraded) options_.degraded("api_watch_interrupted");
      client.reset();  // a fresh connection after a failure
      sleep_for(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
}

}  // namespace ambient::agent
