// main() of the runtime test binaries: removes what crashed runs left, decides whether this
// kernel can run the tests (skip loudly if not; missing packages fail instead), and moves the
// whole test process into its private node network namespace before any thread exists.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <memory>

#include "tests/runtime/runtime_env.h"

namespace {

using ambient::runtime_test::NodeNetns;

class RuntimeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the runtime tests run as root (containerd, podman, netns)";
    try {
      ambient::runtime_test::require_programs({"/usr/bin/ip", "/usr/bin/nsenter", "/usr/sbin/nft",
                                               "/usr/bin/tar", "/usr/bin/sha256sum",
                                               "/usr/bin/kubectl"});
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    ambient::runtime_test::sweep_leftovers();
    auto& reason = ambient::runtime_test::skip_reason();
    reason = ambient::runtime_test::kernel_gap();
    if (!reason.empty()) {
      std::fprintf(stderr,
                   "\n**********************************************************************\n"
                   "*** SKIPPING the real-runtime tests: %s\n"
                   "**********************************************************************\n\n",
                   reason.c_str());
      return;
    }
    node_ = std::make_unique<NodeNetns>(ambient::runtime_test::owned_tag("node"));
    node_->enter();
  }
  void TearDown() override { node_.reset(); }

 private:
  std::unique_ptr<NodeNetns> node_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new RuntimeEnvironment);
  return RUN_ALL_TESTS();
}
