#include "agent/informer.h"

#include <spdlog/spdlog.h>

namespace ambient::agent {
namespace {

// A string field, or "" for anything else (absent, null, a number, an object): what the API
// sends is never trusted to have the types it should.
std::string text_of(const nlohmann::json& o, const char* key) {
  if (!o.is_object()) return {};
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const nlohmann::json& metadata_of(const nlohmann::json& o) {
  static const nlohmann::json none = nlohmann::json::object();
  if (!o.is_object()) return none;
  const auto m = o.find("metadata");
  return m != o.end() && m->is_object() ? *m : none;
}

std::string rv_of(const nlohmann::json& o) {
  return text_of(metadata_of(o), "resourceVersion");
}

// An object the store can hold: metadata with a string name.
bool keyable(const nlohmann::json& o) {
  return !text_of(metadata_of(o), "name").empty();
}

}  // namespace

WatchEvent classify_watch_event(const nlohmann::json& event) {
  WatchEvent e;
  e.type = text_of(event, "type");
  static const nlohmann::json none;
  const auto it = event.is_object() ? event.find("object") : event.end();
  const auto& object = event.is_object() && it != event.end() ? *it : none;
  if (e.type == "ERROR") {
    const auto code =
        object.is_object() && object.contains("code") && object["code"].is_number_integer()
            ? object["code"].get<int>()
            : 0;
    e.action = WatchEvent::Action::kRelist;
    e.why = "watch error " + std::to_string(code) + " (" + text_of(object, "reason") + ")";
    return e;
  }
  if (e.type != "ADDED" && e.type != "MODIFIED" && e.type != "DELETED" && e.type != "BOOKMARK") {
    e.why = "unknown type '" + e.type + "'";
    return e;
  }
  if (e.type == "BOOKMARK") {
    if (!object.is_object()) {
      e.why = "a BOOKMARK without an object";
      return e;
    }
    e.action = WatchEvent::Action::kApply;
    return e;
  }
  if (!keyable(object)) {
    e.why = "a " + e.type + " event without metadata.name";
    return e;
  }
  e.key = Informer::key_of(object);
  e.action = WatchEvent::Action::kApply;
  return e;
}

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
  const auto& m = metadata_of(o);
  const auto ns = text_of(m, "namespace");
  const auto name = text_of(m, "name");
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

std::string Informer::refused() const {
  std::lock_guard lock(mu_);
  return refused_;
}

void Informer::note_refusal(const kube::ApiError& e) {
  if (e.kind() != kube::ApiError::Kind::kForbidden &&
      e.kind() != kube::ApiError::Kind::kUnauthorized) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    refused_ = e.what();
  }
  log_->error("{}: the API refuses the node agent: {} (check the ClusterRole ambient-cni-node)",
              options_.name, e.what());
  if (options_.degraded) options_.degraded("api_refused");
}

void Informer::clear_refusal() {
  std::lock_guard lock(mu_);
  refused_.clear();
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
    note_refusal(e);
    return false;
  }
  clear_refusal();
  std::map<std::string, nlohmann::json> fresh;
  std::size_t skipped = 0;
  for (const auto& item : list["items"]) {
    if (keyable(item)) {
      fresh[key_of(item)] = item;
    } else {
      ++skipped;
    }
  }
  if (skipped > 0) {
    log_->warn("{}: list held {} object(s) without metadata.name; skipped", options_.name, skipped);
    if (options_.degraded) options_.degraded("malformed_api_object");
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
    resource_version_ = rv_of(list);
  }
  for (const auto& [k, v] : changes) on_change_(k, v ? &*v : nullptr);
  if (options_.on_list) options_.on_list();
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
        const auto e = classify_watch_event(event);
        if (e.action == WatchEvent::Action::kRelist) {
          // 410 Gone: our resourceVersion was compacted away; anything else (even an ERROR with
          // no Status at all) is also a reason to start from a fresh list rather than guess.
          log_->info("{}: {}; relisting", options_.name, e.why);
          expired = true;
          return false;
        }
        if (e.action == WatchEvent::Action::kSkip) {
          log_->warn("{}: skipping a watch event: {}", options_.name, e.why);
          if (options_.degraded) options_.degraded("malformed_api_object");
          return true;
        }
        clear_refusal();  // the watch is served
        const auto& object = event["object"];
        apply(e.type, object);
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
      note_refusal(e);
      if (options_.degraded) options_.degraded("api_watch_interrupted");
      client.reset();  // a fresh connection after a failure
      sleep_for(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
    } catch (const std::exception& e) {
      // Data the API should never send (what the checks above did not foresee): the agent must
      // not exit over it. Start over from a fresh list.
      log_->warn("{}: malformed data from the API: {}; relisting in {} ms", options_.name, e.what(),
                 backoff.count());
      if (options_.degraded) options_.degraded("malformed_api_object");
      need_list = true;
      client.reset();
      sleep_for(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
}

}  // namespace ambient::agent
