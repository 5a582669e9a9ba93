// The API stand-in itself, checked over raw HTTPS (cpp-httplib's client, not ours), so that the
// client tests above run against a peer whose behaviour is pinned down independently.
#include "tests/standins/apiserver/apiserver.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <set>

#include "kube/client.h"
#include "tests/kube/test_util.h"
#include "tests/standins/apiserver/selectors.h"
#include "tests/standins/apiserver/table.h"

namespace ambient::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

json pod(const std::string& ns, const std::string& name, const json& labels,
         const std::string& node) {
  return {{"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec", {{"nodeName", node}, {"serviceAccountName", "default"}}},
          {"status", {{"phase", "Running"}, {"podIP", "10.0.0.1"}}}};
}

// `pattern`: 'h' = lowercase hex digit, 'd' = decimal digit, anything else literally.
bool shaped(const json& value, std::string_view pattern) {
  if (!value.is_string()) return false;
  const std::string text = value;
  if (text.size() != pattern.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool ok = pattern[i] == 'h'
                        ? std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(c)
                    : pattern[i] == 'd' ? std::isdigit(static_cast<unsigned char>(c)) != 0
                                        : c == pattern[i];
    if (!ok) return false;
  }
  return true;
}

class StandinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
    server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "other"}}}});
    server_.put(pod("demo", "a", {{"app", "web"}, {"tier", "front"}}, "n1"));
    server_.put(pod("demo", "b", {{"app", "db"}}, "n2"));
    server_.put(pod("demo", "c", json::object(), "n1"));
    server_.put(pod("other", "d", {{"app", "web"}}, "n1"));
    server_.start();
    kube::test::write_file(dir_ / "ca.crt", server_.ca_pem());
  }

  std::unique_ptr<httplib::SSLClient> http(bool with_token = true) {
    auto client = std::make_unique<httplib::SSLClient>("127.0.0.1", server_.port());
    client->set_ca_cert_path((dir_ / "ca.crt").c_str());
    client->enable_server_certificate_verification(true);
    if (with_token) client->set_bearer_token_auth(server_.token());
    return client;
  }

  // GET → (status, parsed body).
  std::pair<int, json> get(const std::string& path, bool with_token = true) {
    auto res = http(with_token)->Get(path);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  std::pair<int, json> patch(const std::string& path, const std::string& body,
                             const std::string& type) {
    auto res = http()->Patch(path, body, type);
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  std::vector<std::string> names(const std::string& path) {
    auto [status, body] = get(path);
    EXPECT_EQ(status, 200) << path << " " << body.dump();
    std::vector<std::string> out;
    for (const auto& item : body["items"])
      out.push_back(item["metadata"]["name"].get<std::string>());
    return out;
  }

  static void expect_status(const json& body, int code, const std::string& reason) {
    EXPECT_EQ(body["kind"], "Status") << body.dump();
    EXPECT_EQ(body["apiVersion"], "v1");
    EXPECT_EQ(body["status"], "Failure");
    EXPECT_EQ(body["code"], code);
    EXPECT_EQ(body["reason"], reason);
    EXPECT_TRUE(body["message"].is_string());
  }

  ApiServerStandin server_;
  kube::test::TempDir dir_;
};

using Names = std::vector<std::string>;

TEST_F(StandinTest, DiscoveryDocuments) {
  auto [s1, version] = get("/version");
  EXPECT_EQ(s1, 200);
  EXPECT_EQ(version["major"], "1");
  EXPECT_TRUE(version["gitVersion"].get<std::string>().starts_with("v1.32."));

  auto [s2, api] = get("/api");
  EXPECT_EQ(api["kind"], "APIVersions");
  EXPECT_EQ(api["versions"], json({"v1"}));

  auto [s3, apis] = get("/apis");
  EXPECT_EQ(apis["kind"], "APIGroupList");
  EXPECT_TRUE(apis["groups"].is_array());

  auto [s4, v1] = get("/api/v1");
  EXPECT_EQ(v1["kind"], "APIResourceList");
  EXPECT_EQ(v1["groupVersion"], "v1");
  std::map<std::string, json> resources;
  for (const auto& r : v1["resources"]) resources[r["name"].get<std::string>()] = r;
  ASSERT_TRUE(resources.count("namespaces") && resources.count("pods") &&
              resources.count("pods/status"));
  EXPECT_EQ(resources["namespaces"]["namespaced"], false);
  EXPECT_EQ(resources["pods"]["namespaced"], true);
  EXPECT_EQ(resources["pods"]["kind"], "Pod");
  for (const char* verb : {"get", "list", "watch", "patch"}) {
    EXPECT_NE(std::find(resources["pods"]["verbs"].begin(), resources["pods"]["verbs"].end(), verb),
              resources["pods"]["verbs"].end())
        << verb;
  }
}

TEST_F(StandinTest, UnauthenticatedRequestsGetA401Status) {
  auto [status, body] = get("/api/v1/namespaces", false);
  EXPECT_EQ(status, 401);
  expect_status(body, 401, "Unauthorized");
  auto client = http(false);
  client->set_bearer_token_auth("not-the-token");
  auto res = client->Get("/version");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  const auto log = server_.requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_FALSE(log[0].authorized);
  EXPECT_FALSE(log[1].authorized);
}

TEST_F(StandinTest, MissingObjectsAndPathsAre404Statuses) {
  auto [s1, pod_body] = get("/api/v1/namespaces/demo/pods/zzz");
  EXPECT_EQ(s1, 404);
  expect_status(pod_body, 404, "NotFound");
  EXPECT_EQ(pod_body["message"], "pods \"zzz\" not found");
  EXPECT_EQ(pod_body["details"]["name"], "zzz");
  EXPECT_EQ(pod_body["details"]["kind"], "pods");

  auto [s2, ns_body] = get("/api/v1/namespaces/nope");
  EXPECT_EQ(s2, 404);
  EXPECT_EQ(ns_body["message"], "namespaces \"nope\" not found");

  auto [s3, path_body] = get("/api/v1/services");
  EXPECT_EQ(s3, 404);
  expect_status(path_body, 404, "NotFound");
  EXPECT_EQ(get("/apis/apps/v1").first, 404);
}

TEST_F(StandinTest, ObjectsAreRealShaped) {
  auto [status, body] = get("/api/v1/namespaces/demo/pods/a");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["kind"], "Pod");
  EXPECT_EQ(body["apiVersion"], "v1");
  const auto& m = body["metadata"];
  EXPECT_TRUE(shaped(m["uid"], "hhhhhhhh-hhhh-4hhh-hhhh-hhhhhhhhhhhh")) << m["uid"];
  EXPECT_TRUE(shaped(m["creationTimestamp"], "dddd-dd-ddTdd:dd:ddZ")) << m["creationTimestamp"];
  const std::string rv = m["resourceVersion"];
  EXPECT_TRUE(!rv.empty() && rv.find_first_not_of("0123456789") == std::string::npos) << rv;
  EXPECT_EQ(body["spec"]["nodeName"], "n1");
  auto [s2, ns] = get("/api/v1/namespaces/demo");
  EXPECT_EQ(ns["status"]["phase"], "Active");
  EXPECT_FALSE(ns["metadata"].contains("namespace"));
}

TEST_F(StandinTest, ResourceVersionsAreGlobalAndReplaceKeepsIdentity) {
  const auto before = server_.get_object("Pod", "demo", "a").value();
  server_.put(pod("demo", "a", {{"app", "web"}}, "n3"));
  server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "third"}}}});
  const auto after = server_.get_object("Pod", "demo", "a").value();
  const auto ns = server_.get_object("namespaces", "", "third").value();
  EXPECT_EQ(after["metadata"]["uid"], before["metadata"]["uid"]);
  EXPECT_EQ(after["metadata"]["creationTimestamp"], before["metadata"]["creationTimestamp"]);
  const auto rv = [](const json& o) {
    return std::stoull(o["metadata"]["resourceVersion"].get<std::string>());
  };
  EXPECT_GT(rv(after), rv(before));
  EXPECT_EQ(rv(ns), rv(after) + 1);
  EXPECT_EQ(server_.resource_version(), std::to_string(rv(ns)));
}

TEST_F(StandinTest, ListsAreRealShaped) {
  auto [status, body] = get("/api/v1/namespaces/demo/pods");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["kind"], "PodList");
  EXPECT_EQ(body["metadata"]["resourceVersion"], server_.resource_version());
  ASSERT_EQ(body["items"].size(), 3u);
  EXPECT_FALSE(body["items"][0].contains("kind"));  // as from the real server
  EXPECT_EQ(names("/api/v1/pods"), (Names{"a", "b", "c", "d"}));
  EXPECT_EQ(names("/api/v1/namespaces"), (Names{"demo", "other"}));
  EXPECT_EQ(get("/api/v1/namespaces").second["kind"], "NamespaceList");
}

TEST_F(StandinTest, LabelSelectorForms) {
  const std::string base = "/api/v1/pods?labelSelector=";
  EXPECT_EQ(names(base + "app%3Dweb"), (Names{"a", "d"}));
  EXPECT_EQ(names(base + "app%3D%3Dweb"), (Names{"a", "d"}));
  EXPECT_EQ(names(base + "app%21%3Dweb"), (Names{"b", "c"}));  // a missing label is != web
  EXPECT_EQ(names(base + "app"), (Names{"a", "b", "d"}));
  EXPECT_EQ(names(base + "%21app"), (Names{"c"}));
  EXPECT_EQ(names(base + "app%20in%20(db,%20web)"), (Names{"a", "b", "d"}));
  EXPECT_EQ(names(base + "app%20notin%20(web)"), (Names{"b", "c"}));
  EXPECT_EQ(names(base + "app%3Dweb,tier"), (Names{"a"}));
  EXPECT_EQ(names(base + "app%3Dweb,%21tier"), (Names{"d"}));
  EXPECT_EQ(names(base), (Names{"a", "b", "c", "d"}));
}

TEST_F(StandinTest, BadSelectorsAre400) {
  auto [s1, b1] = get("/api/v1/pods?labelSelector=app%20in%20web");
  EXPECT_EQ(s1, 400);
  expect_status(b1, 400, "BadRequest");
  auto [s2, b2] = get("/api/v1/pods?fieldSelector=spec.color%3Dblue");
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["message"], "field label not supported: spec.color");
}

TEST_F(StandinTest, FieldSelectors) {
  EXPECT_EQ(names("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1"), (Names{"a", "c", "d"}));
  EXPECT_EQ(names("/api/v1/pods?fieldSelector=spec.nodeName%21%3Dn1"), (Names{"b"}));
  EXPECT_EQ(names("/api/v1/pods?fieldSelector=metadata.name%3Db"), (Names{"b"}));
  EXPECT_EQ(names("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,metadata.namespace%3Ddemo"),
            (Names{"a", "c"}));
  EXPECT_EQ(names("/api/v1/namespaces?fieldSelector=metadata.name%3Dother"), (Names{"other"}));
  EXPECT_EQ(names("/api/v1/namespaces/demo/pods?fieldSelector=spec.nodeName%3Dn1&labelSelector="
                  "app"),
            (Names{"a"}));
}

TEST_F(StandinTest, PaginationWithLimitAndContinue) {
  std::vector<std::string> all;
  std::string token;
  int pages = 0;
  do {
    std::string path = "/api/v1/pods?limit=3";
    if (!token.empty()) path += "&continue=" + httplib::detail::encode_query_param(token);
    auto [status, body] = get(path);
    ASSERT_EQ(status, 200) << body.dump();
    for (const auto& item : body["items"])
      all.push_back(item["metadata"]["name"].get<std::string>());
    token = body["metadata"].value("continue", "");
    if (!token.empty()) {
      EXPECT_EQ(body["metadata"]["remainingItemCount"], 1);
    }
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(all, (Names{"a", "b", "c", "d"}));
}

TEST_F(StandinTest, MergePatchNullDeletesAndBumpsResourceVersion) {
  const std::string rv = server_.resource_version();
  auto [status, body] =
      patch("/api/v1/namespaces/demo/pods/a", R"({"metadata":{"labels":{"tier":null,"new":"1"}}})",
            "application/merge-patch+json");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["metadata"]["labels"], json({{"app", "web"}, {"new", "1"}}));
  EXPECT_EQ(std::stoull(body["metadata"]["resourceVersion"].get<std::string>()),
            std::stoull(rv) + 1);
}

TEST_F(StandinTest, StrategicMergePatchDirectives) {
  auto [s1, b1] = patch("/api/v1/namespaces/demo/pods/a",
                        R"({"metadata":{"labels":{"$patch":"replace","only":"this"}}})",
                        "application/strategic-merge-patch+json");
  ASSERT_EQ(s1, 200) << b1.dump();
  EXPECT_EQ(b1["metadata"]["labels"], json({{"only", "this"}}));
  auto [s2, b2] =
      patch("/api/v1/namespaces/demo/pods/a", R"({"metadata":{"labels":{"only":null}}})",
            "application/strategic-merge-patch+json");
  ASSERT_EQ(s2, 200);
  EXPECT_FALSE(b2["metadata"].contains("labels"));  // empty maps are omitted
}

TEST_F(StandinTest, JsonPatch) {
  auto [status, body] = patch(
      "/api/v1/namespaces/demo",
      R"([{"op":"add","path":"/metadata/labels","value":{"istio.io/dataplane-mode":"ambient"}}])",
      "application/json-patch+json");
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["metadata"]["labels"]["istio.io/dataplane-mode"], "ambient");
  auto [s2, b2] =
      patch("/api/v1/namespaces/demo", R"([{"op":"test","path":"/metadata/name","value":"wrong"}])",
            "application/json-patch+json");
  EXPECT_EQ(s2, 422);
}

TEST_F(StandinTest, PatchErrors) {
  EXPECT_EQ(patch("/api/v1/namespaces/demo", "{}", "application/apply-patch+yaml").first, 415);
  EXPECT_EQ(patch("/api/v1/namespaces/demo", "{}", "application/json").first, 415);
  EXPECT_EQ(patch("/api/v1/namespaces/demo", "{nope", "application/merge-patch+json").first, 400);
  auto [s1, b1] = patch("/api/v1/namespaces/demo/pods/a", R"({"metadata":{"name":"z"}})",
                        "application/merge-patch+json");
  EXPECT_EQ(s1, 422);
  expect_status(b1, 422, "Invalid");
  EXPECT_EQ(patch("/api/v1/namespaces/demo/pods/a", R"({"metadata":{"labels":{"x":1}}})",
                  "application/merge-patch+json")
                .first,
            422);
  auto [s2, b2] = patch("/api/v1/namespaces/demo/pods/zz", "{}", "application/merge-patch+json");
  EXPECT_EQ(s2, 404);
  EXPECT_EQ(b2["message"], "pods \"zz\" not found");
  const std::string stale = server_.resource_version();
  server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
  auto [s3, b3] = patch("/api/v1/namespaces/demo",
                        R"({"metadata":{"resourceVersion":")" + stale + R"(","labels":{"a":"b"}}})",
                        "application/merge-patch+json");
  EXPECT_EQ(s3, 409);
  expect_status(b3, 409, "Conflict");
  EXPECT_FALSE(server_.get_object("Namespace", "", "demo").value()["metadata"].contains("labels"));
}

TEST_F(StandinTest, StatusSubresourceKeepsSpecAndMainResourceKeepsStatus) {
  auto [s1, b1] = patch("/api/v1/namespaces/demo/pods/a/status",
                        R"({"spec":{"nodeName":"evil"},"status":{"phase":"Failed"},)"
                        R"("metadata":{"annotations":{"k":"v"}}})",
                        "application/merge-patch+json");
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(b1["spec"]["nodeName"], "n1");
  EXPECT_EQ(b1["status"]["phase"], "Failed");
  EXPECT_EQ(b1["metadata"]["annotations"]["k"], "v");
  auto [s2, b2] = patch("/api/v1/namespaces/demo/pods/a",
                        R"({"spec":{"nodeName":"n9"},"status":{"phase":"Running"}})",
                        "application/merge-patch+json");
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(b2["spec"]["nodeName"], "n9");
  EXPECT_EQ(b2["status"]["phase"], "Failed");
  EXPECT_EQ(get("/api/v1/namespaces/demo/pods/a/status").second["status"]["phase"], "Failed");
}

TEST_F(StandinTest, NoOpPatchKeepsTheResourceVersion) {
  const std::string rv = server_.resource_version();
  auto [status, body] =
      patch("/api/v1/namespaces/demo/pods/a", R"({"metadata":{"labels":{"app":"web"}}})",
            "application/merge-patch+json");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(server_.resource_version(), rv);
}

TEST_F(StandinTest, UnsupportedMethodsAre405) {
  auto client = http();
  EXPECT_EQ(client->Put("/api/v1/namespaces/demo", "{}", "application/json")->status, 405);
  EXPECT_EQ(client->Delete("/api/v1/namespaces/demo/pods/a")->status, 405);
  EXPECT_EQ(client->Post("/api/v1/namespaces", "{}", "application/json")->status, 405);
  EXPECT_TRUE(server_.get_object("Pod", "demo", "a").has_value());
}

TEST_F(StandinTest, InvalidWatchResourceVersionIs400) {
  EXPECT_EQ(get("/api/v1/pods?watch=1&resourceVersion=abc").first, 400);
}

TEST_F(StandinTest, FaultsCountDownAndMatchByPrefix) {
  server_.add_fault({.path_prefix = "/api/v1/namespaces/demo/pods", .status = 500, .times = 2});
  EXPECT_EQ(get("/api/v1/namespaces/demo").first, 200);  // not under the prefix
  EXPECT_EQ(get("/api/v1/namespaces/demo/pods/a").first, 500);
  auto [status, body] = get("/api/v1/namespaces/demo/pods");
  EXPECT_EQ(status, 500);
  expect_status(body, 500, "InternalError");
  EXPECT_EQ(get("/api/v1/namespaces/demo/pods/a").first, 200);
  server_.add_fault({.path_prefix = "", .status = 503});
  EXPECT_EQ(get("/version").first, 503);
  server_.clear_faults();
  EXPECT_EQ(get("/version").first, 200);
}

TEST_F(StandinTest, DelayFaultAnswersNormallyAfterTheDelay) {
  server_.add_fault({.path_prefix = "/version", .delay_ms = 200, .times = 1});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(get("/version").first, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
}

TEST_F(StandinTest, DropAndBadJsonFaults) {
  server_.add_fault({.path_prefix = "/version", .drop = true, .times = 1});
  EXPECT_FALSE(http()->Get("/version"));  // no answer at all
  server_.add_fault({.path_prefix = "/version", .bad_json = true, .times = 1});
  auto res = http()->Get("/version");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(json::parse(res->body, nullptr, false).is_discarded());
}

TEST_F(StandinTest, RequestLogKeepsMethodPathAndRawQuery) {
  get("/api/v1/pods?labelSelector=app%3Dweb&limit=5");
  const auto log = server_.requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].method, "GET");
  EXPECT_EQ(log[0].path, "/api/v1/pods");
  EXPECT_EQ(log[0].query, "labelSelector=app%3Dweb&limit=5");
  EXPECT_TRUE(log[0].authorized);
  server_.clear_requests();
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(StandinTest, ConnectionAccountingAndDropConnections) {
  const int before = server_.tls_connections();
  auto client = http();
  client->set_keep_alive(true);
  ASSERT_EQ(client->Get("/version")->status, 200);
  ASSERT_EQ(client->Get("/api")->status, 200);
  EXPECT_EQ(server_.tls_connections() - before, 1);
  EXPECT_EQ(server_.open_connections(), 1);
  server_.drop_connections();
  for (int i = 0; i < 200 && server_.open_connections() > 0; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(server_.open_connections(), 0);
}

TEST_F(StandinTest, RestartKeepsPortObjectsAndCertificateAuthority) {
  const int port = server_.port();
  const std::string ca = server_.ca_pem();
  server_.stop();
  EXPECT_FALSE(http()->Get("/version"));
  server_.start();
  EXPECT_EQ(server_.port(), port);
  EXPECT_EQ(server_.ca_pem(), ca);
  EXPECT_EQ(names("/api/v1/namespaces/demo/pods"), (Names{"a", "b", "c"}));
}

TEST_F(StandinTest, LoadObjectsFromArrayOrList) {
  ApiServerStandin s;
  s.load_objects(json::array({{{"kind", "Namespace"}, {"metadata", {{"name", "x"}}}}}));
  s.load_objects(
      {{"kind", "List"},
       {"items", {pod("x", "p", json::object(), "n"), pod("x", "q", json::object(), "n")}}});
  EXPECT_TRUE(s.get_object("Namespace", "", "x"));
  EXPECT_TRUE(s.get_object("Pod", "x", "q"));
  EXPECT_THROW(s.load_objects(json{{"kind", "Pod"}}), std::invalid_argument);
  EXPECT_THROW(s.put({{"kind", "Service"}, {"metadata", {{"name", "s"}}}}), std::invalid_argument);
  EXPECT_THROW(s.put({{"kind", "Pod"}, {"metadata", json::object()}}), std::invalid_argument);
}

TEST_F(StandinTest, RemovedObjectsAreGone) {
  server_.remove_object("Pod", "demo", "b");
  EXPECT_FALSE(server_.get_object("Pod", "demo", "b"));
  EXPECT_EQ(get("/api/v1/namespaces/demo/pods/b").first, 404);
}

TEST_F(StandinTest, TablesForKubectlPrinting) {
  const httplib::Headers accept = {
      {"Accept",
       "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
       "g=meta.k8s.io,application/json"}};
  auto res = http()->Get("/api/v1/namespaces/demo/pods?labelSelector=app", accept);
  ASSERT_TRUE(res);
  const auto table = json::parse(res->body);
  EXPECT_EQ(table["kind"], "Table");
  EXPECT_EQ(table["apiVersion"], "meta.k8s.io/v1");
  std::vector<std::string> columns;
  for (const auto& c : table["columnDefinitions"]) columns.push_back(c["name"].get<std::string>());
  EXPECT_EQ(columns, (Names{"Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"}));
  ASSERT_EQ(table["rows"].size(), 2u);  // a and b carry "app"
  EXPECT_EQ(table["rows"][0]["cells"][0], "a");
  EXPECT_EQ(table["rows"][0]["cells"][1], "0/0");
  EXPECT_EQ(table["rows"][0]["cells"][2], "Running");
  EXPECT_EQ(table["rows"][0]["cells"][6], "n1");
  EXPECT_EQ(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
  EXPECT_EQ(table["rows"][0]["object"]["metadata"]["namespace"], "demo");

  res = http()->Get("/api/v1/namespaces/other?includeObject=Object", accept);
  ASSERT_TRUE(res);
  const auto single = json::parse(res->body);
  EXPECT_EQ(single["rows"][0]["cells"], json({"other", "Active", single["rows"][0]["cells"][2]}));
  EXPECT_EQ(single["rows"][0]["object"]["kind"], "Namespace");

  // Plain JSON unless Table v1 is asked for.
  res = http()->Get("/api/v1/namespaces/other", {{"Accept", "application/json"}});
  EXPECT_EQ(json::parse(res->body)["kind"], "Namespace");
}

TEST(StandinTable, AcceptParsingAndHumanAge) {
  EXPECT_TRUE(table_request("application/json;as=Table;v=v1;g=meta.k8s.io", "").wanted);
  EXPECT_TRUE(table_request("application/json ; as=Table ; g=meta.k8s.io ; v=v1", "").wanted);
  EXPECT_FALSE(table_request("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "").wanted);
  EXPECT_FALSE(table_request("application/json", "").wanted);
  EXPECT_EQ(table_request("", "None").include, TableRequest::Include::kNone);
  EXPECT_EQ(table_request("", "Object").include, TableRequest::Include::kObject);
  EXPECT_EQ(table_request("", "").include, TableRequest::Include::kMetadata);
  EXPECT_EQ(human_age(5), "5s");
  EXPECT_EQ(human_age(119), "119s");
  EXPECT_EQ(human_age(125), "2m5s");
  EXPECT_EQ(human_age(600), "10m");
  EXPECT_EQ(human_age(3 * 3600 + 60), "3h1m");
  EXPECT_EQ(human_age(30 * 3600), "30h");
  EXPECT_EQ(human_age(3 * 86400 + 2 * 3600), "3d2h");
  EXPECT_EQ(human_age(100 * 86400), "100d");
  EXPECT_EQ(human_age(3 * 365 * 86400 + 86400), "3y1d");
}

TEST(StandinIpv6, ServesOnTheIpv6Loopback) {
  ApiServerStandin::Options options;
  options.bind_address = "::1";
  ApiServerStandin server(options);
  try {
    server.start();
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  EXPECT_TRUE(server.url().starts_with("https://[::1]:")) << server.url();
  kube::Kubeconfig config;
  config.server = server.url();
  config.ca_pem = server.ca_pem();
  config.token = server.token();
  kube::Client client(config, kube::ClientOptions{});
  EXPECT_EQ(client.get("/api")["kind"], "APIVersions");
}

TEST(SelectorParser, RejectsMalformedSelectors) {
  for (const char* bad :
       {"a in b", "a in (b", "a notin", "=b", "a=b=c", "a b", "!", "a,,b", "a=(b)", "a>1"}) {
    EXPECT_THROW(LabelSelectorQuery::parse(bad), std::invalid_argument) << bad;
  }
  for (const char* good : {"", "a", "!a", "a=b", "a==b", "a!=b", "a in (b,c)", "a notin (b)",
                           " a = b , c ", "example.com/key=v", "a=", "a in ()"}) {
    EXPECT_NO_THROW(LabelSelectorQuery::parse(good)) << good;
  }
}

TEST(SelectorParser, FieldLabelsDependOnKind) {
  EXPECT_NO_THROW(FieldSelectorQuery::parse("spec.nodeName=n", "Pod"));
  EXPECT_THROW(FieldSelectorQuery::parse("spec.nodeName=n", "Namespace"), std::invalid_argument);
  EXPECT_THROW(FieldSelectorQuery::parse("nonsense", "Pod"), std::invalid_argument);
  EXPECT_EQ(field_value({{"spec", {{"hostNetwork", true}}}}, "spec.hostNetwork"), "true");
  EXPECT_EQ(field_value({{"spec", json::object()}}, "spec.nodeName"), "");
}

}  // namespace
}  // namespace ambient::testing
