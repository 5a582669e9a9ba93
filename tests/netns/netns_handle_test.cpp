// NetnsHandle and run_in: validation kinds and the worker-thread contract.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

#include "netns/error.h"
#include "netns/netns.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using testbed::Topology;

std::uint64_t thread_netns_inode() {
  struct stat st {};
  EXPECT_EQ(stat("/proc/thread-self/ns/net", &st), 0);
  return st.st_ino;
}

ErrorKind kind_of_open(const std::string& path) {
  try {
    NetnsHandle::open(path);
  } catch (const NetnsError& e) {
    return e.kind();
  }
  ADD_FAILURE() << path << " opened without error";
  return ErrorKind::System;
}

TEST(NetnsHandle, MissingPathIsNotFound) {
  EXPECT_EQ(kind_of_open("/var/run/netns/ambtest-does-not-exist"), ErrorKind::NotFound);
}

TEST(NetnsHandle, RegularFileIsNotANetns) {
  char tmpl[] = "/tmp/ambtest-file-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(kind_of_open(tmpl), ErrorKind::NotNetns);
  unlink(tmpl);
}

TEST(NetnsHandle, OtherNamespaceTypeIsNotANetns) {
  EXPECT_EQ(kind_of_open("/proc/self/ns/uts"), ErrorKind::NotNetns);
}

TEST(NetnsHandle, OwnNetnsIsRefused) {
  AMBIENT_REQUIRE_ROOT();
  EXPECT_EQ(kind_of_open("/proc/self/ns/net"), ErrorKind::OwnNetns);
  // "Own" means the calling thread's netns: inside run_in, the pod's netns is the own one.
  Topology topo;
  NetnsHandle pod = topo.open(topo.pod());
  const ErrorKind inside = run_in(pod, [&] { return kind_of_open(Topology::path(topo.pod())); });
  EXPECT_EQ(inside, ErrorKind::OwnNetns);
}

TEST(NetnsHandle, AdoptValidatesAndClosesOnFailure) {
  const int fd = ::open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  try {
    NetnsHandle::adopt(fd, "uts");
    ADD_FAILURE() << "adopted a uts namespace";
  } catch (const NetnsError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotNetns);
  }
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "fd must be closed after a failed adopt";
}

TEST(NetnsHandle, RunInEntersOnAWorkerThreadAndLeavesCallerAlone) {
  AMBIENT_REQUIRE_ROOT();
  Topology topo;
  NetnsHandle pod = topo.open(topo.pod());
  const auto caller_ns = thread_netns_inode();
  const auto caller_thread = std::this_thread::get_id();
  std::thread::id worker;
  const std::uint64_t seen = run_in(pod, [&] {
    worker = std::this_thread::get_id();
    return thread_netns_inode();
  });
  EXPECT_EQ(seen, pod.inode());
  EXPECT_NE(seen, caller_ns);
  EXPECT_NE(worker, caller_thread);
  EXPECT_EQ(thread_netns_inode(), caller_ns);

  NetnsHandle copy = pod.dup();
  EXPECT_EQ(copy.inode(), pod.inode());
  EXPECT_NE(copy.fd(), pod.fd());
}

TEST(NetnsHandle, RunInPropagatesExceptions) {
  AMBIENT_REQUIRE_ROOT();
  Topology topo;
  NetnsHandle pod = topo.open(topo.pod());
  EXPECT_THROW(run_in(pod, [] { throw std::logic_error("boom"); }), std::logic_error);
}

TEST(NetnsHandle, ScratchNetnsIsNewAndEmpty) {
  AMBIENT_REQUIRE_ROOT();
  const auto caller_ns = thread_netns_inode();
  const auto seen = run_in_scratch_netns([] { return thread_netns_inode(); });
  EXPECT_NE(seen, caller_ns);
}

// Worker threads are reused (no thread per call), and every task runs in exactly the namespace
// it asked for, whatever the task before did to its thread: it entered another namespace itself,
// threw, or the task was started from inside a namespace.
TEST(NetnsHandle, ReusedWorkersAlwaysRunInTheNamespaceAsked) {
  AMBIENT_REQUIRE_ROOT();
  Topology topo;
  NetnsHandle pod = topo.open(topo.pod());
  NetnsHandle host = topo.open(topo.host());
  const auto caller_ns = thread_netns_inode();
  std::set<std::thread::id> workers;
  auto where = [&](const NetnsHandle& ns) {
    return run_in(ns, [&] {
      workers.insert(std::this_thread::get_id());
      return thread_netns_inode();
    });
  };
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(where(i % 2 ? pod : host), (i % 2 ? pod : host).inode());
  }
  EXPECT_LT(workers.size(), 20u) << "a new thread for every call";

  // A task that moves its thread elsewhere and throws: the next task is where it asked.
  EXPECT_THROW(run_in(pod,
                      [&] {
                        ASSERT_EQ(setns(host.fd(), CLONE_NEWNET), 0);
                        throw std::runtime_error("moved and failed");
                      }),
               std::runtime_error);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(where(pod), pod.inode());
  EXPECT_NE(run_in_scratch_netns([] { return thread_netns_inode(); }), pod.inode());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(where(host), host.inode());

  // Started from inside a namespace: the nested task's worker still enters the one it asked for,
  // and the outer task is still where it was.
  const auto nested = run_in(pod, [&] {
    const auto inner = where(host);
    return std::pair{inner, thread_netns_inode()};
  });
  EXPECT_EQ(nested.first, host.inode());
  EXPECT_EQ(nested.second, pod.inode());
  EXPECT_EQ(thread_netns_inode(), caller_ns);
}

}  // namespace
}  // namespace ambient::netns
