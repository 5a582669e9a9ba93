// What users see of the agent's work on a pod, where they look (docs/decisions/016):
// Kubernetes Events on the pod (`kubectl describe pod`) and the last error per pod (shown by
// `ambient-cni-node status` and `explain`).
//
//   AmbientEnrolmentFailed   Warning  an attempt to enrol a selected pod failed and was undone
//   AmbientEnrolmentPending  Warning  a selected pod waits: ztunnel did not take it, or its rules
//                                     could not be (re-)applied; retried
//   AmbientUnenrolled        Normal   a label change took a running pod out of the mesh
//   AmbientEnrolled          Normal   a pod enrolled after such a problem, or by the agent itself
//                                     (a label change, a pod started while no agent ran)
//
// Best effort: recording never blocks an enrolment (it only updates a bounded table; one thread
// posts), an Event that cannot be posted is counted (degraded `event_post_failed`) and dropped,
// and repeats are rate-limited per pod and reason, with a node-wide budget on top, so a failure
// loop never floods the API: repeats inside the window are folded into one Event whose `count`
// says how many times it happened (`kubectl describe` shows "x5 over 3m").
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <nlohmann/json.hpp>

#include "agent/metrics.h"

namespace ambient::agent {

struct PodRef {
  std::string namespace_;
  std::string name;
  std::string uid;
};

namespace event_reason {
inline constexpr std::string_view kEnrolmentFailed = "AmbientEnrolmentFailed";
inline constexpr std::string_view kEnrolmentPending = "AmbientEnrolmentPending";
inline constexpr std::string_view kUnenrolled = "AmbientUnenrolled";
inline constexpr std::string_view kEnrolled = "AmbientEnrolled";
}  // namespace event_reason

// What the Enroller and the Reconciler tell about pods. PodReporter is the production one.
class PodReport {
 public:
  enum class Problem {
    kFailed,   // the attempt was undone
    kPending,  // the pod waits (ztunnel, its rules, its netns) and is retried
  };
  virtual ~PodReport() = default;
  virtual void problem(const PodRef& pod, Problem kind, const std::string& message) = 0;
  // `how` empty: an ordinary enrolment (an ADD), reported only when it ends a problem.
  virtual void enrolled(const PodRef& pod, const std::string& how) = 0;
  virtual void unenrolled(const PodRef& pod, const std::string& why) = 0;
  virtual void forget(const std::string& uid) = 0;  // the pod is gone
};

// The Event object (core/v1, as client-go's recorder writes it: firstTimestamp, lastTimestamp
// and count, no eventTime) for `count` occurrences between `first` and `last`. The name is the
// pod's name (cut to fit) and a unique suffix; the message is cut at 1024 bytes on a UTF-8
// boundary.
nlohmann::json make_pod_event(const PodRef& pod, std::string_view type, std::string_view reason,
                              std::string_view message, std::uint32_t count,
                              std::chrono::system_clock::time_point first,
                              std::chrono::system_clock::time_point last,
                              const std::string& component, const std::string& node,
                              std::uint64_t unique);

// `s` cut to at most `max` bytes without splitting a UTF-8 sequence ("…" marks a cut).
std::string cut_utf8(std::string_view s, std::size_t max);

// The rate limit, without threads or I/O (time is given): one slot per (pod uid, reason) holds
// the occurrences not posted yet. A slot is due when it has some and its window since its last
// post has passed; posting takes a token of the node-wide bucket.
class EventLimiter {
 public:
  using Time = std::chrono::system_clock::time_point;
  struct Options {
    std::chrono::milliseconds per_pod_interval{std::chrono::seconds(60)};
    std::size_t burst = 25;                                     // node-wide bucket size
    std::chrono::milliseconds refill{std::chrono::seconds(6)};  // one token per
    std::size_t max_slots = 4096;                               // bounded memory: oldest evicted
  };
  struct Due {
    PodRef pod;
    std::string type;
    std::string reason;
    std::string message;  // the latest occurrence's
    std::uint32_t count = 0;
    Time first, last;
  };

  explicit EventLimiter(Options options, Time now);

  // Records an occurrence. Returns how many not-yet-posted occurrences were dropped to make
  // room (a slot evicted), normally 0.
  std::uint32_t record(const PodRef& pod, std::string_view type, std::string_view reason,
                       std::string message, Time now);
  // Every slot that may be posted now, oldest first, within the bucket's tokens; each is taken
  // (its occurrences cleared, its window started).
  std::vector<Due> take_due(Time now);
  // The next time take_due may return something (nullopt: nothing waits).
  std::optional<Time> next_due(Time now) const;
  void forget(const std::string& uid);  // drops the pod's slots (and what they held)
  std::size_t slots() const { return slots_.size(); }

 private:
  struct Slot {
    PodRef pod;
    std::string type;
    std::string message;
    std::uint32_t pending = 0;
    Time first{}, last{};
    Time next_allowed{};
    Time touched{};
  };
  void refill(Time now);

  Options o_;
  std::map<std::pair<std::string, std::string>, Slot> slots_;  // (uid, reason)
  double tokens_;
  Time refilled_;
};

// The last problem of each pod (for status and explain), bounded and expiring.
class PodJournal {
 public:
  struct Entry {
    PodRef pod;
    std::string state;  // "failed" or "waiting"
    std::string error;
    std::chrono::system_clock::time_point at;
  };
  explicit PodJournal(std::size_t max_entries = 1024,
                      std::chrono::seconds ttl = std::chrono::hours(1))
      : max_(max_entries), ttl_(ttl) {}
  void set(Entry e);
  bool erase(const std::string& uid);  // whether there was one
  std::optional<Entry> get(const std::string& uid) const;
  std::vector<Entry> all() const;

 private:
  void expire(std::chrono::system_clock::time_point now);
  std::size_t max_;
  std::chrono::seconds ttl_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // uid →
};

// Posts the limiter's due Events on a thread of its own and keeps the journal.
class PodReporter final : public PodReport {
 public:
  // Creates the Event in its namespace; throws (kube::ApiError) when the API refuses.
  using Poster = std::function<void(const std::string& ns, const nlohmann::json& event)>;
  struct Options {
    std::string component = "ambient-cni-node";
    std::string node_name;
    EventLimiter::Options limits;
  };

  PodReporter(Options options, Poster poster, Metrics& metrics,
              std::shared_ptr<spdlog::logger> log);
  ~PodReporter() override;
  PodReporter(const PodReporter&) = delete;
  PodReporter& operator=(const PodReporter&) = delete;

  void start();
  void stop();  // what is still folded is not posted

  void problem(const PodRef& pod, Problem kind, const std::string& message) override;
  void enrolled(const PodRef& pod, const std::string& how) override;
  void unenrolled(const PodRef& pod, const std::string& why) override;
  void forget(const std::string& uid) override;

  const PodJournal& journal() const { return journal_; }
  // Tests: until nothing due is left to post (or the timeout).
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  void record(const PodRef& pod, std::string_view type, std::string_view reason,
              const std::string& message);
  void run();

  Options o_;
  Poster poster_;
  Metrics& metrics_;
  std::shared_ptr<spdlog::logger> log_;
  PodJournal journal_;
  std::mutex mu_;
  std::condition_variable cv_;
  EventLimiter limiter_;
  bool running_ = false;
  bool posting_ = false;
  std::uint64_t unique_ = 0;
  std::thread thread_;
};

}  // namespace ambient::agent
