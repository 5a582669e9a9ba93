// A scope guard for multi-step changes: each step that succeeded registers its undo; unless the
// whole change is committed, leaving the scope runs the undos in reverse order. An undo that
// fails is logged and counted, and the others still run: what is left is reported, never hidden.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/logger.h>

namespace ambient::agent {

class Rollback {
 public:
  Rollback(spdlog::logger& log, std::string subject) : log_(log), subject_(std::move(subject)) {}
  ~Rollback() { unwind(); }
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;

  void add(std::string step, std::function<void()> undo) {
    undos_.emplace_back(std::move(step), std::move(undo));
  }
  void commit() noexcept { undos_.clear(); }
  // Runs the undos now (newest first); returns the steps whose undo failed.
  std::vector<std::string> unwind() noexcept {
    std::vector<std::string> failed;
    for (auto it = undos_.rbegin(); it != undos_.rend(); ++it) {
      try {
        it->second();
      } catch (const std::exception& e) {
        log_.error("{}: rollback of {} failed: {}", subject_, it->first, e.what());
        failed.push_back(it->first);
      }
    }
    undos_.clear();
    return failed;
  }

 private:
  spdlog::logger& log_;
  std::string subject_;
  std::vector<std::pair<std::string, std::function<void()>>> undos_;
};

}  // namespace ambient::agent
