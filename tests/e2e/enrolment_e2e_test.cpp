// An enrolled ADD end to end: the plugin binary asks the real agent, which programs the pod's
// netns, hands it to the ztunnel stand-in over ZDS and marks the pod in the API stand-in; then
// real traffic between pods goes through the stand-in's proxies.
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/metrics.h"
#include "agent/pod_table.h"
#include "tests/support/node_env.h"
#include "tests/support/testbed.h"
#include "tests/support/wait.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using e2e::Pod;
using nlohmann::json;

class Enrolment : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed::sweep_leftover_namespaces();
    topo_ = std::make_unique<testbed::Topology>(/*with_vm=*/true);
    env_ =
        std::make_unique<e2e::Env>(::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                   testbed::Topology::path(topo_->host()));
    run_dir_ = env_->run_dir();
    a_ = {"demo",          "a",   "uid-a", testbed::Topology::path(topo_->pod()), "10.199.1.2",
          "fd00:199:1::2", "ca0a"};
    b_ = {"demo",          "b",   "uid-b", testbed::Topology::path(topo_->remote()), "10.199.2.2",
          "fd00:199:2::2", "ca0b"};
    c_ = {"legacy", "c", "uid-c", testbed::Topology::path(topo_->vm()), "10.199.3.2", "", "ca0c"};
    auto& api = env_->api();
    api.put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
    api.put(e2e::ns_object("legacy"));
    for (const auto* p : {&a_, &b_, &c_}) api.put(e2e::pod_object(*p));
  }

  void TearDown() override {
    if (HasFailure()) env_->keep_run_dir();
    env_.reset();
    topo_.reset();
  }

  void start_agent() { env_->start_agent(); }
  agent::AgentOptions agent_options() const { return env_->agent_options(); }
  json prev_result(const Pod& p) const { return env_->prev_result(p); }
  testing::Execution cni(const char* verb, const Pod& p, bool with_prev = true,
                         const std::string& netns = "-") const {
    return env_->cni(verb, p, with_prev, netns);
  }
  std::string annotation(const Pod& p) const { return env_->annotation(p); }
  static netns::RedirectStatus rules(const Pod& p) { return e2e::Env::rules(p); }
  void expect_enrolled(const Pod& p) {
    EXPECT_TRUE(ztunnel().pods().contains(p.uid)) << p.name;
    EXPECT_EQ(annotation(p), "enabled") << p.name;
    EXPECT_EQ(rules(p), netns::RedirectStatus::Current) << p.name;
  }
  void expect_clean(const Pod& p) {
    EXPECT_FALSE(ztunnel().pods().contains(p.uid)) << p.name;
    EXPECT_EQ(rules(p), netns::RedirectStatus::Absent) << p.name;
  }
  standins::ZtunnelStandin& ztunnel() { return env_->ztunnel(); }

  std::unique_ptr<testbed::Topology> topo_;
  std::unique_ptr<e2e::Env> env_;
  fs::path run_dir_;
  Pod a_, b_, c_;
};

TEST_F(Enrolment, EnrolledAddThenPodToPodTrafficGoesThroughZtunnel) {
  start_agent();
  for (const auto* p : {&a_, &b_}) {
    const auto x = cni("ADD", *p);
    ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
    EXPECT_EQ(json::parse(x.out), prev_result(*p));
    expect_enrolled(*p);
  }
  const auto reqs = ztunnel().requests();
  EXPECT_NE(std::find(reqs.begin(), reqs.end(), "add uid-a a demo a-sa fd=1"), reqs.end());

  testbed::TcpServer app(topo_->remote(), AF_INET, 8080, "app-b");
  const auto r = testbed::tcp_exchange(topo_->pod(), b_.ip4, 8080, "hello");
  ASSERT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.reply, "app-b:hello");
  // A's ztunnel took it outbound, B's inbound, and B's app saw A's own address (transparent).
  const auto out_a = ztunnel().connections(a_.uid);
  const auto in_b = ztunnel().connections(b_.uid);
  ASSERT_FALSE(out_a.empty());
  EXPECT_EQ(out_a.back().direction, "outbound");
  EXPECT_EQ(out_a.back().original_dst, b_.ip4 + ":8080");
  ASSERT_FALSE(in_b.empty());
  EXPECT_EQ(in_b.back().direction, "inbound");
  EXPECT_EQ(in_b.back().original_dst, b_.ip4 + ":8080");
  EXPECT_EQ(app.peers().back(), a_.ip4);
}

TEST_F(Enrolment, UntouchedPodIsNeitherInZtunnelNorCaptured) {
  start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  env_->api().clear_requests();
  const auto x = cni("ADD", c_);
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  expect_clean(c_);
  // The plugin asked the agent, which read the pod fresh on its own warm connection.
  EXPECT_NE(env_->agent().metrics().render().find("op=\"decide\",result=\"untouched\""),
            std::string::npos);
  EXPECT_EQ(annotation(c_), "");
  // Its app is reached directly, by the client's own address: nothing redirected it.
  testbed::TcpServer app(topo_->vm(), AF_INET, 9090, "c");
  const auto r = testbed::tcp_exchange(topo_->pod(), c_.ip4, 9090, "x");
  EXPECT_EQ(r.reply, "c:x") << r.error;
  EXPECT_EQ(app.peers().back(), "10.199.3.1");
  EXPECT_TRUE(ztunnel().pods().empty());
}

TEST_F(Enrolment, DelReleasesEverything) {
  start_agent();
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  // containerd: three DELs, the 2nd and 3rd without netns or prevResult.
  EXPECT_EQ(cni("DEL", a_).exit_code, 0);
  EXPECT_EQ(cni("DEL", a_, false, "").exit_code, 0);
  EXPECT_EQ(cni("DEL", a_, false, "").exit_code, 0);
  expect_clean(a_);
  EXPECT_EQ(annotation(a_), "");
  EXPECT_EQ(env_->agent().pods().size(), 0u);
  EXPECT_FALSE(fs::exists(run_dir_ / "pods" / (a_.container + ".json")));
  EXPECT_FALSE(fs::exists(run_dir_ / "enrolled" / (a_.uid + ".json")));
}

TEST_F(Enrolment, NackingZtunnelFailsTheAddAndLeavesNothing) {
  start_agent();
  ASSERT_TRUE(ztunnel().wait_for([&] { return ztunnel().connected(); }, 5s));
  ztunnel().set_nack("proxy setup failed");
  const auto x = cni("ADD", a_);
  EXPECT_NE(x.exit_code, 0);
  const auto err = json::parse(x.out);
  EXPECT_EQ(err["code"], 11);
  EXPECT_NE(err.value("details", "").find("proxy setup failed"), std::string::npos) << x.out;
  expect_clean(a_);
  EXPECT_EQ(annotation(a_), "pending");
  EXPECT_EQ(env_->agent().pods().size(), 0u);
  // The kubelet retries once ztunnel recovers.
  ztunnel().set_nack("");
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  expect_enrolled(a_);
}

TEST_F(Enrolment, HangingOrAbsentZtunnelFailsWithinTheDeadline) {
  auto o = agent_options();
  o.ztunnel_deadline = 1s;
  env_->start_agent(o);
  ASSERT_TRUE(ztunnel().wait_for([&] { return ztunnel().connected(); }, 5s));
  ztunnel().set_hang(true);
  auto t0 = std::chrono::steady_clock::now();
  auto x = cni("ADD", a_);
  EXPECT_EQ(json::parse(x.out)["code"], 11) << x.out;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  expect_clean(a_);

  env_->stop_ztunnel();  // gone entirely
  t0 = std::chrono::steady_clock::now();
  x = cni("ADD", a_);
  EXPECT_EQ(json::parse(x.out)["code"], 11) << x.out;
  EXPECT_NE(x.out.find("no ztunnel"), std::string::npos) << x.out;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  EXPECT_EQ(rules(a_), netns::RedirectStatus::Absent);
}

TEST_F(Enrolment, AgentDownFailsEnrolledAddOnly) {
  // No agent at all: enrolled ADD fails closed, untouched ADD and DEL succeed.
  auto x = cni("ADD", a_);
  EXPECT_EQ(json::parse(x.out)["code"], 11);
  EXPECT_NE(x.out.find("node agent unavailable"), std::string::npos);
  EXPECT_EQ(rules(a_), netns::RedirectStatus::Absent);
  EXPECT_EQ(cni("ADD", c_).exit_code, 0);
  EXPECT_EQ(cni("DEL", a_).exit_code, 0);
  EXPECT_TRUE(fs::exists(run_dir_ / "tombstones" / (a_.container + ".json")));
}

TEST_F(Enrolment, CheckFollowsTheRules) {
  start_agent();
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  EXPECT_EQ(cni("CHECK", a_).exit_code, 0);
  testbed::must("ip netns exec " + topo_->pod() + " nft flush table inet istio-ambient-nat");
  const auto x = cni("CHECK", a_);
  EXPECT_NE(x.exit_code, 0);
  EXPECT_NE(x.out.find("not in place"), std::string::npos) << x.out;
}

TEST_F(Enrolment, HealthReadinessAndMetricsEndpoints) {
  auto o = agent_options();
  o.listen_address = "127.0.0.1";
  o.health_port = 0;
  o.metrics_port = 0;
  env_->start_agent(o);
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  httplib::Client health("127.0.0.1", env_->agent().health_port());
  httplib::Client metrics("127.0.0.1", env_->agent().metrics_port());
  const auto live = health.Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  const auto ready = health.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  const auto m = metrics.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  for (const char* line : {"ambient_cni_enrolled_pods 1", "ambient_cni_ztunnel_connections 1",
                           "ambient_cni_requests_total{op=\"add\",result=\"ok\"} 1",
                           "ambient_cni_add_duration_seconds_count 1"}) {
    EXPECT_NE(m->body.find(line), std::string::npos) << line << "\n" << m->body;
  }
  env_->stop_agent();  // a stopped agent is not ready (and not listening)
  EXPECT_FALSE(health.Get("/readyz"));
}

namespace attack {

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_some(int fd) {
  char buf[512];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace attack

// Anyone who reaches a node IP reaches these ports (decision 012): slow clients must not starve
// the kubelet's probe, a huge body must not be read, an oversized head is refused.
TEST_F(Enrolment, HealthAndMetricsPortsWithstandAbuse) {
  auto o = agent_options();
  o.listen_address = "127.0.0.1";
  o.health_port = 0;
  o.metrics_port = 0;
  env_->start_agent(o);
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  const int health = env_->agent().health_port();
  const int metrics = env_->agent().metrics_port();

  // 100 connections that never finish their request, then a probe.
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) {
    const int fd = attack::connect_to(health);
    ASSERT_GE(fd, 0);
    const std::string partial = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    ASSERT_EQ(::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(partial.size()));
    slow.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  httplib::Client probe("127.0.0.1", health);
  probe.set_read_timeout(2, 0);
  const auto live = probe.Get("/healthz");
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
  ASSERT_TRUE(live) << "the probe got no answer while 100 slow clients were connected";
  EXPECT_EQ(live->status, 200);
  std::cout << "/healthz answered in " << ms.count() << " ms with 100 slow clients connected\n";
  for (const int fd : slow) ::close(fd);

  // A 1 GiB POST: refused before its body, which is never buffered.
  const long before = attack::rss_kb();
  const int post = attack::connect_to(metrics);
  ASSERT_GE(post, 0);
  const std::string head =
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n";
  ASSERT_GT(::send(post, head.data(), head.size(), MSG_NOSIGNAL), 0);
  const std::string chunk(1 << 20, 'x');
  std::size_t sent = 0;
  for (int i = 0; i < 64; ++i) {  // as much as the server will take, up to 64 MiB
    const ssize_t n = ::send(post, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  const std::string reply = attack::read_some(post);
  ::close(post);
  EXPECT_TRUE(reply.empty() || reply.rfind("HTTP/1.1 413", 0) == 0) << reply;
  EXPECT_LT(sent, std::size_t{64} << 20) << "the server kept reading the body";
  EXPECT_LT(std::abs(attack::rss_kb() - before), 5 * 1024) << "RSS moved with the body";

  // A request head past 8 KiB.
  const int big = attack::connect_to(health);
  ASSERT_GE(big, 0);
  const std::string huge = "GET /healthz HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n";
  ::send(big, huge.data(), huge.size(), MSG_NOSIGNAL);
  EXPECT_EQ(attack::read_some(big).rfind("HTTP/1.1 431", 0), 0u);
  ::close(big);
  // And the endpoints still serve.
  const auto again = probe.Get("/readyz");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(Enrolment, ZtunnelReconnectGetsAFullSnapshot) {
  start_agent();
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  ASSERT_EQ(cni("ADD", b_).exit_code, 0);
  const auto before = ztunnel().snapshots();
  ztunnel().disconnect();
  ASSERT_TRUE(ztunnel().wait_for([&] { return ztunnel().snapshots() > before; }, 10s));
  auto snap = ztunnel().last_snapshot();
  std::sort(snap.begin(), snap.end());
  EXPECT_EQ(snap, (std::vector<std::string>{"uid-a", "uid-b"}));
  // The old connection is dropped (and counted) once the agent notices it is dead.
  EXPECT_TRUE(testing::wait_until([&] {
    return env_->agent().metrics().render().find(
               R"(ambient_cni_degraded_total{what="ztunnel_disconnected"} 1)") != std::string::npos;
  }));
}

// The sandbox's pod, not another one of the same name: a StatefulSet's pod replaced under the
// same name (new uid), or the name on another node, is never enrolled in its place.
TEST_F(Enrolment, AnAddForAnotherPodOfTheSameNameIsRefused) {
  start_agent();
  auto replaced = e2e::pod_object(a_);
  replaced["metadata"]["uid"] = "uid-a-new";
  env_->api().put(replaced);
  auto x = cni("ADD", a_);  // K8S_POD_UID=uid-a: the old pod's sandbox
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_EQ(json::parse(x.out)["code"], 11);
  EXPECT_NE(json::parse(x.out)["msg"].get<std::string>().find(
                "in the API has uid uid-a-new, but the sandbox is for uid uid-a"),
            std::string::npos)
      << x.out;
  expect_clean(a_);
  EXPECT_FALSE(ztunnel().pods().contains("uid-a-new"));

  auto elsewhere = e2e::pod_object(b_);
  elsewhere["spec"]["nodeName"] = "node-2";
  env_->api().put(elsewhere);
  x = cni("ADD", b_);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_NE(x.out.find("scheduled on node 'node-2', not on this node (node-1)"), std::string::npos)
      << x.out;
  expect_clean(b_);
}

// A pod with a 200 KiB annotation: the agent reads it, the plugin's messages stay small, and the
// plugin never falls back to reading the API itself (which a truncated reply once made it do).
TEST_F(Enrolment, AHugeAnnotationNeitherBreaksNorBypassesTheAgent) {
  start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  auto big = e2e::pod_object(a_);
  big["metadata"]["annotations"] = {{"example.com/blob", std::string(200 * 1024, 'x')}};
  env_->api().put(big);
  ASSERT_EQ(cni("ADD", b_).exit_code, 0);
  env_->api().clear_requests();
  const auto x = cni("ADD", a_);
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  expect_enrolled(a_);
  // (by User-Agent: the agent's pool may open a connection of its own for its parallel reads)
  int agent_reads = 0;
  for (const auto& r : env_->api().requests()) {
    EXPECT_EQ(r.user_agent.find("ambient-cni-plugin"), std::string::npos)
        << "the plugin read the API itself: " << r.method << " " << r.path;
    agent_reads += r.user_agent.starts_with("ambient-cni-agent") && r.method == "GET";
  }
  EXPECT_GE(agent_reads, 2) << "the agent read the pod and its namespace";
  EXPECT_EQ(x.err.find("node agent unavailable"), std::string::npos) << x.err;
}

// CNI STATUS (spec 1.1.0) is 50 until the agent can enrol pods, so a runtime that asks keeps
// the node's pods back instead of starting them outside the mesh (decision 011).
TEST_F(Enrolment, StatusIsNotAvailableUntilTheAgentIsReady) {
  const auto status = [&](bool checks_agent) {
    auto c = env_->conf();
    c["cniVersion"] = "1.1.0";
    c["kubeconfig"] = (run_dir_ / "kubeconfig").string();
    c["status_checks_agent"] = checks_agent;
    return testing::run({AMBIENT_PLUGIN_BIN},
                        {"CNI_COMMAND=STATUS", "CNI_CONTAINERID=", "CNI_NETNS=", "CNI_IFNAME=",
                         "CNI_ARGS=", "CNI_PATH=/opt/cni/bin"},
                        c.dump(), 30s);
  };
  auto x = status(true);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_EQ(json::parse(x.out)["code"], 50) << x.out;
  EXPECT_EQ(status(false).exit_code, 0) << "informational when switched off";
  start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  x = status(true);
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  env_->stop_agent();
  x = status(true);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_EQ(json::parse(x.out)["code"], 50);
}

// The persisted path names another namespace after a restart (the sandbox was replaced): the
// new namespace gets none of the old pod's rules, and the old enrolment is forgotten (Istio
// #61211, #61182).
TEST_F(Enrolment, ARestartNeverProgramsANamespaceThatReplacedTheEnrolledOne) {
  start_agent();
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  ASSERT_EQ(rules(a_), netns::RedirectStatus::Current);
  env_->stop_agent();
  const std::string name = fs::path(a_.netns).filename();
  testbed::must("ip netns del " + name);
  testbed::must("ip netns add " + name);  // same path, another namespace
  testbed::must("ip -n " + name + " link set lo up");
  start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  EXPECT_EQ(rules(a_), netns::RedirectStatus::Absent) << "the new namespace got the old rules";
  EXPECT_FALSE(env_->agent().pods().get(a_.uid).has_value());
  EXPECT_NE(env_->agent().metrics().render().find(
                R"(ambient_cni_degraded_total{what="netns_replaced"} 1)"),
            std::string::npos);
}

// A state file torn by a crash (or written by something else) is reported and skipped; every
// other enrolled pod is restored.
TEST_F(Enrolment, RestartReportsTornStateAndRestoresTheRest) {
  start_agent();
  ASSERT_EQ(cni("ADD", a_).exit_code, 0);
  env_->stop_agent();
  std::ofstream(run_dir_ / "enrolled" / "uid-torn.json") << R"({"pod":{"containerID":"c)";
  start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  EXPECT_TRUE(env_->agent().pods().get(a_.uid).has_value());
  EXPECT_NE(env_->agent().metrics().render().find(
                R"(ambient_cni_degraded_total{what="run_dir_unreadable"} 1)"),
            std::string::npos);
  std::ifstream log(run_dir_ / "agent.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("run dir: ignoring " + (run_dir_ / "enrolled" / "uid-torn.json").string() +
                      ": not JSON (torn or foreign file)"),
            std::string::npos);
}

// kill -9 of the agent process with 50 enrolled pods: a new agent restores them all and hands
// ztunnel a complete snapshot; traffic keeps flowing.
TEST_F(Enrolment, AgentKilledAndRestartedKeepsEveryPod) {
  std::vector<Pod> pods = {a_, b_};
  std::vector<std::string> extra;
  for (int i = 0; i < 48; ++i) {
    const std::string name = topo_->host() + "-x" + std::to_string(i);
    testbed::must("ip netns add " + name);
    extra.push_back(name);
    Pod p{"demo",
          "x" + std::to_string(i),
          "uid-x" + std::to_string(i),
          testbed::Topology::path(name),
          "10.199.50." + std::to_string(i + 1),
          "",
          "cx" + std::to_string(i)};
    env_->api().put(e2e::pod_object(p));
    pods.push_back(p);
  }
  const auto cleanup = [&] {
    for (const auto& n : extra) testbed::sh("ip netns del " + n);
  };
  const auto o = agent_options();
  const std::vector<std::string> argv = {AMBIENT_NODE_BIN,   "agent",
                                         "--run-dir",        o.run_dir,
                                         "--ztunnel-socket", o.ztunnel_socket,
                                         "--kubeconfig",     o.kubeconfig,
                                         "--host-netns",     o.host_netns,
                                         "--health-port",    "-1",
                                         "--metrics-port",   "-1"};
  const auto log = (run_dir_ / "agent-process.log").string();
  auto agent = std::make_unique<testing::BackgroundProcess>(argv, log);
  const auto socket_up = [&] {
    for (int i = 0; i < 2000 && !fs::exists(run_dir_ / "agent.sock"); ++i)
      std::this_thread::sleep_for(10ms);
  };
  socket_up();
  for (const auto& p : pods) {
    const auto x = cni("ADD", p);
    ASSERT_EQ(x.exit_code, 0) << p.name << x.out << x.err;
  }
  ASSERT_EQ(ztunnel().pods().size(), 50u);
  EXPECT_EQ(agent->stop(SIGKILL), 128 + SIGKILL);

  const auto before = ztunnel().snapshots();
  agent = std::make_unique<testing::BackgroundProcess>(argv, log);
  ASSERT_TRUE(ztunnel().wait_for([&] { return ztunnel().snapshots() > before; }, 20s));
  EXPECT_EQ(ztunnel().last_snapshot().size(), 50u);
  EXPECT_EQ(ztunnel().pods().size(), 50u);
  testbed::TcpServer app(topo_->remote(), AF_INET, 8080, "app-b");
  const auto r = testbed::tcp_exchange(topo_->pod(), b_.ip4, 8080, "after restart");
  EXPECT_EQ(r.reply, "app-b:after restart");
  EXPECT_EQ(ztunnel().connections(a_.uid).back().direction, "outbound");
  agent->stop(SIGTERM);
  for (const auto& p : pods) EXPECT_EQ(cni("DEL", p).exit_code, 0);
  cleanup();
}

}  // namespace
}  // namespace ambient
