// A Kubernetes API server stand-in: real REST paths over TLS with bearer-token auth, so the
// production API client (and kubectl 1.32) talk to it exactly as to kube-apiserver.
//
// What it serves (all JSON, all behind authentication):
//   /version, /api (APIVersions), /apis (APIGroupList, no groups), /api/v1 (APIResourceList),
//   /healthz /livez /readyz;
//   GET/LIST/WATCH /api/v1/namespaces[/{name}], /api/v1/pods,
//   /api/v1/namespaces/{ns}/pods[/{name}[/status]] with labelSelector, fieldSelector, limit and
//   continue; watch=true streams newline-delimited events (chunked), honouring resourceVersion
//   (410 "Expired" ERROR event when compacted away), allowWatchBookmarks and timeoutSeconds;
//   PATCH of namespaces, pods and pods/{name}/status with application/merge-patch+json,
//   application/strategic-merge-patch+json (merge semantics: maps merge, `null` deletes, lists
//   are replaced — enough for metadata) and application/json-patch+json; a patch carrying
//   metadata.resourceVersion is a precondition (409 on mismatch); a no-op patch does not bump
//   the resourceVersion; pods/status keeps spec, the main resource keeps status, as the real
//   strategies do.
//   POST /api/v1/namespaces/{ns}/events (core/v1 Events, validated as kube-apiserver does:
//   namespace, name or generateName, involvedObject.namespace, 409 on a taken name) and
//   GET/LIST/WATCH of events (field selectors involvedObject.*, reason, source, type) and
//   configmaps; GET /api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/{path} relayed over plain
//   HTTP to the pod's status.podIP;
//   POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token (TokenRequest: expirationSeconds,
//   boundObjectRef to a Pod running as that service account, or to a Node added with add_node)
//   for service accounts added with add_service_account.
// Authentication: `Authorization: Bearer <token>` (the main token, or one a TokenRequest issued:
// expired, or bound to a pod or node that is gone, it is refused with 401) or a client certificate
// issued by this server's CA (issue_client_certificate). Authorization (auth.h): the main token
// and certificates may do everything; a service-account token only what grant() gave its user,
// else 403 with the RBAC authorizer's message. Errors are real-shaped `Status` objects.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/standins/apiserver/auth.h"

namespace ambient::testing {

// A fault applied to matching requests. `times` < 0 means every matching request.
// Faults apply before authentication, like a broken load balancer in front of the server; the
// first matching fault with times != 0 wins. A delay alone delays the normal answer.
struct ApiFault {
  std::string path_prefix;  // empty = every path
  int delay_ms = 0;         // delay before answering
  int status = 0;           // answer with this HTTP status and a Status object
  bool drop = false;        // close the connection without an answer
  bool bad_json = false;    // answer 200 with a body that is not JSON
  std::optional<std::string> body = std::nullopt;  // answer 200 with exactly this body
  std::string query_contains = "";  // only requests whose query holds this ("watch=1")
  int times = -1;
};

struct ApiRequest {
  std::string method;
  std::string path;
  std::string query;
  bool authorized = false;
  // who authenticated: "token", a client certificate's CN, a service account's user, or ""
  std::string user;
  std::string content_type;  // of the request body (PATCH)
  std::string body;
  int remote_port = 0;     // the client's TCP port: equal ports = one reused connection
  std::string user_agent;  // which of our programs asked (the plugin, the agent, …)
};

class ApiServerStandin {
 public:
  struct Options {
    std::string bind_address = "127.0.0.1";
    int port = 0;  // 0 = pick a free port
    std::string token = "test-token";
    // How often a watch with allowWatchBookmarks=true gets a BOOKMARK (send_bookmarks() sends
    // one at once).
    std::chrono::milliseconds bookmark_interval{std::chrono::seconds(60)};
    bool log_requests = false;  // one line per request on stderr
    // TokenRequests asking for longer get this lifetime (kube-apiserver's
    // --service-account-max-token-expiration); 0 = what was asked.
    std::int64_t max_token_seconds = 0;
    // false: the ServiceAccountTokenNodeBinding feature gate is off (Kubernetes < 1.31 default)
    // and a TokenRequest bound to a Node is refused with the API's 400.
    bool node_token_binding = true;
  };

  ApiServerStandin();
  explicit ApiServerStandin(Options options);
  ~ApiServerStandin();
  ApiServerStandin(const ApiServerStandin&) = delete;
  ApiServerStandin& operator=(const ApiServerStandin&) = delete;

  // Returns once it accepts connections. start() after stop() serves again on the same port
  // with the same objects, CA and history (a restarted API server behind a stable address).
  void start();
  // Closes every connection (open watches included) and returns once nothing is served.
  void stop();

  int port() const;
  std::string url() const;  // https://127.0.0.1:<port>
  const std::string& ca_pem() const;
  const std::string& token() const;
  // Rotation: from now on only `token` is accepted.
  void set_token(std::string token);

  // A kubeconfig for this server: CA data inline, bearer token inline or via tokenFile (which
  // is then written with the current token).
  void write_kubeconfig(const std::filesystem::path& path,
                        const std::filesystem::path& token_file = {}) const;

  struct ClientCertificate {
    std::string cert_pem;
    std::string key_pem;
  };
  // A client certificate signed by this server's CA; requests presenting it are authorized as
  // `user` (the certificate's CN).
  ClientCertificate issue_client_certificate(const std::string& user) const;

  // Service accounts and RBAC (auth.h). A TokenRequest needs its service account added; the
  // token's user (system:serviceaccount:{ns}:{name}) may then do what grant() gave it: `verbs`
  // on `resources` ("pods", "pods/status", "serviceaccounts/token") in namespace `ns` ("" =
  // everywhere), for `names` only when given.
  void add_service_account(const std::string& ns, const std::string& name);
  // Nodes exist here only as what a TokenRequest can be bound to.
  void add_node(const std::string& name, const std::string& uid);
  void remove_node(const std::string& name);
  void grant(const std::string& user, std::vector<std::string> verbs,
             std::vector<std::string> resources, std::string ns = "",
             std::vector<std::string> names = {});
  std::vector<ServiceAccountToken> issued_tokens() const;
  void expire_issued_tokens();  // every token issued so far is refused from now on

  // Objects (Namespace, Pod, Event or ConfigMap). put() fills uid, resourceVersion and
  // creationTimestamp when missing and notifies watchers.
  void put(nlohmann::json object);
  // An atomic read-modify-write of a stored object, as a PATCH would be (identity fields kept;
  // a no-op changes nothing); false when there is no such object. `change` must not call back.
  bool update(std::string_view kind, std::string_view ns, std::string_view name,
              const std::function<void(nlohmann::json&)>& change);
  void remove_object(std::string_view kind, std::string_view ns, std::string_view name);
  std::optional<nlohmann::json> get_object(std::string_view kind, std::string_view ns,
                                           std::string_view name) const;
  // Every object of a kind, in key order.
  std::vector<nlohmann::json> list_objects(std::string_view kind) const;
  // put() for each object of a JSON array or a List ({"items": [...]}); throws
  // std::invalid_argument for anything else.
  void load_objects(const nlohmann::json& objects);
  // The newest resourceVersion handed out.
  std::string resource_version() const;

  void add_fault(ApiFault fault);
  void clear_faults();

  std::vector<ApiRequest> requests() const;
  void clear_requests();

  // Connection accounting: TLS handshakes completed since construction (a client that reuses
  // its connection adds none), and how many connections / watch streams are open now.
  int tls_connections() const;
  int open_connections() const;
  int open_watches() const;

  // Watch robustness controls.
  void drop_watches();      // hard-closes every open watch stream (no final chunk)
  void drop_connections();  // hard-closes every open connection, idle keep-alives included
  // Forgets the event history: a watch from any resourceVersion older than now gets a single
  // ERROR event with a 410 Status (reason Expired), as after etcd compaction.
  void compact_history();
  void send_bookmarks();  // a BOOKMARK now on every watch that allows them

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::testing
