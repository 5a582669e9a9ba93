// The run-dir store and the agent.sock messages: formats (including what older agents wrote),
// one way to write (atomic, 0600 files in 0700 directories), and torn or foreign files reported
// the same way by every reader.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/errors.h"
#include "rundir/messages.h"
#include "rundir/store.h"
#include "tests/support/scratch_dir.h"

namespace ambient::rundir {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class RunDirTest : public ::testing::Test {
 protected:
  RunDir dir() const { return RunDir(path_.string()); }
  static mode_t mode_of(const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
  }

  ambient::testing::ScratchDir scratch_{"rundir"};
  const fs::path& path_ = scratch_.path();
};

PodRecord record(const std::string& id) {
  return {id,     "/var/run/netns/" + id,  "eth0", "uid-" + id, "web",
          "demo", {"10.0.0.5", "fd00::5"}, "k8s"};
}

TEST_F(RunDirTest, RecordsRoundTripWithModesWhateverTheUmask) {
  const mode_t old = ::umask(0);
  dir().write_record(record("c1"));
  ::umask(old);
  EXPECT_EQ(dir().read_record("c1"), record("c1"));
  EXPECT_EQ(mode_of(path_ / "pods" / "c1.json"), 0600u);
  EXPECT_EQ(mode_of(path_ / "pods"), 0700u);
  EXPECT_EQ(dir().records(), std::vector<PodRecord>{record("c1")});
  dir().remove_record("c1");
  dir().remove_record("c1");  // twice: fine
  EXPECT_FALSE(dir().read_record("c1").has_value());
}

TEST_F(RunDirTest, TornAndForeignFilesAreReportedTheSameWay) {
  dir().write_record(record("good"));
  std::ofstream(path_ / "pods" / "torn.json") << R"({"containerID":"torn","na)";
  std::ofstream(path_ / "pods" / "foreign.json") << R"({"hello":"world"})";
  std::ofstream(path_ / "pods" / "README") << "not ours";
  std::ofstream(path_ / "pods" / ".ambient-cni-tmp.x.json.1.0") << "in flight";
  std::vector<Problem> problems;
  EXPECT_EQ(dir().records(&problems), std::vector<PodRecord>{record("good")});
  ASSERT_EQ(problems.size(), 3u);  // the temp file is a write in flight, not a problem
  std::map<std::string, std::string> by_file;
  for (const auto& p : problems) by_file[fs::path(p.path).filename()] = p.error;
  EXPECT_EQ(by_file["torn.json"], "not JSON (torn or foreign file)");
  EXPECT_EQ(by_file["foreign.json"], "name: is required");
  EXPECT_EQ(by_file["README"], "not a .json file of ours");
  problems.clear();
  EXPECT_FALSE(dir().read_record("torn", &problems).has_value());
  EXPECT_EQ(problems.size(), 1u);
}

// Anyone else who can drop a file in the run dir must not name a netns for the agent to enter or
// a pod for it to release: only files owned by us (root, on a node) are read.
TEST_F(RunDirTest, FilesNotOwnedByUsAreIgnoredAndReported) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown)";
  dir().write_record(record("mine"));
  dir().write_record(record("planted"));
  ASSERT_EQ(::chown((path_ / "pods" / "planted.json").c_str(), 1000, 1000), 0);
  dir().write_tombstone(record("planted"));
  ASSERT_EQ(::chown((path_ / "tombstones" / "planted.json").c_str(), 1000, 1000), 0);
  std::vector<Problem> problems;
  EXPECT_EQ(dir().records(&problems), std::vector<PodRecord>{record("mine")});
  EXPECT_TRUE(dir().take_tombstones(&problems).empty());
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].error, "owned by uid 1000, not by us (uid 0)");
  EXPECT_EQ(problems[1].error, "owned by uid 1000, not by us (uid 0)");
}

TEST_F(RunDirTest, ASymlinkIsNotFollowed) {
  fs::create_directories(path_ / "pods");
  std::ofstream(path_ / "elsewhere.json") << rundir::to_json(record("c1")).dump();
  fs::create_symlink(path_ / "elsewhere.json", path_ / "pods" / "c1.json");
  std::vector<Problem> problems;
  EXPECT_FALSE(dir().read_record("c1", &problems).has_value());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].error.find("cannot open"), std::string::npos) << problems[0].error;
}

TEST_F(RunDirTest, EnrolmentsRoundTripAndOldAgentsStateStillReads) {
  Enrolment e;
  e.pod = record("c1");
  e.service_account = "web-sa";
  e.redirect.dns_capture = false;
  e.redirect.reroute_interfaces = {"tap0"};
  dir().write_enrolled(e);
  const auto back = dir().enrolled();
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].pod, e.pod);
  EXPECT_EQ(back[0].service_account, "web-sa");
  EXPECT_EQ(back[0].redirect, e.redirect);
  EXPECT_TRUE(fs::exists(path_ / "enrolled" / "uid-c1.json"));
  // What agents before the store wrote: the plugin's "add" request, op included.
  std::ofstream(path_ / "enrolled" / "uid-old.json") << R"({"op":"add","pod":{"containerID":"c0",
    "netns":"/var/run/netns/c0","ifname":"eth0","uid":"uid-old","name":"old","namespace":"demo",
    "ips":["10.0.0.9"]},"serviceAccount":"default","redirect":{"dnsCapture":true,"ipv6":true,
    "bypassInboundCapture":false,"rerouteInterfaces":[]}})";
  EXPECT_EQ(dir().enrolled().size(), 2u);
  dir().remove_enrolled("uid-c1");
  EXPECT_EQ(dir().enrolled().size(), 1u);
  // An enrolment without a pod UID cannot be owed to anyone.
  std::ofstream(path_ / "enrolled" / "nouid.json") << R"({"pod":{"name":"x","namespace":"y"}})";
  std::vector<Problem> problems;
  EXPECT_EQ(dir().enrolled(&problems).size(), 1u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].error, "pod.uid: is required");
}

TEST_F(RunDirTest, TombstonesAreTakenOnce) {
  dir().write_tombstone(record("c1"));
  dir().write_tombstone(record("c2"));
  std::ofstream(path_ / "tombstones" / "bad.json") << "{";
  std::vector<Problem> problems;
  EXPECT_EQ(dir().take_tombstones(&problems).size(), 2u);
  EXPECT_EQ(problems.size(), 1u);
  EXPECT_TRUE(dir().take_tombstones().empty());
  EXPECT_TRUE(fs::is_empty(path_ / "tombstones"));  // the unreadable one is gone too
}

TEST_F(RunDirTest, AWriteWhereTheDirectoryCannotBeIsAnError) {
  std::ofstream(path_ / "pods") << "a file, not a directory";
  EXPECT_THROW(dir().write_record(record("c1")), std::exception);
}

TEST(AgentMessages, RequestAndReplyRoundTrip) {
  AgentRequest r{"add", record("c1")};
  const auto back = agent_request_from_json(to_json(r));
  EXPECT_EQ(back.op, "add");
  EXPECT_EQ(back.pod, r.pod);

  const auto ok = agent_reply_from_json(to_json(AgentReply::success(true, "pod label ambient")));
  EXPECT_TRUE(ok.ok);
  EXPECT_TRUE(ok.enrolled);
  EXPECT_EQ(ok.reason, "pod label ambient");

  auto bad = AgentReply::failure(11, "looking up pod demo/web: 401", "details");
  bad.undecided = true;
  const auto back_bad = agent_reply_from_json(to_json(bad));
  EXPECT_FALSE(back_bad.ok);
  EXPECT_EQ(back_bad.code, 11);
  EXPECT_EQ(back_bad.details, "details");
  EXPECT_TRUE(back_bad.undecided);
}

TEST(AgentMessages, MalformedOnesNameWhatIsWrong) {
  const auto err = [](const char* text, bool request) {
    try {
      const auto j = json::parse(text);
      request ? (void)agent_request_from_json(j) : (void)agent_reply_from_json(j);
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err(R"({"op":"explode","pod":{}})", true), "op: unknown operation explode");
  EXPECT_EQ(err(R"({"op":"add"})", true), "pod: is required");
  EXPECT_EQ(err(R"({"op":"status"})", true), "no error");  // about the agent: no pod
  EXPECT_EQ(err(R"({"op":"add","pod":{"name":"w","namespace":"d"}})", true),
            "pod.containerID: is required");
  EXPECT_EQ(err(R"({"ok":false})", false), "code: must be an integer");
  EXPECT_EQ(err(R"([1])", false), "reply: must be an object");
}

// "pods" (`ambient-cni-node status`): a page request, and a listing that comes back whole.
TEST(AgentMessages, ThePodsListingRoundTrips) {
  AgentRequest r;
  r.op = "pods";
  r.offset = 200;
  EXPECT_EQ(to_json(r), json::parse(R"({"op":"pods","offset":200})"));
  EXPECT_EQ(agent_request_from_json(to_json(r)).offset, 200u);

  AgentView v;
  v.node = "node-1";
  v.ready = false;
  v.not_ready = "startup reconcile not done";
  v.ztunnel_connections = 1;
  v.total = 2;
  HeldPod held;
  held.uid = "u1";
  held.name = "web";
  held.namespace_ = "demo";
  held.state = "enrolled";
  held.held = true;
  held.ztunnel_acked = true;
  held.ztunnel_connection = 3;
  held.since = 1764000000;
  held.container_id = "c1";
  held.netns = "/var/run/netns/cni-1";
  held.ips = {"10.0.0.5"};
  HeldPod failed;
  failed.uid = "u2";
  failed.name = "broken";
  failed.namespace_ = "demo";
  failed.state = "waiting";
  failed.last_error = "ztunnel did not take pod demo/broken";
  failed.last_error_at = 1764000100;
  v.pods = {held, failed};
  auto reply = AgentReply::success(false, "pods");
  reply.view = v;
  const auto back = agent_reply_from_json(json::parse(to_json(reply).dump()));
  ASSERT_TRUE(back.view.has_value());
  EXPECT_EQ(*back.view, v);
  // Other replies carry no listing.
  EXPECT_FALSE(agent_reply_from_json(to_json(AgentReply::success(true, "x"))).view.has_value());
}

TEST(AgentMessages, WhatLeavesTheNodeCarriesNoPathsOrAddresses) {
  HeldPod p;
  p.uid = "u1";
  p.state = "enrolled";
  p.container_id = "c1";
  p.netns = "/var/run/netns/cni-1";
  p.ips = {"10.0.0.5"};
  const auto remote = to_json(p, /*node_local=*/false);
  EXPECT_FALSE(remote.contains("netns"));
  EXPECT_FALSE(remote.contains("containerID"));
  EXPECT_FALSE(remote.contains("ips"));
  EXPECT_EQ(to_json(p)["netns"], "/var/run/netns/cni-1");
}

TEST(AgentMessages, AMalformedListingNamesTheField) {
  const auto err = [](const char* text) {
    try {
      (void)agent_reply_from_json(json::parse(text));
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err(R"({"ok":true,"agent":{"pods":{}}})"), "pods: must be an array");
  EXPECT_EQ(err(R"({"ok":true,"agent":{"pods":[{"uid":"u"}]}})"), "state: is required");
  EXPECT_EQ(err(R"({"ok":true,"agent":{"total":-1}})"), "total: must be an unsigned integer");
  EXPECT_EQ(err(R"({"ok":true,"agent":{"pods":[{"uid":"u","state":"x","since":"x"}]}})"),
            "since: must be an integer");
}

TEST_F(RunDirTest, TheEnrolmentTimeIsKept) {
  const RunDir dir = this->dir();
  Enrolment e;
  e.pod = {"c1", "/var/run/netns/x", "eth0", "u1", "web", "demo", {"10.0.0.5"}, "k8s"};
  e.enrolled_at = 1764000000;
  dir.write_enrolled(e);
  ASSERT_EQ(dir.enrolled().size(), 1u);
  EXPECT_EQ(dir.enrolled()[0].enrolled_at, 1764000000);
  EXPECT_EQ(enrolment_from_json(json::parse(R"({"pod":{"uid":"u","name":"n","namespace":"d"}})"))
                .enrolled_at,
            0);  // state written before it was recorded
}

}  // namespace
}  // namespace ambient::rundir
