// Service-account tokens and RBAC in the API stand-in, as kube-apiserver has them: the
// TokenRequest subresource (POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token) mints
// tokens for `system:serviceaccount:{ns}:{name}` that expire and, when bound to a pod, die with
// it; requests with such a token pass an RBAC check of (verb, resource[/subresource], namespace)
// against what the test granted that user. The stand-in's main token and client certificates
// stay unrestricted (system:masters). All of it is used under the stand-in's lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ambient::testing {

// What a request asks to do, as kube-apiserver's RequestInfo names it.
struct RequestAttributes {
  std::string verb;                   // get, list, watch, patch, create
  std::string resource;               // pods, namespaces, serviceaccounts
  std::string subresource;            // status, token; "" for the resource itself
  std::string ns;                     // "" = cluster scope
  std::string name;                   // "" = a collection
  std::string resource_text() const;  // "pods/status"
};

// The attributes of a request to a path split at '/' (["api","v1","namespaces","demo","pods"]);
// nullopt for non-resource paths (discovery, health), which every authenticated user may read.
std::optional<RequestAttributes> request_attributes(const std::string& method,
                                                    const std::vector<std::string>& parts,
                                                    bool watch);

// The Status message kube-apiserver's RBAC authorizer gives for a refused request.
std::string forbidden_message(const std::string& user, const RequestAttributes& a);

struct ServiceAccountToken {
  std::string token;
  std::string user;  // system:serviceaccount:{ns}:{name}
  std::string ns;
  std::string service_account;
  std::int64_t expiration_seconds = 0;  // as granted
  std::chrono::system_clock::time_point expires;
  // boundObjectRef as the API recorded it: kind "Pod" or "Node" ("" = unbound), and the uid it
  // had when the token was issued (the token dies with that object).
  std::string bound_kind;
  std::string bound_name;
  std::string bound_uid;
};

class TokenAuthority {
 public:
  void add_service_account(const std::string& ns, const std::string& name);
  bool has_service_account(const std::string& ns, const std::string& name) const;
  const ServiceAccountToken& issue(ServiceAccountToken token);  // fills token and user
  const ServiceAccountToken* find(const std::string& token) const;
  std::vector<ServiceAccountToken> issued() const;
  void expire_all(std::chrono::system_clock::time_point now);
  // Users that hold an issued token: these, and only these, are checked by Rbac.
  bool is_service_account_user(const std::string& user) const;

 private:
  std::set<std::pair<std::string, std::string>> service_accounts_;
  std::map<std::string, ServiceAccountToken> tokens_;
};

// Grants per user: a verb on a resource ("pods", "pods/status", "serviceaccounts/token"), in
// every namespace (a ClusterRoleBinding) or in one (a RoleBinding). Optionally only for some
// object names (resourceNames).
class Rbac {
 public:
  struct Rule {
    std::set<std::string> verbs;
    std::set<std::string> resources;
    std::string ns;                        // "" = every namespace and cluster-scoped objects
    std::set<std::string> resource_names;  // empty = any name
  };
  void grant(const std::string& user, Rule rule);
  bool allows(const std::string& user, const RequestAttributes& a) const;

 private:
  std::multimap<std::string, Rule> rules_;
};

}  // namespace ambient::testing
