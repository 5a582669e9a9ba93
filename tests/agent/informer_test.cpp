// The informer against an API that sends what it should not: lists and events without metadata,
// metadata that is not an object, numbers where strings belong, an ERROR event with no Status, a
// watch line that never ends. Each is logged and skipped (or relisted from), counted, and the
// informer keeps running: the agent never exits over what the API sends.
#include <gtest/gtest.h>

#include <spdlog/sinks/base_sink.h>

#include <mutex>
#include <sstream>

#include "agent/informer.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/support/wait.h"

namespace ambient::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// One answer of exactly `body` (200) to the namespaces collection; `query` narrows it to watches.
testing::ApiFault body_fault(std::string body, std::string query = "") {
  testing::ApiFault f;
  f.path_prefix = "/api/v1/namespaces";
  f.body = std::move(body);
  f.query_contains = std::move(query);
  f.times = 1;
  return f;
}

json ns(const std::string& name) {
  return {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
}

// The informer's log, readable while its thread writes (an ostringstream is not).
class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string str() {
    std::lock_guard g(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    text_.append(line.data(), line.size());
  }
  void flush_() override {}

 private:
  std::string text_;
};

class InformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_.start();
    api_.put(ns("good"));
    log_ = std::make_shared<spdlog::logger>("test", log_sink_);
  }
  void TearDown() override {
    if (informer_) informer_->stop();
    api_.stop();
  }

  void start(kube::ClientOptions options = {}) {
    kube::Kubeconfig kc;
    kc.server = api_.url();
    kc.ca_pem = api_.ca_pem();
    kc.token = api_.token();
    Informer::Options o;
    o.name = "namespaces";
    o.path = "/api/v1/namespaces";
    o.watch_timeout = 2s;
    o.max_backoff = 200ms;
    o.degraded = [this](const std::string& what) {
      std::lock_guard g(mu_);
      ++degraded_[what];
    };
    informer_ = std::make_unique<Informer>(
        o, [kc, options] { return std::make_unique<kube::Client>(kc, options); },
        [this](const std::string& key, const json* object) {
          std::lock_guard g(mu_);
          seen_.push_back(key + (object ? "" : " (deleted)"));
        },
        log_);
    informer_->start();
  }
  int degraded(const std::string& what) {
    std::lock_guard g(mu_);
    return degraded_[what];
  }
  bool has(const std::string& key) { return informer_->get(key).has_value(); }

  testing::ApiServerStandin api_;
  std::shared_ptr<LogCapture> log_sink_ = std::make_shared<LogCapture>();
  LogCapture& log_text_ = *log_sink_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Informer> informer_;
  std::mutex mu_;
  std::map<std::string, int> degraded_;
  std::vector<std::string> seen_;
};

TEST_F(InformerTest, AListWithoutMetadataAndItemsWithoutNamesAreSkipped) {
  api_.add_fault(body_fault(R"({"kind":"NamespaceList","items":[{"metadata":{"name":"a"}},
                             {"metadata":5},{"kind":"Namespace"},{"metadata":{"name":7}},3]})"));
  start();
  ASSERT_TRUE(informer_->wait_synced(5s));
  EXPECT_TRUE(has("a"));
  EXPECT_FALSE(has(""));  // nothing keyed by a missing name
  // (with no list resourceVersion the watch then starts from "now": "good" may arrive as ADDED)
  EXPECT_EQ(degraded("malformed_api_object"), 1);
  EXPECT_NE(log_text_.str().find("list held 4 object(s) without metadata.name; skipped"),
            std::string::npos)
      << log_text_.str();
}

TEST_F(InformerTest, MalformedWatchEventsAreSkippedAndTheWatchGoesOn) {
  start();
  ASSERT_TRUE(informer_->wait_synced(5s));
  api_.add_fault(body_fault(std::string(R"({"type":"ADDED","object":{"metadata":5}})") + "\n" +
                                R"({"type":"ADDED","object":{"metadata":{"name":42}}})" + "\n" +
                                R"({"type":"EXPLODED","object":{"metadata":{"name":"x"}}})" + "\n" +
                                R"({"type":"ADDED","object":{"metadata":{"name":"fine"}}})" + "\n",
                            "watch=1"));
  api_.send_bookmarks();  // ends the current watch quickly is not guaranteed: drop it instead
  api_.drop_watches();
  ASSERT_TRUE(testing::wait_until([&] { return has("fine"); }, 10s)) << log_text_.str();
  EXPECT_GE(degraded("malformed_api_object"), 3);
  // Normal service afterwards.
  api_.put(ns("later"));
  EXPECT_TRUE(testing::wait_until([&] { return has("later"); }, 10s));
}

TEST_F(InformerTest, AnErrorEventWithoutStatusRelists) {
  start();
  ASSERT_TRUE(informer_->wait_synced(5s));
  api_.add_fault(body_fault(std::string(R"({"type":"ERROR","object":"gone"})") + "\n", "watch=1"));
  api_.drop_watches();
  api_.put(ns("after-relist"));
  EXPECT_TRUE(testing::wait_until([&] { return has("after-relist"); }, 10s)) << log_text_.str();
  EXPECT_NE(log_text_.str().find("watch error 0 (); relisting"), std::string::npos);
}

TEST_F(InformerTest, AWatchLineThatNeverEndsIsCutAtTheCap) {
  kube::ClientOptions small;
  small.max_event_bytes = 64 * 1024;
  start(small);
  ASSERT_TRUE(informer_->wait_synced(5s));
  api_.add_fault(body_fault(std::string(1 << 20, 'x'), "watch=1"));  // 1 MiB, no newline
  api_.drop_watches();
  // (the drop itself interrupts a watch too: wait for the cut, not for any interruption)
  EXPECT_TRUE(testing::wait_until(
      [&] {
        return log_text_.str().find("a watch event longer than 65536 bytes (no newline)") !=
               std::string::npos;
      },
      10s))
      << log_text_.str();
  EXPECT_GT(degraded("api_watch_interrupted"), 0);
  api_.put(ns("still-served"));
  EXPECT_TRUE(testing::wait_until([&] { return has("still-served"); }, 10s));
}

TEST_F(InformerTest, AnAnswerOverTheBodyCapIsRefusedNotHeld) {
  kube::ClientOptions small;
  small.max_body_bytes = 1 << 20;
  api_.add_fault(body_fault(R"({"kind":"NamespaceList","items":[],"padding":")" +
                            std::string(16u << 20, 'p') + R"("})"));  // 16 MiB
  start(small);
  ASSERT_TRUE(informer_->wait_synced(10s)) << log_text_.str();  // the relist after the refusal
  EXPECT_NE(log_text_.str().find("the answer is larger than 1048576 bytes"), std::string::npos)
      << log_text_.str();
  EXPECT_TRUE(has("good"));
}

// A verb missing from our ClusterRole: the API's 403 names it; the informer says so until a
// watch gets through again.
TEST_F(InformerTest, ARefusedWatchIsReportedUntilTheApiServesItAgain) {
  testing::ApiFault f;
  f.path_prefix = "/api/v1/namespaces";
  f.status = 403;
  f.query_contains = "watch=1";
  api_.add_fault(f);
  start();
  ASSERT_TRUE(informer_->wait_synced(5s));  // the list is allowed
  ASSERT_TRUE(testing::wait_until([&] { return !informer_->refused().empty(); }, 5s));
  EXPECT_NE(informer_->refused().find("403"), std::string::npos) << informer_->refused();
  EXPECT_NE(log_text_.str().find("the API refuses the node agent"), std::string::npos);
  EXPECT_GT(degraded("api_refused"), 0);
  api_.clear_faults();
  api_.put(ns("later"));  // an event on the restored watch
  EXPECT_TRUE(testing::wait_until([&] { return informer_->refused().empty(); }, 5s));
  EXPECT_TRUE(testing::wait_until([&] { return has("later"); }, 5s));
}

TEST(WatchEventClassification, WhatTheInformerDoesWithEachShape) {
  const auto c = [](const char* text) { return classify_watch_event(json::parse(text)); };
  EXPECT_EQ(c(R"({"type":"ADDED","object":{"metadata":{"name":"a","namespace":"d"}}})").key, "d/a");
  EXPECT_EQ(c(R"({"type":"ERROR"})").action, WatchEvent::Action::kRelist);
  EXPECT_EQ(c(R"({"type":"ERROR","object":{"code":410,"reason":"Expired"}})").why,
            "watch error 410 (Expired)");
  EXPECT_EQ(c(R"({"type":"DELETED","object":null})").action, WatchEvent::Action::kSkip);
  EXPECT_EQ(c(R"({"type":5,"object":{}})").action, WatchEvent::Action::kSkip);
  EXPECT_EQ(c(R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}})").action,
            WatchEvent::Action::kApply);
  EXPECT_EQ(c(R"([1,2])").action, WatchEvent::Action::kSkip);
}

}  // namespace
}  // namespace ambient::agent
