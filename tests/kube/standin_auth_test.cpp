// The API stand-in's TokenRequest and RBAC (auth.h), which the plugin-token tests rely on: what
// a service-account token may do, and when kube-apiserver would refuse it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::kube {
namespace {

using nlohmann::json;
using testing::ApiServerStandin;

constexpr const char* kUser = "system:serviceaccount:istio-system:reader";
constexpr const char* kTokenPath = "/api/v1/namespaces/istio-system/serviceaccounts/reader/token";

class StandinAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    api_.add_service_account("istio-system", "reader");
    api_.put({{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
    api_.put({{"kind", "Pod"}, {"metadata", {{"name", "web"}, {"namespace", "demo"}}}});
    api_.put({{"kind", "Pod"},
              {"metadata", {{"name", "me"}, {"namespace", "istio-system"}, {"uid", "uid-me"}}},
              {"spec", {{"serviceAccountName", "reader"}}}});
    api_.grant(kUser, {"get"}, {"pods"}, "demo");
    api_.start();
  }
  Kubeconfig config(const std::string& token) const {
    Kubeconfig k;
    k.server = api_.url();
    k.ca_pem = api_.ca_pem();
    k.token = token;
    return k;
  }
  static ClientOptions once() {
    ClientOptions o;
    o.deadline = std::chrono::milliseconds(1000);
    o.initial_backoff = std::chrono::milliseconds(10);
    return o;
  }
  json request_token(json spec) {
    Client admin(config(api_.token()), once());
    return admin.create(kTokenPath, {{"apiVersion", "authentication.k8s.io/v1"},
                                     {"kind", "TokenRequest"},
                                     {"spec", std::move(spec)}});
  }
  template <typename Fn>
  static std::pair<long, std::string> error_of(Fn&& fn) {
    try {
      fn();
    } catch (const ApiError& e) {
      return {e.http_status(), e.what()};
    }
    return {0, ""};
  }

  ApiServerStandin api_;
};

TEST_F(StandinAuth, AnIssuedTokenMayDoWhatItsUserWasGrantedAndNothingElse) {
  const auto answer = request_token({{"expirationSeconds", 3600}});
  EXPECT_EQ(answer["kind"], "TokenRequest");
  EXPECT_EQ(answer["spec"]["expirationSeconds"], 3600);
  ASSERT_TRUE(answer["status"]["token"].is_string());
  ASSERT_TRUE(answer["status"]["expirationTimestamp"].is_string());
  Client reader(config(answer["status"]["token"]), once());
  EXPECT_EQ(reader.get("/api/v1/namespaces/demo/pods/web")["metadata"]["name"], "web");
  EXPECT_EQ(reader.get("/version")["major"], "1");  // discovery: every authenticated user

  const auto [list_code, list_message] = error_of([&] { reader.list("/api/v1/pods"); });
  EXPECT_EQ(list_code, 403);
  EXPECT_NE(list_message.find("User \"" + std::string(kUser) +
                              "\" cannot list resource \"pods\" in API group \"\" at the cluster "
                              "scope"),
            std::string::npos)
      << list_message;
  const auto [ns_code, ns_message] = error_of([&] { reader.get("/api/v1/namespaces/demo"); });
  EXPECT_EQ(ns_code, 403) << ns_message;
  const auto [status_code, status_message] = error_of([&] {
    reader.patch("/api/v1/namespaces/demo/pods/web/status", {{"metadata", json::object()}},
                 "application/merge-patch+json");
  });
  EXPECT_EQ(status_code, 403);
  EXPECT_NE(status_message.find("cannot patch resource \"pods/status\""), std::string::npos)
      << status_message;
  const auto [other_code, _] =
      error_of([&] { reader.get("/api/v1/namespaces/istio-system/pods/me"); });
  EXPECT_EQ(other_code, 403);  // granted in demo only

  api_.expire_issued_tokens();
  EXPECT_EQ(error_of([&] { reader.get("/api/v1/namespaces/demo/pods/web"); }).first, 401);
}

TEST_F(StandinAuth, ABoundTokenDiesWithItsPod) {
  const auto answer =
      request_token({{"boundObjectRef", {{"kind", "Pod"}, {"apiVersion", "v1"}, {"name", "me"}}}});
  EXPECT_EQ(answer["spec"]["boundObjectRef"]["uid"], "uid-me");
  Client reader(config(answer["status"]["token"]), once());
  EXPECT_EQ(reader.get("/api/v1/namespaces/demo/pods/web")["metadata"]["name"], "web");
  api_.remove_object("Pod", "istio-system", "me");
  api_.put({{"kind", "Pod"},
            {"metadata", {{"name", "me"}, {"namespace", "istio-system"}, {"uid", "uid-new"}}},
            {"spec", {{"serviceAccountName", "reader"}}}});
  EXPECT_EQ(error_of([&] { reader.get("/api/v1/namespaces/demo/pods/web"); }).first, 401);
}

TEST_F(StandinAuth, TokenRequestsTheApiWouldRefuse) {
  EXPECT_EQ(error_of([&] { request_token({{"expirationSeconds", 599}}); }).first, 422);
  EXPECT_EQ(error_of([&] {
              Client(config(api_.token()), once())
                  .create("/api/v1/namespaces/istio-system/serviceaccounts/nobody/token",
                          {{"kind", "TokenRequest"}, {"spec", json::object()}});
            }).first,
            404);
  EXPECT_EQ(error_of([&] {
              request_token({{"boundObjectRef", {{"kind", "Pod"}, {"name", "absent"}}}});
            }).first,
            404);
  EXPECT_EQ(
      error_of([&] {
        request_token({{"boundObjectRef", {{"kind", "Pod"}, {"name", "me"}, {"uid", "uid-old"}}}});
      }).first,
      409);
  EXPECT_TRUE(api_.issued_tokens().empty());
}

}  // namespace
}  // namespace ambient::kube
