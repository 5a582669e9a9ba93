// The plugin's own credentials (issue 11, item 15). The plugin only reads pods and namespaces, so
// its kubeconfig must not carry the node agent's token (which may patch pods/status and request
// tokens). The node agent asks the API for a short-lived token of a dedicated service account
// (TokenRequest, POST serviceaccounts/{name}/token) whose RBAC is get pods and namespaces, bound
// to this node's Node object, and renews it before it expires. (Not to the agent's pod: the API
// binds a token to a pod only for the service account that pod runs as — found on a real
// kube-apiserver, decision 013.)
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "kube/client.h"

namespace ambient::install {

// Where the token written into the plugin's kubeconfig comes from; empty = the node component's
// own service-account token (read from its service-account directory).
using PluginTokenSource = std::function<std::string()>;

struct TokenRequestOptions {
  std::string namespace_name;   // of the plugin's service account (the DaemonSet's namespace)
  std::string service_account;  // e.g. ambient-cni-plugin
  // Asked for as expirationSeconds; the API server may shorten it (never below 10 minutes).
  std::chrono::seconds lifetime{3600};
  // The Node the token is bound to (NODE_NAME): it is invalid once the node object is gone.
  // Empty = an unbound token. An API server that cannot bind to nodes (the
  // ServiceAccountTokenNodeBinding feature, on by default since Kubernetes 1.31, turned off) is
  // asked for an unbound token instead, with a warning.
  std::string bound_node;
  // Told "plugin_token_renewal_failed" (a valid token kept) or "plugin_token_unavailable" (none):
  // the agent counts these as degraded modes.
  std::function<void(const std::string&)> degraded;
};

// Renewed once this share of the lifetime the server granted has passed (kubelet renews projected
// tokens at 80 % too), so a failed renewal has a fifth of the lifetime to succeed.
inline constexpr double kTokenRenewAt = 0.8;
// The shortest lifetime the Kubernetes API accepts in a TokenRequest.
inline constexpr std::chrono::seconds kMinTokenLifetime{600};

class TokenRequester {
 public:
  using Clock = std::chrono::system_clock;
  using ClientFactory = std::function<kube::Client()>;

  // Throws InstallError for options the API would refuse (no name, lifetime < 10 minutes). No API
  // call happens before the first token().
  TokenRequester(TokenRequestOptions options, ClientFactory client,
                 std::shared_ptr<spdlog::logger> log, std::function<Clock::time_point()> now = {});

  // The current token: the cached one until kTokenRenewAt of its lifetime has passed, else a new
  // one from the API. A renewal that fails while the cached token is still valid keeps it (logged;
  // retried on the next call); with no valid token the failure is an InstallError naming the
  // service account and the API's answer. Thread-safe. Never logs the token.
  std::string token();

  // When the cached token will be renewed (nullopt before the first token()).
  std::optional<Clock::time_point> renew_at() const;
  std::uint64_t requests() const;  // TokenRequests made (successful or not)

 private:
  TokenRequestOptions options_;
  ClientFactory client_factory_;
  std::shared_ptr<spdlog::logger> log_;
  std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  std::optional<kube::Client> client_;
  std::string token_;
  Clock::time_point expires_{};
  Clock::time_point renew_at_{};
  std::uint64_t requests_ = 0;
  bool node_binding_refused_ = false;  // the API cannot bind to nodes: unbound from then on
};

}  // namespace ambient::install
