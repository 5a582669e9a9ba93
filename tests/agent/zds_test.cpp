// ZDS: our encoding against byte fixtures built from the contract's field numbers, and the server
// against a raw client and against the ztunnel stand-in.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "agent/zds_server.h"
#include "agent/zds_wire.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"

namespace ambient::agent {
namespace {

using namespace std::chrono_literals;

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

// Field numbers from ambient-contract.md §6, written out by hand.
TEST(ZdsWire, AddCarriesUidAndWorkloadInfo) {
  const auto got = zds::encode_add({"u1", "web", "demo", "sa", 7});
  // WorkloadRequest.add (1) { uid (1) "u1", workload_info (2) { name (1), namespace (2), sa (3) } }
  const auto want = bytes({0x0a, 0x15, 0x0a, 0x02, 'u', '1', 0x12, 0x0f, 0x0a, 0x03, 'w', 'e',
                           'b',  0x12, 0x04, 'd',  'e', 'm', 'o',  0x1a, 0x02, 's',  'a'});
  EXPECT_EQ(got, want);
}

TEST(ZdsWire, WorkloadInfoIsSentEvenWhenEmpty) {
  // ztunnel >= 1.24 stops handling pods after an add without workload_info.
  EXPECT_EQ(zds::encode_add({"u", "", "", "", 3}),
            bytes({0x0a, 0x05, 0x0a, 0x01, 'u', 0x12, 0x00}));
}

TEST(ZdsWire, DelUsesFieldTwoKeepFiveSnapshotThree) {
  EXPECT_EQ(zds::encode_del("u1"), bytes({0x12, 0x04, 0x12, 0x02, 'u', '1'}));
  EXPECT_EQ(zds::encode_keep("u1"), bytes({0x2a, 0x04, 0x0a, 0x02, 'u', '1'}));
  EXPECT_EQ(zds::encode_snapshot_sent(), bytes({0x1a, 0x00}));
}

TEST(ZdsWire, DecodesHelloAndAcks) {
  EXPECT_EQ(zds::decode_hello(bytes({0x08, 0x01})), 1);
  EXPECT_EQ(zds::decode_ack(bytes({0x0a, 0x00})), "");
  EXPECT_EQ(zds::decode_ack(bytes({0x0a, 0x05, 0x0a, 0x03, 'b', 'a', 'd'})), "bad");
  EXPECT_THROW(zds::decode_ack(""), ZdsError);  // a response without its Ack
  EXPECT_THROW(zds::decode_ack(bytes({0xff, 0xff})), ZdsError);
}

TEST(ZdsWire, RefusesMessagesOver1024Bytes) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  try {
    zds::send_datagram(sv[0], std::string(1025, 'x'), -1, deadline);
    FAIL();
  } catch (const ZdsError& e) {
    EXPECT_EQ(e.kind(), ZdsError::Kind::kProtocol);
  }
  // A peer's oversized datagram is truncated at 1024 and reported.
  const std::string big(2000, 'y');
  ASSERT_EQ(::send(sv[1], big.data(), big.size(), 0), 2000);
  try {
    zds::recv_datagram(sv[0], deadline);
    FAIL();
  } catch (const ZdsError& e) {
    EXPECT_EQ(e.kind(), ZdsError::Kind::kProtocol);
    EXPECT_NE(std::string(e.what()).find("1024"), std::string::npos);
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

// A client written against raw bytes, so the server is checked against the contract too.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& b) {
    ASSERT_EQ(::send(fd_, b.data(), b.size(), 0), (ssize_t)b.size());
  }
  // Returns the datagram and how many fds came with it.
  std::pair<std::string, int> recv() {
    char buf[1024];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 2)];
    iovec iov{buf, sizeof buf};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd_, &m, 0);
    int fds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      const int count = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(fd);
      }
      fds += count;
    }
    return {n > 0 ? std::string(buf, n) : std::string(), fds};
  }
  void ack() { send(bytes({0x0a, 0x00})); }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class ZdsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("zds-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    pipe_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // any fd stands in for a netns here
  }
  void TearDown() override {
    server_.reset();
    ::close(pipe_fd_);
    std::filesystem::remove_all(dir_);
  }
  void start(std::vector<ZdsWorkload> snapshot, std::chrono::milliseconds deadline = 1s) {
    snapshot_ = std::move(snapshot);
    server_ = std::make_unique<ZdsServer>(
        ZdsServer::Options{socket(), deadline,
                           [this](const std::string& w) {
                             std::lock_guard g(degraded_mu_);
                             degraded_.push_back(w);
                           }},
        [this] { return snapshot_; },
        std::make_shared<spdlog::logger>("zds", std::make_shared<spdlog::sinks::null_sink_mt>()));
    server_->start();
  }
  std::string socket() const { return (dir_ / "ztunnel.sock").string(); }
  bool wait_connections(std::size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (server_->connections() == n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::filesystem::path dir_;
  int pipe_fd_ = -1;
  std::vector<ZdsWorkload> snapshot_;
  std::mutex degraded_mu_;
  std::vector<std::string> degraded_;
  std::unique_ptr<ZdsServer> server_;
};

TEST_F(ZdsServerTest, HelloThenSnapshotWithAddAndKeepThenSnapshotSent) {
  start({{"a", "web", "demo", "sa", pipe_fd_}, {"b", "db", "demo", "sa", -1}});
  RawClient c(socket());
  ASSERT_TRUE(c.connected());
  c.send(bytes({0x08, 0x01}));
  auto [add, add_fds] = c.recv();
  EXPECT_EQ(add, zds::encode_add({"a", "web", "demo", "sa", -1}));
  EXPECT_EQ(add_fds, 1);  // the netns travels with add, exactly one fd
  c.ack();
  auto [keep, keep_fds] = c.recv();
  EXPECT_EQ(keep, bytes({0x2a, 0x03, 0x0a, 0x01, 'b'}));
  EXPECT_EQ(keep_fds, 0);
  c.ack();
  auto [sent, sent_fds] = c.recv();
  EXPECT_EQ(sent, bytes({0x1a, 0x00}));
  c.ack();
  EXPECT_TRUE(wait_connections(1));
  EXPECT_EQ(server_->snapshots_sent(), 1u);
}

TEST_F(ZdsServerTest, AddGoesToTheNewestDelToAll) {
  start({});
  RawClient old_z(socket()), new_z(socket());
  old_z.send(bytes({0x08, 0x01}));
  EXPECT_EQ(old_z.recv().first, zds::encode_snapshot_sent());
  old_z.ack();
  ASSERT_TRUE(wait_connections(1));
  new_z.send(bytes({0x08, 0x01}));
  EXPECT_EQ(new_z.recv().first, zds::encode_snapshot_sent());
  new_z.ack();
  ASSERT_TRUE(wait_connections(2));

  auto added = std::async(std::launch::async, [&] {
    server_->add({"p", "web", "demo", "sa", pipe_fd_});
  });
  auto [msg, fds] = new_z.recv();
  EXPECT_EQ(msg, zds::encode_add({"p", "web", "demo", "sa", -1}));
  EXPECT_EQ(fds, 1);
  new_z.ack();
  added.get();

  auto deleted = std::async(std::launch::async, [&] { server_->del("p"); });
  EXPECT_EQ(old_z.recv().first, zds::encode_del("p"));
  old_z.ack();
  EXPECT_EQ(new_z.recv().first, zds::encode_del("p"));
  new_z.ack();
  deleted.get();
}

TEST_F(ZdsServerTest, NackIsReportedWithZtunnelsText) {
  start({});
  RawClient c(socket());
  c.send(bytes({0x08, 0x01}));
  c.recv();
  c.ack();
  ASSERT_TRUE(wait_connections(1));
  auto added = std::async(std::launch::async, [&] {
    server_->add({"p", "n", "ns", "sa", pipe_fd_});
  });
  c.recv();
  c.send(bytes({0x0a, 0x06, 0x0a, 0x04, 'n', 'o', 'p', 'e'}));
  try {
    added.get();
    FAIL();
  } catch (const ZdsError& e) {
    EXPECT_EQ(e.kind(), ZdsError::Kind::kNack);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  EXPECT_EQ(server_->connections(), 1u);  // a nack is an answer, not a broken connection
}

TEST_F(ZdsServerTest, HangingZtunnelTimesOutAndIsDropped) {
  start({}, 300ms);
  RawClient c(socket());
  c.send(bytes({0x08, 0x01}));
  c.recv();
  c.ack();
  ASSERT_TRUE(wait_connections(1));
  const auto t0 = std::chrono::steady_clock::now();
  try {
    server_->add({"p", "n", "ns", "sa", pipe_fd_});
    FAIL();
  } catch (const ZdsError& e) {
    EXPECT_EQ(e.kind(), ZdsError::Kind::kTimeout);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_TRUE(wait_connections(0));
}

TEST_F(ZdsServerTest, NoZtunnelFailsAfterWaitingTheDeadline) {
  start({}, 200ms);
  try {
    server_->add({"p", "n", "ns", "sa", pipe_fd_});
    FAIL();
  } catch (const ZdsError& e) {
    EXPECT_EQ(e.kind(), ZdsError::Kind::kNoZtunnel);
  }
}

TEST_F(ZdsServerTest, DeadConnectionNeverBlocksTheOthers) {
  start({});
  auto dead = std::make_unique<RawClient>(socket());
  RawClient alive(socket());
  dead->send(bytes({0x08, 0x01}));
  dead->recv();
  dead->ack();
  ASSERT_TRUE(wait_connections(1));
  alive.send(bytes({0x08, 0x01}));
  alive.recv();
  alive.ack();
  ASSERT_TRUE(wait_connections(2));
  dead.reset();  // the older ztunnel goes away
  auto deleted = std::async(std::launch::async, [&] { server_->del("p"); });
  EXPECT_EQ(alive.recv().first, zds::encode_del("p"));
  alive.ack();
  deleted.get();
  EXPECT_TRUE(wait_connections(1));
}

// What `status` and explain report as "ztunnel acked": the live connection that acked the pod's
// add — gone with that connection until a new one's snapshot acks it, and gone at del.
TEST_F(ZdsServerTest, AckedByNamesTheLiveConnectionThatAckedThePod) {
  start({});
  EXPECT_FALSE(server_->acked_by("p").has_value());
  auto first = std::make_unique<RawClient>(socket());
  first->send(bytes({0x08, 0x01}));
  first->recv();
  first->ack();
  ASSERT_TRUE(wait_connections(1));
  auto added = std::async(std::launch::async, [&] {
    server_->add({"p", "web", "demo", "sa", pipe_fd_});
  });
  first->recv();
  EXPECT_FALSE(server_->acked_by("p").has_value()) << "before its ack";
  first->ack();
  added.get();
  const auto acked = server_->acked_by("p");
  ASSERT_TRUE(acked.has_value());
  EXPECT_FALSE(server_->acked_by("q").has_value());

  // The ztunnel goes away: nobody holds the pod's netns now.
  first.reset();
  ASSERT_TRUE(wait_connections(0));
  EXPECT_FALSE(server_->acked_by("p").has_value());

  // A new ztunnel gets it in its snapshot and acks it there.
  snapshot_ = {{"p", "web", "demo", "sa", pipe_fd_}};
  RawClient second(socket());
  second.send(bytes({0x08, 0x01}));
  EXPECT_EQ(second.recv().first, zds::encode_add({"p", "web", "demo", "sa", -1}));
  second.ack();
  second.recv();  // snapshot_sent
  second.ack();
  ASSERT_TRUE(wait_connections(1));
  const auto again = server_->acked_by("p");
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(*again, *acked);

  auto deleted = std::async(std::launch::async, [&] { server_->del("p"); });
  second.recv();
  second.ack();
  deleted.get();
  EXPECT_FALSE(server_->acked_by("p").has_value());
}

TEST_F(ZdsServerTest, ANackIsNoAck) {
  start({});
  RawClient c(socket());
  c.send(bytes({0x08, 0x01}));
  c.recv();
  c.ack();
  ASSERT_TRUE(wait_connections(1));
  auto added = std::async(std::launch::async, [&] {
    server_->add({"p", "n", "ns", "sa", pipe_fd_});
  });
  c.recv();
  c.send(bytes({0x0a, 0x06, 0x0a, 0x04, 'n', 'o', 'p', 'e'}));
  EXPECT_THROW(added.get(), ZdsError);
  EXPECT_FALSE(server_->acked_by("p").has_value());
}

TEST_F(ZdsServerTest, RejectsAWrongHello) {
  start({});
  RawClient c(socket());
  c.send(bytes({0x08, 0x02}));    // version 2 does not exist
  EXPECT_EQ(c.recv().first, "");  // closed without a snapshot
  EXPECT_EQ(server_->connections(), 0u);
  EXPECT_EQ(degraded_, std::vector<std::string>{"ztunnel_snapshot_failed"});
}

TEST_F(ZdsServerTest, AgainstTheZtunnelStandIn) {
  start({{"a", "web", "demo", "sa", pipe_fd_}, {"k", "kept", "demo", "sa", -1}});
  standins::ZtunnelStandin z({socket(), 200ms, /*run_proxies=*/false});
  z.start();
  ASSERT_TRUE(z.wait_for([&] { return z.snapshots() == 1; }, 5s));
  EXPECT_EQ(z.last_snapshot(), (std::vector<std::string>{"a", "k"}));
  EXPECT_EQ(z.pods(), (std::set<std::string>{"a", "k"}));
  ASSERT_TRUE(wait_connections(1));

  server_->add({"b", "api", "demo", "sa", pipe_fd_});
  EXPECT_TRUE(z.pods().contains("b"));
  server_->del("a");
  EXPECT_FALSE(z.pods().contains("a"));

  // Reconnect: a full snapshot again; ztunnel drops what the snapshot does not name.
  snapshot_ = {{"b", "api", "demo", "sa", pipe_fd_}};
  z.disconnect();
  ASSERT_TRUE(z.wait_for([&] { return z.snapshots() == 2; }, 5s));
  EXPECT_EQ(z.pods(), (std::set<std::string>{"b"}));

  z.set_nack("no capacity");
  EXPECT_THROW(server_->add({"c", "x", "demo", "sa", pipe_fd_}), ZdsError);
  z.stop();
}

}  // namespace
}  // namespace ambient::agent
