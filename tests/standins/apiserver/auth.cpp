#include "tests/standins/apiserver/auth.h"

#include <cstdio>
#include <random>

namespace ambient::testing {

std::string RequestAttributes::resource_text() const {
  return subresource.empty() ? resource : resource + "/" + subresource;
}

std::optional<RequestAttributes> request_attributes(const std::string& method,
                                                    const std::vector<std::string>& parts,
                                                    bool watch) {
  if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") return std::nullopt;
  RequestAttributes a;
  // /api/v1/{resource}[/{name}] or /api/v1/namespaces/{ns}/{resource}[/{name}[/{sub}]]
  std::vector<std::string> rest(parts.begin() + 2, parts.end());
  if (rest.size() >= 3 && rest[0] == "namespaces") {
    a.ns = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
  } else if (rest[0] == "namespaces" && rest.size() == 2) {
    a.name = rest[1];  // a Namespace is cluster-scoped: its own name, no namespace
    rest.resize(1);
  }
  a.resource = rest[0];
  if (rest.size() >= 2) a.name = rest[1];
  if (rest.size() >= 3) a.subresource = rest[2];
  if (method == "GET" || method == "HEAD") {
    a.verb = watch ? "watch" : (a.name.empty() ? "list" : "get");
  } else if (method == "POST") {
    a.verb = "create";
  } else if (method == "PATCH") {
    a.verb = "patch";
  } else if (method == "PUT") {
    a.verb = "update";
  } else if (method == "DELETE") {
    a.verb = a.name.empty() ? "deletecollection" : "delete";
  } else {
    a.verb = method;
  }
  return a;
}

std::string forbidden_message(const std::string& user, const RequestAttributes& a) {
  std::string what = a.resource_text();
  if (!a.name.empty()) what = a.resource + " \"" + a.name + "\"";
  std::string message = what + " is forbidden: User \"" + user + "\" cannot " + a.verb +
                        " resource \"" + a.resource_text() + "\" in API group \"\"";
  message += a.ns.empty() ? " at the cluster scope" : " in the namespace \"" + a.ns + "\"";
  return message;
}

void TokenAuthority::add_service_account(const std::string& ns, const std::string& name) {
  service_accounts_.emplace(ns, name);
}

bool TokenAuthority::has_service_account(const std::string& ns, const std::string& name) const {
  return service_accounts_.contains({ns, name});
}

const ServiceAccountToken& TokenAuthority::issue(ServiceAccountToken token) {
  static std::mt19937_64 rng{std::random_device{}()};
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "sa.%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  token.token = buffer;
  token.user = "system:serviceaccount:" + token.ns + ":" + token.service_account;
  const std::string key = token.token;
  return tokens_.emplace(key, std::move(token)).first->second;
}

const ServiceAccountToken* TokenAuthority::find(const std::string& token) const {
  const auto it = tokens_.find(token);
  return it == tokens_.end() ? nullptr : &it->second;
}

std::vector<ServiceAccountToken> TokenAuthority::issued() const {
  std::vector<ServiceAccountToken> out;
  for (const auto& [key, token] : tokens_) out.push_back(token);
  return out;
}

void TokenAuthority::expire_all(std::chrono::system_clock::time_point now) {
  for (auto& [key, token] : tokens_) {
    if (token.expires > now) token.expires = now;
  }
}

bool TokenAuthority::is_service_account_user(const std::string& user) const {
  for (const auto& [key, token] : tokens_) {
    if (token.user == user) return true;
  }
  return false;
}

void Rbac::grant(const std::string& user, Rule rule) {
  rules_.emplace(user, std::move(rule));
}

bool Rbac::allows(const std::string& user, const RequestAttributes& a) const {
  const auto [first, last] = rules_.equal_range(user);
  for (auto it = first; it != last; ++it) {
    const Rule& r = it->second;
    if (!r.verbs.contains(a.verb) && !r.verbs.contains("*")) continue;
    if (!r.resources.contains(a.resource_text())) continue;
    if (!r.ns.empty() && r.ns != a.ns) continue;
    if (!r.resource_names.empty() && !r.resource_names.contains(a.name)) continue;
    return true;
  }
  return false;
}

}  // namespace ambient::testing
