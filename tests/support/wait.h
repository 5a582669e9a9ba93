// Waiting in tests: poll a condition until it holds or a generous timeout passes (never asserted
// on as a duration: timeouts only bound a failing test).
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace ambient::testing {

inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(15),
                       std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace ambient::testing
