// Events on pods (agent/pod_events.h): the rate limit with a moved clock, the Event objects as
// kube-apiserver validates them, and the reporter against a fake poster — it never blocks the
// caller, counts what it cannot post, and folds a failure loop into one Event per window.
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>

#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "agent/pod_events.h"
#include "kube/client.h"

namespace ambient::agent {
namespace {

using namespace std::chrono_literals;
using Time = EventLimiter::Time;

const Time kT0 = Time{} + std::chrono::hours(24 * 365 * 56);  // 2025-12-18

PodRef pod(const std::string& name) {
  return {"demo", name, "uid-" + name};
}

EventLimiter::Options limits(std::chrono::milliseconds window = 60s, std::size_t burst = 25,
                             std::chrono::milliseconds refill = 6s, std::size_t slots = 4096) {
  EventLimiter::Options o;
  o.per_pod_interval = window;
  o.burst = burst;
  o.refill = refill;
  o.max_slots = slots;
  return o;
}

TEST(EventLimiter, TheFirstOccurrenceIsDueAtOnceRepeatsAreFoldedUntilTheWindowEnds) {
  EventLimiter l(limits(60s), kT0);
  l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "boom 1", kT0);
  auto due = l.take_due(kT0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].count, 1u);
  EXPECT_EQ(due[0].message, "boom 1");
  EXPECT_EQ(due[0].reason, "AmbientEnrolmentFailed");
  EXPECT_EQ(due[0].type, "Warning");

  // A failure loop: 500 more within the window are one slot, nothing due.
  for (int i = 2; i <= 501; ++i) {
    l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "boom " + std::to_string(i),
             kT0 + std::chrono::milliseconds(i * 100));
  }
  EXPECT_TRUE(l.take_due(kT0 + 59s).empty());
  EXPECT_EQ(l.next_due(kT0 + 59s), kT0 + 60s);
  due = l.take_due(kT0 + 60s);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].count, 500u);
  EXPECT_EQ(due[0].message, "boom 501");  // the latest
  EXPECT_EQ(due[0].first, kT0 + 200ms);
  EXPECT_EQ(due[0].last, kT0 + 50100ms);
  EXPECT_FALSE(l.next_due(kT0 + 60s).has_value());
}

TEST(EventLimiter, PodsAndReasonsHaveSlotsOfTheirOwn) {
  EventLimiter l(limits(), kT0);
  l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "x", kT0);
  l.record(pod("a"), "Warning", "AmbientEnrolmentPending", "y", kT0);
  l.record(pod("b"), "Warning", "AmbientEnrolmentFailed", "z", kT0);
  EXPECT_EQ(l.take_due(kT0).size(), 3u);
}

TEST(EventLimiter, TheNodeWideBudgetHoldsBackWhatIsDueUntilTokensRefill) {
  EventLimiter l(limits(60s, /*burst=*/3, /*refill=*/10s), kT0);
  for (int i = 0; i < 10; ++i) {
    l.record(pod("p" + std::to_string(i)), "Warning", "AmbientEnrolmentFailed", "x",
             kT0 + std::chrono::milliseconds(i));
  }
  auto due = l.take_due(kT0 + 10ms);
  ASSERT_EQ(due.size(), 3u);  // the burst, oldest first
  EXPECT_EQ(due[0].pod.name, "p0");
  EXPECT_EQ(due[2].pod.name, "p2");
  EXPECT_TRUE(l.take_due(kT0 + 5s).empty());
  EXPECT_EQ(l.next_due(kT0 + 5s), kT0 + 10s + 10ms);  // the next token
  due = l.take_due(kT0 + 10s + 10ms);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].pod.name, "p3");  // held back, not lost
  due = l.take_due(kT0 + 70s + 10ms);
  EXPECT_EQ(due.size(), 3u);  // the bucket refilled to its size, no more
}

TEST(EventLimiter, MemoryIsBoundedAndWhatIsEvictedIsCounted) {
  EventLimiter l(limits(60s, 25, 6s, /*slots=*/4), kT0);
  std::uint32_t dropped = 0;
  for (int i = 0; i < 4; ++i) {
    dropped += l.record(pod("p" + std::to_string(i)), "Warning", "AmbientEnrolmentFailed", "x",
                        kT0 + std::chrono::seconds(i));
  }
  l.record(pod("p0"), "Warning", "AmbientEnrolmentFailed", "again", kT0 + 5s);  // p1 now oldest
  EXPECT_EQ(dropped, 0u);
  dropped = l.record(pod("p9"), "Warning", "AmbientEnrolmentFailed", "x", kT0 + 6s);
  EXPECT_EQ(dropped, 1u);
  EXPECT_EQ(l.slots(), 4u);
  std::set<std::string> names;
  for (const auto& d : l.take_due(kT0 + 6s)) names.insert(d.pod.name);
  EXPECT_EQ(names, (std::set<std::string>{"p0", "p2", "p3", "p9"}));
}

TEST(EventLimiter, AForgottenPodLeavesNothing) {
  EventLimiter l(limits(), kT0);
  l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "x", kT0);
  l.record(pod("b"), "Warning", "AmbientEnrolmentFailed", "x", kT0);
  l.forget("uid-a");
  const auto due = l.take_due(kT0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].pod.name, "b");
}

TEST(EventLimiter, AfterAQuietWindowTheNextOccurrenceIsPostedAtOnce) {
  EventLimiter l(limits(60s), kT0);
  l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "x", kT0);
  ASSERT_EQ(l.take_due(kT0).size(), 1u);
  EXPECT_TRUE(l.take_due(kT0 + 61s).empty());
  l.record(pod("a"), "Warning", "AmbientEnrolmentFailed", "y", kT0 + 62s);
  EXPECT_EQ(l.take_due(kT0 + 62s).size(), 1u);
}

bool dns_subdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

TEST(PodEvent, IsACoreV1EventAboutThePodAsKubeApiserverAcceptsIt) {
  const auto e = make_pod_event(pod("web"), "Warning", "AmbientEnrolmentFailed", "it broke", 3, kT0,
                                kT0 + 90s, "ambient-cni-node", "node-1", 0xabc);
  EXPECT_EQ(e["apiVersion"], "v1");
  EXPECT_EQ(e["kind"], "Event");
  EXPECT_EQ(e["metadata"]["namespace"], "demo");
  EXPECT_EQ(e["metadata"]["name"], "web.0000000000000abc");
  EXPECT_EQ(e["involvedObject"], (nlohmann::json{{"apiVersion", "v1"},
                                                 {"kind", "Pod"},
                                                 {"namespace", "demo"},
                                                 {"name", "web"},
                                                 {"uid", "uid-web"}}));
  EXPECT_EQ(e["reason"], "AmbientEnrolmentFailed");
  EXPECT_EQ(e["type"], "Warning");
  EXPECT_EQ(e["message"], "it broke");
  EXPECT_EQ(e["count"], 3);
  EXPECT_EQ(e["firstTimestamp"], "2025-12-18T00:00:00Z");
  EXPECT_EQ(e["lastTimestamp"], "2025-12-18T00:01:30Z");
  EXPECT_EQ(e["source"], (nlohmann::json{{"component", "ambient-cni-node"}, {"host", "node-1"}}));
  // An Event without eventTime is a "legacy" one: no reporting fields required, but set.
  EXPECT_FALSE(e.contains("eventTime"));
  EXPECT_TRUE(dns_subdomain(e["metadata"]["name"]));
}

TEST(PodEvent, NamesStayValidForTheLongestPodNamesAndMessagesAreCut) {
  std::string long_name(250, 'a');
  long_name[235] = '-';  // where the cut falls: a trailing '-' is not a valid name end
  const std::string message = std::string(1022, 'x') + "\xC3\xA9\xC3\xA9";  // é é: 1026 bytes
  const auto e = make_pod_event({"demo", long_name, "u"}, "Warning", "R", message, 1, kT0, kT0,
                                "ambient-cni-node", "n", 1);
  const std::string name = e["metadata"]["name"];
  EXPECT_LE(name.size(), 253u);
  EXPECT_TRUE(dns_subdomain(name)) << name;
  const std::string cut = e["message"];
  EXPECT_LE(cut.size(), 1024u);
  EXPECT_TRUE(cut.ends_with("\xE2\x80\xA6"));
  EXPECT_NO_THROW((void)nlohmann::json(cut).dump());  // valid UTF-8, or dump() throws
}

TEST(PodEvent, CutUtf8NeverSplitsACharacter) {
  EXPECT_EQ(cut_utf8("short", 10), "short");
  EXPECT_EQ(cut_utf8("abcdefghij", 6), "abc\xE2\x80\xA6");
  // "ab" + € (3 bytes) + "cd": a cut at 6 would leave 3 bytes of room → "ab" only, not half a €.
  EXPECT_EQ(cut_utf8("ab\xE2\x82\xAC"
                     "cdef",
                     6),
            "ab\xE2\x80\xA6");
}

// A poster that records, can be made to fail, and can be held.
struct FakeApi {
  std::mutex mu;
  std::vector<nlohmann::json> posted;
  std::vector<std::string> namespaces;
  int fail_status = 0;
  std::promise<void> release;
  std::shared_future<void> gate;  // when valid, posts wait for it

  PodReporter::Poster poster() {
    return [this](const std::string& ns, const nlohmann::json& event) {
      if (gate.valid()) gate.wait();
      std::lock_guard lock(mu);
      if (fail_status == 503) {
        throw kube::ApiError(kube::ApiError::Kind::kServerError, 503, "POST events: 503");
      }
      if (fail_status == 409) {
        throw kube::ApiError(kube::ApiError::Kind::kConflict, 409, "already exists");
      }
      namespaces.push_back(ns);
      posted.push_back(event);
    };
  }
  std::vector<nlohmann::json> events() {
    std::lock_guard lock(mu);
    return posted;
  }
};

bool testing_wait(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

class Reporter : public ::testing::Test {
 protected:
  void make(EventLimiter::Options l = limits(300ms, 25, 10ms)) {
    reporter_ = std::make_unique<PodReporter>(PodReporter::Options{"ambient-cni-node", "node-1", l},
                                              api_.poster(), metrics_, log_);
    reporter_->start();
  }
  void TearDown() override {
    if (api_.gate.valid()) api_.release.set_value();
    reporter_.reset();
  }
  bool wait_posted(std::size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (api_.events().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  FakeApi api_;
  Metrics metrics_;
  std::ostringstream log_text_;
  std::shared_ptr<spdlog::logger> log_ = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text_));
  std::unique_ptr<PodReporter> reporter_;
};

TEST_F(Reporter, AProblemIsAWarningOnThePodAndTheLastErrorIsKept) {
  make();
  reporter_->problem(pod("web"), PodReport::Problem::kPending, "ztunnel did not take pod demo/web");
  ASSERT_TRUE(wait_posted(1));
  const auto e = api_.events()[0];
  EXPECT_EQ(api_.namespaces[0], "demo");
  EXPECT_EQ(e["reason"], "AmbientEnrolmentPending");
  EXPECT_EQ(e["type"], "Warning");
  EXPECT_EQ(e["message"], "ztunnel did not take pod demo/web");
  const auto j = reporter_->journal().get("uid-web");
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->state, "waiting");
  EXPECT_EQ(j->error, "ztunnel did not take pod demo/web");
  EXPECT_NE(metrics_.render().find(
                R"(ambient_cni_events_total{reason="AmbientEnrolmentPending",result="posted"} 1)"),
            std::string::npos);
}

TEST_F(Reporter, AnEnrolmentAfterAProblemSaysItIsResolvedAnOrdinaryOneSaysNothing) {
  make();
  reporter_->enrolled(pod("quiet"), "");
  reporter_->problem(pod("web"), PodReport::Problem::kFailed, "rules: nft said no");
  ASSERT_TRUE(wait_posted(1));
  reporter_->enrolled(pod("web"), "");
  ASSERT_TRUE(wait_posted(2));
  ASSERT_TRUE(reporter_->wait_idle(5s));
  const auto events = api_.events();
  ASSERT_EQ(events.size(), 2u);  // nothing about "quiet"
  EXPECT_EQ(events[0]["reason"], "AmbientEnrolmentFailed");
  EXPECT_EQ(events[1]["reason"], "AmbientEnrolled");
  EXPECT_EQ(events[1]["type"], "Normal");
  EXPECT_NE(events[1]["message"].get<std::string>().find("rules: nft said no"), std::string::npos);
  EXPECT_FALSE(reporter_->journal().get("uid-web").has_value());
}

TEST_F(Reporter, UnenrolmentByALabelChangeIsANormalEvent) {
  make();
  reporter_->unenrolled(pod("web"), "no longer selected for ambient (pod label none)");
  ASSERT_TRUE(wait_posted(1));
  EXPECT_EQ(api_.events()[0]["reason"], "AmbientUnenrolled");
  EXPECT_EQ(api_.events()[0]["type"], "Normal");
}

TEST_F(Reporter, AFailureLoopIsOneEventPerWindowWithItsCount) {
  make(limits(400ms, 25, 10ms));
  for (int i = 0; i < 1000; ++i) {
    reporter_->problem(pod("web"), PodReport::Problem::kFailed, "attempt " + std::to_string(i));
  }
  // The first occurrence goes at once (alone, or with those that came before the poster woke),
  // the rest when the window ends: never more than two Events for the loop.
  ASSERT_TRUE(wait_posted(1));
  ASSERT_TRUE(testing_wait([&] {
    int sum = 0;
    for (const auto& e : api_.events()) sum += e["count"].get<int>();
    return sum == 1000;
  }));
  std::this_thread::sleep_for(600ms);  // more than the window: nothing else comes
  const auto events = api_.events();
  EXPECT_LE(events.size(), 2u);
  EXPECT_EQ(events.back()["message"], "attempt 999");
}

TEST_F(Reporter, APostTheApiRefusesIsCountedAndNeverRetriedForever) {
  api_.fail_status = 503;
  make();
  reporter_->problem(pod("web"), PodReport::Problem::kFailed, "x");
  ASSERT_TRUE(reporter_->wait_idle(5s));
  for (int i = 0; i < 100 && metrics_.render().find("event_post_failed") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const auto text = metrics_.render();
  EXPECT_NE(text.find(R"(ambient_cni_degraded_total{what="event_post_failed"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find(R"(ambient_cni_events_total{reason="AmbientEnrolmentFailed",result="failed"} 1)"),
      std::string::npos)
      << text;
  EXPECT_NE(log_text_.str().find("cannot post Event AmbientEnrolmentFailed"), std::string::npos);
  // The last error is still there for status and explain.
  EXPECT_TRUE(reporter_->journal().get("uid-web").has_value());
}

TEST_F(Reporter, AConflictIsAnEventThatIsAlreadyThere) {
  api_.fail_status = 409;
  make();
  reporter_->problem(pod("web"), PodReport::Problem::kFailed, "x");
  for (int i = 0; i < 200 && metrics_.render().find("result=\"posted\"") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(metrics_.render().find(
                R"(ambient_cni_events_total{reason="AmbientEnrolmentFailed",result="posted"} 1)"),
            std::string::npos);
  EXPECT_EQ(metrics_.render().find("event_post_failed"), std::string::npos);
}

TEST_F(Reporter, RecordingNeverWaitsForTheApi) {
  api_.gate = api_.release.get_future().share();  // every post hangs until released
  make(limits(60s, 25, 10ms, /*slots=*/64));
  reporter_->problem(pod("first"), PodReport::Problem::kFailed, "x");  // taken by the poster
  auto recording = std::async(std::launch::async, [&] {
    for (int i = 0; i < 5000; ++i) {
      reporter_->problem(pod("p" + std::to_string(i)), PodReport::Problem::kFailed, "x");
    }
  });
  // Were record() to wait for the hung API, this would time out (the API hangs forever).
  EXPECT_EQ(recording.wait_for(20s), std::future_status::ready);
  EXPECT_NE(metrics_.render().find("ambient_cni_degraded_total{what=\"event_dropped\"}"),
            std::string::npos);  // 5000 pods into 64 slots: the rest is said, not kept
}

TEST(PodJournal, KeepsTheLatestPerPodBoundedAndExpiring) {
  PodJournal j(/*max_entries=*/2, /*ttl=*/std::chrono::seconds(3600));
  const auto now = std::chrono::system_clock::now();
  j.set({pod("a"), "failed", "one", now - 10s});
  j.set({pod("a"), "failed", "two", now - 5s});
  j.set({pod("b"), "waiting", "x", now - 4s});
  EXPECT_EQ(j.get("uid-a")->error, "two");
  j.set({pod("c"), "failed", "y", now});
  EXPECT_FALSE(j.get("uid-a").has_value());  // the oldest went
  EXPECT_EQ(j.all().size(), 2u);
  PodJournal short_lived(10, std::chrono::seconds(1));
  short_lived.set({pod("a"), "failed", "old", now - 5s});
  EXPECT_FALSE(short_lived.get("uid-a").has_value());
  EXPECT_TRUE(short_lived.all().empty());
}

}  // namespace
}  // namespace ambient::agent
