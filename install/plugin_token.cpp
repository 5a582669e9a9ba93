#include "install/plugin_token.h"

#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "install/errors.h"

namespace ambient::install {
namespace {

using Clock = TokenRequester::Clock;

// RFC 3339 in UTC as the API writes it ("2026-12-01T23:00:00Z"); nullopt for anything else.
std::optional<Clock::time_point> parse_utc(const std::string& text) {
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  if (*end == '.') {  // fractional seconds: ignored
    ++end;
    while (*end >= '0' && *end <= '9') ++end;
  }
  if (std::string_view(end) != "Z") return std::nullopt;
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return Clock::from_time_t(t);
}

}  // namespace

TokenRequester::TokenRequester(TokenRequestOptions options, ClientFactory client,
                               std::shared_ptr<spdlog::logger> log,
                               std::function<Clock::time_point()> now)
    : options_(std::move(options)),
      client_factory_(std::move(client)),
      log_(std::move(log)),
      now_(now ? std::move(now) : [] { return Clock::now(); }) {
  if (options_.namespace_name.empty() || options_.service_account.empty()) {
    throw InstallError("plugin token: the plugin's service account needs a namespace and a name");
  }
  if (options_.lifetime < kMinTokenLifetime) {
    throw InstallError(fmt::format(
        "plugin token: lifetime {} s is shorter than the {} s the Kubernetes API accepts",
        options_.lifetime.count(), kMinTokenLifetime.count()));
  }
}

std::string TokenRequester::token() {
  std::lock_guard lock(mu_);
  const auto now = now_();
  if (!token_.empty() && now < renew_at_) return token_;

  const std::string who = options_.namespace_name + "/" + options_.service_account;
  const std::string path = fmt::format("/api/v1/namespaces/{}/serviceaccounts/{}/token",
                                       options_.namespace_name, options_.service_account);
  const auto ask = [&](bool bound) {
    nlohmann::json spec = {{"expirationSeconds", options_.lifetime.count()}};
    if (bound) {
      spec["boundObjectRef"] = {
          {"apiVersion", "v1"}, {"kind", "Node"}, {"name", options_.bound_node}};
    }
    ++requests_;
    if (!client_) client_.emplace(client_factory_());
    return client_->create(
        path,
        {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenRequest"}, {"spec", spec}});
  };
  try {
    bool bound = !options_.bound_node.empty() && !node_binding_refused_;
    nlohmann::json answer;
    try {
      answer = ask(bound);
    } catch (const kube::ApiError& e) {
      // "cannot bind token to a Node object as the "ServiceAccountTokenNodeBinding" feature-gate
      // is disabled": an older or restricted API server. Anything else is a real refusal.
      if (!bound || e.http_status() != 400 ||
          std::string_view(e.what()).find("feature-gate") == std::string_view::npos) {
        throw;
      }
      log_->warn(
          "plugin token: this API server cannot bind tokens to nodes ({}); the plugin's tokens "
          "are unbound, valid for their lifetime only",
          e.what());
      node_binding_refused_ = true;
      bound = false;
      answer = ask(false);
    }
    const auto* status =
        answer.contains("status") && answer["status"].is_object() ? &answer["status"] : nullptr;
    if (status == nullptr || !status->contains("token") || !(*status)["token"].is_string() ||
        (*status)["token"].get<std::string>().empty()) {
      throw InstallError("the answer holds no status.token");
    }
    const auto expires =
        status->contains("expirationTimestamp") && (*status)["expirationTimestamp"].is_string()
            ? parse_utc((*status)["expirationTimestamp"].get<std::string>())
            : std::nullopt;
    if (!expires || *expires <= now) {
      throw InstallError("the answer's status.expirationTimestamp is missing or in the past");
    }
    token_ = (*status)["token"].get<std::string>();
    expires_ = *expires;
    renew_at_ = now + std::chrono::duration_cast<Clock::duration>((expires_ - now) * kTokenRenewAt);
    log_->info(
        "plugin token: requested for serviceaccount {} ({}), valid for {} s, renewed in {} s", who,
        bound ? "bound to node " + options_.bound_node : std::string("unbound"),
        std::chrono::duration_cast<std::chrono::seconds>(expires_ - now).count(),
        std::chrono::duration_cast<std::chrono::seconds>(renew_at_ - now).count());
    return token_;
  } catch (const std::exception& e) {
    client_.reset();  // a broken connection or changed credentials: a fresh client next time
    const std::string why =
        fmt::format("TokenRequest for serviceaccount {} failed: {}", who, e.what());
    const bool keep = !token_.empty() && now < expires_;
    if (options_.degraded) {
      options_.degraded(keep ? "plugin_token_renewal_failed" : "plugin_token_unavailable");
    }
    if (keep) {
      log_->warn("plugin token: {}; keeping the current token (expires in {} s)", why,
                 std::chrono::duration_cast<std::chrono::seconds>(expires_ - now).count());
      return token_;
    }
    throw InstallError("plugin token: " + why);
  }
}

std::optional<Clock::time_point> TokenRequester::renew_at() const {
  std::lock_guard lock(mu_);
  if (token_.empty()) return std::nullopt;
  return renew_at_;
}

std::uint64_t TokenRequester::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

}  // namespace ambient::install
