// Client::watch against the stand-in's chunked watch streams.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kube/client.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::kube {
namespace {

using ambient::testing::ApiServerStandin;
using Clock = std::chrono::steady_clock;
using Kind = ApiError::Kind;
using nlohmann::json;
using std::chrono::milliseconds;

json pod(const std::string& name, const json& labels = json::object(),
         const std::string& node = "node-1") {
  return {{"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "demo"}, {"labels", labels}}},
          {"spec", {{"nodeName", node}}},
          {"status", {{"phase", "Running"}}}};
}

uint64_t rv_of(const json& object) {
  return std::stoull(object["metadata"]["resourceVersion"].get<std::string>());
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.put({{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
    server_.start();
  }

  Client client() {
    Kubeconfig c;
    c.server = server_.url();
    c.ca_pem = server_.ca_pem();
    c.token = server_.token();
    ClientOptions o;
    o.deadline = milliseconds(3000);
    return Client(c, o);
  }

  // Runs `change` on another thread once the stand-in has `watches` open watch streams.
  std::thread when_watching(std::function<void()> change, int watches = 1) {
    return std::thread([this, change = std::move(change), watches] {
      const auto give_up = Clock::now() + std::chrono::seconds(5);
      while (server_.open_watches() < watches && Clock::now() < give_up) {
        std::this_thread::sleep_for(milliseconds(5));
      }
      change();
    });
  }

  ApiServerStandin server_;
};

TEST_F(WatchTest, HistoryIsReplayedInOrderFromAResourceVersion) {
  auto c = client();
  const std::string from = c.list("/api/v1/namespaces/demo/pods")["metadata"]["resourceVersion"];
  server_.put(pod("a"));
  server_.put(pod("a", {{"v", "2"}}));
  server_.put(pod("b"));
  server_.remove_object("Pod", "demo", "a");

  std::vector<json> events;
  const auto end = c.watch(
      "/api/v1/namespaces/demo/pods?resourceVersion=" + from,
      [&](const json& e) {
        events.push_back(e);
        return events.size() < 4;
      },
      milliseconds(3000));
  EXPECT_EQ(end, WatchEnd::kStopped);
  ASSERT_EQ(events.size(), 4u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"ADDED", "a"}, {"MODIFIED", "a"}, {"ADDED", "b"}, {"DELETED", "a"}};
  uint64_t last_rv = std::stoull(from);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(events[i]["type"], expected[i].first) << i;
    EXPECT_EQ(events[i]["object"]["metadata"]["name"], expected[i].second) << i;
    EXPECT_EQ(events[i]["object"]["kind"], "Pod");
    EXPECT_GT(rv_of(events[i]["object"]), last_rv) << "resourceVersions must increase";
    last_rv = rv_of(events[i]["object"]);
  }
  EXPECT_EQ(events[1]["object"]["metadata"]["labels"]["v"], "2");
}

TEST_F(WatchTest, LiveEventsArriveWhileTheStreamIsOpen) {
  auto c = client();
  auto changer = when_watching([&] {
    server_.put(pod("live"));
    server_.put(pod("live", {{"istio.io/dataplane-mode", "ambient"}}));
  });
  std::vector<std::string> types;
  const auto end = c.watch(
      "/api/v1/namespaces/demo/pods?watch=true&resourceVersion=" + server_.resource_version(),
      [&](const json& e) {
        types.push_back(e["type"].get<std::string>());
        return types.size() < 2;
      },
      milliseconds(5000));
  changer.join();
  EXPECT_EQ(end, WatchEnd::kStopped);
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "MODIFIED"}));
}

TEST_F(WatchTest, WithoutResourceVersionTheCurrentStateComesFirst) {
  server_.put(pod("x"));
  server_.put(pod("y"));
  auto c = client();
  std::vector<std::string> names;
  c.watch(
      "/api/v1/pods",
      [&](const json& e) {
        EXPECT_EQ(e["type"], "ADDED");
        names.push_back(e["object"]["metadata"]["name"].get<std::string>());
        return names.size() < 2;
      },
      milliseconds(3000));
  EXPECT_EQ(names, (std::vector<std::string>{"x", "y"}));
}

TEST_F(WatchTest, ServerEndsTheStreamAtTimeoutSeconds) {
  auto c = client();
  const auto start = Clock::now();
  const auto end = c.watch(
      "/api/v1/namespaces?timeoutSeconds=1&resourceVersion=" + server_.resource_version(),
      [](const json&) { return true; }, milliseconds(10000));
  EXPECT_EQ(end, WatchEnd::kStreamEnded);
  EXPECT_LT(Clock::now() - start, milliseconds(5000));
}

TEST_F(WatchTest, CallerTimeoutEndsAQuietWatch) {
  auto c = client();
  const auto start = Clock::now();
  int events = 0;
  const auto end = c.watch(
      "/api/v1/pods?resourceVersion=" + server_.resource_version(),
      [&](const json&) { return ++events, true; }, milliseconds(300));
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(end, WatchEnd::kTimeout);
  EXPECT_EQ(events, 0);
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(2500));
}

TEST_F(WatchTest, BookmarksCarryTheCurrentResourceVersion) {
  auto c = client();
  server_.put(pod("p"));
  const std::string rv = server_.resource_version();
  auto changer = when_watching([&] { server_.send_bookmarks(); });
  json bookmark;
  c.watch(
      "/api/v1/namespaces/demo/pods?allowWatchBookmarks=true&resourceVersion=" + rv,
      [&](const json& e) {
        bookmark = e;
        return false;
      },
      milliseconds(5000));
  changer.join();
  EXPECT_EQ(bookmark["type"], "BOOKMARK");
  EXPECT_EQ(bookmark["object"]["kind"], "Pod");
  EXPECT_EQ(bookmark["object"]["metadata"]["resourceVersion"], rv);
}

TEST_F(WatchTest, NoBookmarksUnlessAllowed) {
  auto c = client();
  auto changer = when_watching([&] {
    server_.send_bookmarks();
    std::this_thread::sleep_for(milliseconds(50));
    server_.put(pod("after-bookmark"));
  });
  std::string first;
  c.watch(
      "/api/v1/namespaces/demo/pods?resourceVersion=" + server_.resource_version(),
      [&](const json& e) {
        first = e["type"].get<std::string>();
        return false;
      },
      milliseconds(5000));
  changer.join();
  EXPECT_EQ(first, "ADDED");
}

TEST_F(WatchTest, CompactedResourceVersionGetsA410ErrorEvent) {
  auto c = client();
  const std::string old_rv = server_.resource_version();
  server_.put(pod("p"));
  server_.compact_history();
  std::vector<json> events;
  const auto end = c.watch(
      "/api/v1/pods?resourceVersion=" + old_rv,
      [&](const json& e) { return events.push_back(e), true; }, milliseconds(3000));
  EXPECT_EQ(end, WatchEnd::kStreamEnded);  // the server closes after the ERROR event
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "ERROR");
  EXPECT_EQ(events[0]["object"]["kind"], "Status");
  EXPECT_EQ(events[0]["object"]["code"], 410);
  EXPECT_EQ(events[0]["object"]["reason"], "Expired");

  // From the current resourceVersion the watch is fine again (what a relist gives).
  auto changer = when_watching([&] { server_.put(pod("q")); });
  std::string type;
  c.watch(
      "/api/v1/pods?resourceVersion=" + server_.resource_version(),
      [&](const json& e) { return type = e["type"].get<std::string>(), false; },
      milliseconds(5000));
  changer.join();
  EXPECT_EQ(type, "ADDED");
}

TEST_F(WatchTest, DroppedStreamIsAnError) {
  auto c = client();
  auto changer = when_watching([&] { server_.drop_watches(); });
  const auto e = [&] {
    try {
      c.watch(
          "/api/v1/pods?resourceVersion=" + server_.resource_version(),
          [](const json&) { return true; }, milliseconds(5000));
    } catch (const ApiError& e) {
      return e;
    }
    return ApiError(Kind::kHttpError, -1, "no error");
  }();
  changer.join();
  EXPECT_EQ(e.kind(), Kind::kUnreachable) << e.what();
  EXPECT_NE(std::string(e.what()).find("WATCH /api/v1/pods?"), std::string::npos) << e.what();
  EXPECT_EQ(server_.open_watches(), 0);
}

TEST_F(WatchTest, LabelSelectorTransitionsAreAddedAndDeleted) {
  auto c = client();
  server_.put(pod("w"));
  auto changer = when_watching([&] {
    server_.put(pod("w", {{"istio.io/dataplane-mode", "ambient"}}));  // starts matching
    server_.put(pod("w", {{"istio.io/dataplane-mode", "ambient"}, {"x", "1"}}));
    server_.put(pod("w"));  // stops matching
  });
  std::vector<std::string> types;
  c.watch(
      "/api/v1/namespaces/demo/pods?labelSelector=istio.io%2Fdataplane-mode%3Dambient"
      "&resourceVersion=" +
          server_.resource_version(),
      [&](const json& e) {
        return types.push_back(e["type"].get<std::string>()), types.size() < 3;
      },
      milliseconds(5000));
  changer.join();
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "MODIFIED", "DELETED"}));
}

TEST_F(WatchTest, FieldSelectorOnNodeName) {
  auto c = client();
  const std::string rv = server_.resource_version();
  server_.put(pod("elsewhere", {}, "node-2"));
  server_.put(pod("here", {}, "node-1"));
  std::string name;
  c.watch(
      "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=" + rv,
      [&](const json& e) {
        return name = e["object"]["metadata"]["name"].get<std::string>(), false;
      },
      milliseconds(3000));
  EXPECT_EQ(name, "here");
}

TEST_F(WatchTest, UnauthorizedWatchThrows) {
  Kubeconfig config;
  config.server = server_.url();
  config.ca_pem = server_.ca_pem();
  Client anonymous(config, ClientOptions{});
  try {
    anonymous.watch(
        "/api/v1/pods", [](const json&) { return true; }, milliseconds(2000));
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.kind(), Kind::kUnauthorized);
    EXPECT_EQ(e.http_status(), 401);
  }
}

TEST_F(WatchTest, BadEventLineIsABadResponse) {
  server_.add_fault({.path_prefix = "/api/v1/pods", .bad_json = true});
  auto c = client();
  try {
    c.watch(
        "/api/v1/pods", [](const json&) { return true; }, milliseconds(2000));
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.kind(), Kind::kBadResponse) << e.what();
  }
}

TEST_F(WatchTest, ExceptionsFromTheCallbackPropagate) {
  server_.put(pod("p"));
  auto c = client();
  EXPECT_THROW(
      c.watch(
          "/api/v1/pods", [](const json&) -> bool { throw std::logic_error("handler failed"); },
          milliseconds(2000)),
      std::logic_error);
  // The client is still usable afterwards.
  EXPECT_EQ(c.get("/api/v1/namespaces/demo")["kind"], "Namespace");
}

}  // namespace
}  // namespace ambient::kube
