// The agent's pool of API clients: reused warm connections, and never more than its bound at
// once, however many callers (a full node's burst of ADDs) want one.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "agent/kube_access.h"
#include "tests/standins/apiserver/apiserver.h"

namespace ambient::agent {
namespace {

using namespace std::chrono_literals;

TEST(ApiPool, ABurstOfCallersSharesABoundedSetOfConnections) {
  testing::ApiServerStandin api;
  api.start();
  api.put({{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}});
  kube::Kubeconfig kc;
  kc.server = api.url();
  kc.ca_pem = api.ca_pem();
  kc.token = api.token();
  ApiPool pool(kc, kube::ClientOptions{});
  std::atomic<int> now{0}, most{0}, failures{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 40; ++i) {
    callers.emplace_back([&] {
      try {
        pool.with([&](kube::Client& c) {
          const int n = ++now;
          int seen = most.load();
          while (n > seen && !most.compare_exchange_weak(seen, n)) {
          }
          c.get("/api/v1/namespaces/demo");
          std::this_thread::sleep_for(20ms);  // the call takes a while: callers pile up
          --now;
          return 0;
        });
      } catch (const std::exception&) {
        ++failures;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(most.load(), 8) << "more clients at once than the pool's bound";
  EXPECT_GE(most.load(), 2) << "the callers did not overlap (test too weak)";
  std::set<int> connections;
  for (const auto& r : api.requests()) {
    if (r.path == "/api/v1/namespaces/demo") connections.insert(r.remote_port);
  }
  EXPECT_LE(connections.size(), 8u) << "a new connection per caller";
  api.stop();
}

}  // namespace
}  // namespace ambient::agent
