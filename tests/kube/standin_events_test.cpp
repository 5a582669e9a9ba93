// The API stand-in's Events, ConfigMaps and pods/proxy (issue 15), checked over raw HTTPS
// (cpp-httplib's client, not ours): Events are accepted or refused as kube-apiserver's core/v1
// validation does, listed with its field selectors, and guarded by RBAC; pods/proxy relays to the
// pod's IP and port.
#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>

#include "tests/kube/test_util.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::testing {
namespace {

using nlohmann::json;

json event(const std::string& name, const std::string& involved_ns) {
  return {{"apiVersion", "v1"},
          {"kind", "Event"},
          {"metadata", {{"name", name}, {"namespace", "demo"}}},
          {"involvedObject",
           {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"namespace", involved_ns},
            {"name", "web"},
            {"uid", "uid-web"}}},
          {"reason", "AmbientEnrolmentFailed"},
          {"message", "x"},
          {"type", "Warning"},
          {"source", {{"component", "ambient-cni-node"}, {"host", "n1"}}},
          {"count", 1}};
}

class StandinEvents : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
    server_.start();
    kube::test::write_file(dir_ / "ca.crt", server_.ca_pem());
  }
  std::unique_ptr<httplib::SSLClient> http(const std::string& token) {
    auto client = std::make_unique<httplib::SSLClient>("127.0.0.1", server_.port());
    client->set_ca_cert_path((dir_ / "ca.crt").c_str());
    client->enable_server_certificate_verification(true);
    client->set_bearer_token_auth(token);
    return client;
  }
  std::pair<int, json> post(const std::string& path, const json& body, std::string token = "") {
    if (token.empty()) token = server_.token();
    auto res = http(token)->Post(path, body.dump(), "application/json");
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  std::pair<int, json> get(const std::string& path) {
    auto res = http(server_.token())->Get(path);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  ApiServerStandin server_;
  kube::test::TempDir dir_;
};

TEST_F(StandinEvents, ACoreV1EventIsCreatedOnceAndListedByItsInvolvedObject) {
  auto [status, body] = post("/api/v1/namespaces/demo/events", event("web.1", "demo"));
  ASSERT_EQ(status, 201) << body.dump();
  EXPECT_FALSE(body["metadata"].value("uid", "").empty());
  EXPECT_FALSE(body["metadata"].value("resourceVersion", "").empty());
  EXPECT_EQ(body["metadata"]["namespace"], "demo");
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", event("web.1", "demo"));
  EXPECT_EQ(status, 409);
  EXPECT_EQ(body["reason"], "AlreadyExists");
  EXPECT_EQ(body["message"], "events \"web.1\" already exists");
  // generateName, as some recorders use.
  auto e = event("", "demo");
  e["metadata"].erase("name");
  e["metadata"]["generateName"] = "web.";
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", e);
  ASSERT_EQ(status, 201) << body.dump();
  EXPECT_TRUE(body["metadata"]["name"].get<std::string>().starts_with("web."));
  // kubectl describe's query.
  std::tie(status, body) =
      get("/api/v1/namespaces/demo/events?fieldSelector=involvedObject.name%3Dweb,"
          "involvedObject.namespace%3Ddemo,involvedObject.uid%3Duid-web");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["kind"], "EventList");
  EXPECT_EQ(body["items"].size(), 2u);
  std::tie(status, body) = get("/api/v1/events?fieldSelector=involvedObject.uid%3Dnobody");
  EXPECT_EQ(body["items"].size(), 0u);
  std::tie(status, body) =
      get("/api/v1/namespaces/demo/events?fieldSelector=source%3Dambient-cni-node,"
          "reason%3DAmbientEnrolmentFailed,type%3DWarning");
  EXPECT_EQ(body["items"].size(), 2u);
}

TEST_F(StandinEvents, WhatKubeApiserverRefusesIsRefusedWithItsMessage) {
  auto [status, body] = post("/api/v1/namespaces/demo/events", event("web.2", "other"));
  EXPECT_EQ(status, 422);
  EXPECT_EQ(body["message"],
            "Event \"web.2\" is invalid: involvedObject.namespace: Invalid value: \"other\": does "
            "not match event.namespace");
  auto e = event("web.3", "demo");
  e["metadata"]["namespace"] = "other";
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", e);
  EXPECT_EQ(status, 400);
  e = event("", "demo");
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", e);
  EXPECT_EQ(status, 422);
  EXPECT_NE(body["message"].get<std::string>().find("name or generateName is required"),
            std::string::npos);
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", event("a/b", "demo"));
  EXPECT_EQ(status, 422);
  e = event("web.4", "demo");
  e["eventTime"] = "2026-01-01T00:00:00.000000Z";  // a new-style Event needs its reporting fields
  std::tie(status, body) = post("/api/v1/namespaces/demo/events", e);
  EXPECT_EQ(status, 422);
  EXPECT_NE(body["message"].get<std::string>().find("reportingComponent: Required value"),
            std::string::npos)
      << body.dump();
  auto nowhere = event("web.5", "gone");
  nowhere["metadata"]["namespace"] = "gone";
  std::tie(status, body) = post("/api/v1/namespaces/gone/events", nowhere);
  EXPECT_EQ(status, 404);
  EXPECT_EQ(body["message"], "namespaces \"gone\" not found");
}

TEST_F(StandinEvents, CreatingEventsNeedsItsRbacVerb) {
  server_.add_service_account("istio-system", "node");
  server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "istio-system"}}}});
  auto [status, token] = post("/api/v1/namespaces/istio-system/serviceaccounts/node/token",
                              {{"kind", "TokenRequest"}, {"spec", json::object()}});
  ASSERT_EQ(status, 201) << token.dump();
  const std::string t = token["status"]["token"];
  auto [refused, why] = post("/api/v1/namespaces/demo/events", event("web.6", "demo"), t);
  EXPECT_EQ(refused, 403);
  EXPECT_NE(why["message"].get<std::string>().find("cannot create resource \"events\""),
            std::string::npos)
      << why.dump();
  server_.grant("system:serviceaccount:istio-system:node", {"create"}, {"events"});
  EXPECT_EQ(post("/api/v1/namespaces/demo/events", event("web.6", "demo"), t).first, 201);
}

TEST_F(StandinEvents, PodsProxyRelaysToThePodAndConfigMapsAreServed) {
  httplib::Server pod_server;
  pod_server.Get("/debug/pods", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content("{\"uid\":\"" + req.get_param_value("uid") + "\"}", "application/json");
  });
  const int port = pod_server.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { pod_server.listen_after_bind(); });
  server_.put({{"kind", "Pod"},
               {"metadata", {{"name", "agent"}, {"namespace", "demo"}}},
               {"status", {{"phase", "Running"}, {"podIP", "127.0.0.1"}}}});
  auto [status, body] = get("/api/v1/namespaces/demo/pods/agent:" + std::to_string(port) +
                            "/proxy/debug/pods?uid=a,b");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body["uid"], "a,b");
  std::tie(status, body) = get("/api/v1/namespaces/demo/pods/nobody:1/proxy/x");
  EXPECT_EQ(status, 404);
  pod_server.stop();
  serving.join();
  std::tie(status, body) =
      get("/api/v1/namespaces/demo/pods/agent:" + std::to_string(port) + "/proxy/debug/pods");
  EXPECT_EQ(status, 503);
  EXPECT_NE(body["message"].get<std::string>().find("error trying to reach service"),
            std::string::npos);

  server_.put({{"kind", "ConfigMap"},
               {"metadata", {{"name", "cfg"}, {"namespace", "demo"}}},
               {"data", {{"K", "v"}}}});
  std::tie(status, body) = get("/api/v1/namespaces/demo/configmaps/cfg");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body["data"]["K"], "v");
  EXPECT_EQ(get("/api/v1/namespaces/demo/configmaps/none").first, 404);
}

}  // namespace
}  // namespace ambient::testing
