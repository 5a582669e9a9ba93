// gtest main for the netns integration tests: sweep namespaces left by crashed runs first.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "tests/support/testbed.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::info);
  if (geteuid() == 0) ambient::testbed::sweep_leftover_namespaces();
  return RUN_ALL_TESTS();
}
