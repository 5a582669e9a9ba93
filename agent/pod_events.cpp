#include "agent/pod_events.h"

#include <algorithm>
#include <ctime>

#include <spdlog/spdlog.h>

#include "kube/client.h"
#include "rundir/messages.h"

namespace ambient::agent {
namespace {

using SysClock = std::chrono::system_clock;

std::string rfc3339(SysClock::time_point t) {
  const std::time_t seconds = SysClock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// kube-apiserver's DNS-1123 subdomain limit for object names.
constexpr std::size_t kMaxNameBytes = 253;
// What the API accepts for a new-style Event's note; kept for ours too.
constexpr std::size_t kMaxMessageBytes = 1024;

}  // namespace

std::string cut_utf8(std::string_view s, std::size_t max) {
  static constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // …
  if (s.size() <= max) return std::string(s);
  if (max < kEllipsis.size()) return {};
  std::size_t end = max - kEllipsis.size();
  // Never end inside a multi-byte sequence: back off to the start of the one cut.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end)) + std::string(kEllipsis);
}

nlohmann::json make_pod_event(const PodRef& pod, std::string_view type, std::string_view reason,
                              std::string_view message, std::uint32_t count,
                              SysClock::time_point first, SysClock::time_point last,
                              const std::string& component, const std::string& node,
                              std::uint64_t unique) {
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, ".%016llx", static_cast<unsigned long long>(unique));
  // <pod>.<hex>, as client-go names Events; a pod name is a DNS subdomain, and so is its cut
  // once a trailing '.' or '-' is gone.
  std::string name = pod.name.substr(0, kMaxNameBytes - std::string_view(suffix).size());
  while (!name.empty() && (name.back() == '.' || name.back() == '-')) name.pop_back();
  name += suffix;
  nlohmann::json source = {{"component", component}};
  if (!node.empty()) source["host"] = node;
  nlohmann::json event = {{"apiVersion", "v1"},
                          {"kind", "Event"},
                          {"metadata", {{"name", name}, {"namespace", pod.namespace_}}},
                          {"involvedObject",
                           {{"apiVersion", "v1"},
                            {"kind", "Pod"},
                            {"namespace", pod.namespace_},
                            {"name", pod.name},
                            {"uid", pod.uid}}},
                          {"reason", reason},
                          {"message", cut_utf8(message, kMaxMessageBytes)},
                          {"type", type},
                          {"source", source},
                          {"firstTimestamp", rfc3339(first)},
                          {"lastTimestamp", rfc3339(last)},
                          {"count", std::max<std::uint32_t>(count, 1)},
                          {"reportingComponent", component},
                          {"reportingInstance", node}};
  return event;
}

// ---- EventLimiter -------------------------------------------------------------------------------

EventLimiter::EventLimiter(Options options, Time now)
    : o_(options), tokens_(static_cast<double>(options.burst)), refilled_(now) {
  if (o_.refill.count() <= 0) o_.refill = std::chrono::milliseconds(1);
  if (o_.max_slots == 0) o_.max_slots = 1;
}

void EventLimiter::refill(Time now) {
  if (now <= refilled_) return;
  const double gained = std::chrono::duration<double, std::milli>(now - refilled_).count() /
                        static_cast<double>(o_.refill.count());
  tokens_ = std::min(static_cast<double>(o_.burst), tokens_ + gained);
  refilled_ = now;
}

std::uint32_t EventLimiter::record(const PodRef& pod, std::string_view type,
                                   std::string_view reason, std::string message, Time now) {
  std::uint32_t dropped = 0;
  const auto key = std::pair{pod.uid, std::string(reason)};
  auto it = slots_.find(key);
  if (it == slots_.end()) {
    if (slots_.size() >= o_.max_slots) {
      const auto oldest = std::min_element(slots_.begin(), slots_.end(), [](auto& a, auto& b) {
        return a.second.touched < b.second.touched;
      });
      dropped = oldest->second.pending;
      slots_.erase(oldest);
    }
    it = slots_.emplace(key, Slot{}).first;
  }
  auto& s = it->second;
  s.pod = pod;
  s.type = std::string(type);
  s.message = std::move(message);
  if (s.pending == 0) s.first = now;
  if (s.pending < UINT32_MAX) ++s.pending;
  s.last = now;
  s.touched = now;
  return dropped;
}

std::vector<EventLimiter::Due> EventLimiter::take_due(Time now) {
  refill(now);
  std::vector<std::pair<std::pair<std::string, std::string>, Slot*>> due;
  for (auto it = slots_.begin(); it != slots_.end();) {
    auto& s = it->second;
    if (s.pending == 0 && s.next_allowed <= now) {
      it = slots_.erase(it);  // its window is over and nothing waits: a new one posts at once
      continue;
    }
    if (s.pending > 0 && s.next_allowed <= now) due.emplace_back(it->first, &s);
    ++it;
  }
  std::sort(due.begin(), due.end(),
            [](const auto& a, const auto& b) { return a.second->first < b.second->first; });
  std::vector<Due> out;
  for (auto& [key, s] : due) {
    if (tokens_ < 1.0) break;
    tokens_ -= 1.0;
    out.push_back(
        Due{s->pod, s->type, key.second, std::move(s->message), s->pending, s->first, s->last});
    s->message.clear();
    s->pending = 0;
    s->next_allowed = now + o_.per_pod_interval;
    s->touched = now;
  }
  return out;
}

std::optional<EventLimiter::Time> EventLimiter::next_due(Time now) const {
  std::optional<Time> earliest;
  for (const auto& [key, s] : slots_) {
    if (s.pending == 0) continue;
    if (!earliest || s.next_allowed < *earliest) earliest = s.next_allowed;
  }
  if (!earliest) return std::nullopt;
  // And a token by then.
  const double have =
      tokens_ + (now > refilled_
                     ? std::chrono::duration<double, std::milli>(now - refilled_).count() /
                           static_cast<double>(o_.refill.count())
                     : 0.0);
  if (have < 1.0) {
    const auto wait = std::chrono::duration_cast<SysClock::duration>(
        std::chrono::duration<double, std::milli>((1.0 - have) * o_.refill.count()));
    earliest = std::max(*earliest, now + wait);
  }
  return earliest;
}

void EventLimiter::forget(const std::string& uid) {
  std::erase_if(slots_, [&](const auto& entry) { return entry.first.first == uid; });
}

// ---- PodJournal ---------------------------------------------------------------------------------

void PodJournal::expire(SysClock::time_point now) {
  std::erase_if(entries_, [&](const auto& e) { return now - e.second.at > ttl_; });
}

void PodJournal::set(Entry e) {
  std::lock_guard lock(mu_);
  expire(e.at);
  const auto uid = e.pod.uid;
  entries_[uid] = std::move(e);
  while (entries_.size() > max_) {
    entries_.erase(std::min_element(entries_.begin(), entries_.end(),
                                    [](auto& a, auto& b) { return a.second.at < b.second.at; }));
  }
}

bool PodJournal::erase(const std::string& uid) {
  std::lock_guard lock(mu_);
  return entries_.erase(uid) > 0;
}

std::optional<PodJournal::Entry> PodJournal::get(const std::string& uid) const {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(uid);
  if (it == entries_.end() || SysClock::now() - it->second.at > ttl_) return std::nullopt;
  return it->second;
}

std::vector<PodJournal::Entry> PodJournal::all() const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  const auto now = SysClock::now();
  for (const auto& [uid, e] : entries_) {
    if (now - e.at <= ttl_) out.push_back(e);
  }
  return out;
}

// ---- PodReporter --------------------------------------------------------------------------------

PodReporter::PodReporter(Options options, Poster poster, Metrics& metrics,
                         std::shared_ptr<spdlog::logger> log)
    : o_(std::move(options)),
      poster_(std::move(poster)),
      metrics_(metrics),
      log_(std::move(log)),
      limiter_(o_.limits, SysClock::now()) {}

PodReporter::~PodReporter() {
  stop();
}

void PodReporter::start() {
  std::lock_guard lock(mu_);
  if (running_) return;
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void PodReporter::stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    running_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PodReporter::record(const PodRef& pod, std::string_view type, std::string_view reason,
                         const std::string& message) {
  std::uint32_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    dropped = limiter_.record(pod, type, reason, message, SysClock::now());
  }
  cv_.notify_all();
  if (dropped > 0) {
    // Only with thousands of pods failing at once: memory stays bounded, and it is said.
    metrics_.count_degraded("event_dropped");
  }
}

void PodReporter::problem(const PodRef& pod, Problem kind, const std::string& message) {
  journal_.set({pod, kind == Problem::kFailed ? "failed" : "waiting",
                cut_utf8(message, rundir::kMaxErrorBytes), SysClock::now()});
  record(
      pod, "Warning",
      kind == Problem::kFailed ? event_reason::kEnrolmentFailed : event_reason::kEnrolmentPending,
      message);
}

void PodReporter::enrolled(const PodRef& pod, const std::string& how) {
  const auto had = journal_.get(pod.uid);
  journal_.erase(pod.uid);
  if (had) {
    record(pod, "Normal", event_reason::kEnrolled,
           (how.empty() ? std::string("enrolled into the ambient mesh") : how) +
               "; the earlier problem is resolved (" + had->error + ")");
  } else if (!how.empty()) {
    record(pod, "Normal", event_reason::kEnrolled, how);
  }
}

void PodReporter::unenrolled(const PodRef& pod, const std::string& why) {
  journal_.erase(pod.uid);
  record(pod, "Normal", event_reason::kUnenrolled, why);
}

void PodReporter::forget(const std::string& uid) {
  journal_.erase(uid);
  std::lock_guard lock(mu_);
  limiter_.forget(uid);
}

bool PodReporter::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    const auto now = SysClock::now();
    const auto next = limiter_.next_due(now);
    return !posting_ && (!next || *next > now);
  });
}

void PodReporter::run() {
  std::unique_lock lock(mu_);
  while (running_) {
    const auto now = SysClock::now();
    const auto next = limiter_.next_due(now);
    if (!next || *next > now) {
      // Woken by a record, a stop, or when the next slot is due (at least every second).
      const auto until =
          std::min(next.value_or(now + std::chrono::seconds(1)), now + std::chrono::seconds(1));
      cv_.wait_until(lock, until);
      continue;
    }
    auto due = limiter_.take_due(now);
    posting_ = true;
    lock.unlock();
    for (const auto& d : due) {
      const auto event = make_pod_event(
          d.pod, d.type, d.reason, d.message, d.count, d.first, d.last, o_.component, o_.node_name,
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         SysClock::now().time_since_epoch())
                                         .count()) +
              ++unique_);
      try {
        poster_(d.pod.namespace_, event);
        metrics_.count_event(d.reason, "posted");
      } catch (const kube::ApiError& e) {
        if (e.kind() == kube::ApiError::Kind::kConflict) {
          // A retried POST whose first attempt was created after all: it is there.
          metrics_.count_event(d.reason, "posted");
        } else {
          metrics_.count_event(d.reason, "failed");
          metrics_.count_degraded("event_post_failed");
          log_->warn("pod {}/{}: cannot post Event {}: {}", d.pod.namespace_, d.pod.name, d.reason,
                     e.what());
        }
      } catch (const std::exception& e) {
        metrics_.count_event(d.reason, "failed");
        metrics_.count_degraded("event_post_failed");
        log_->warn("pod {}/{}: cannot post Event {}: {}", d.pod.namespace_, d.pod.name, d.reason,
                   e.what());
      }
      if (d.count > 1) metrics_.count_event(d.reason, "aggregated", d.count - 1);
    }
    lock.lock();
    posting_ = false;
    cv_.notify_all();
  }
}

}  // namespace ambient::agent
