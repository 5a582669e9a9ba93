#include "node/node_text.h"

#include <algorithm>
#include <ctime>
#include <sstream>

namespace ambient::node {

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  }
  return out.str();
}

std::string when(std::int64_t unix_seconds, std::chrono::system_clock::time_point now) {
  if (unix_seconds == 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const auto ago =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() -
      unix_seconds;
  std::string age;
  if (ago < 0) {
    age = "in the future";
  } else if (ago < 60) {
    age = std::to_string(ago) + "s ago";
  } else if (ago < 3600) {
    age = std::to_string(ago / 60) + "m" + std::to_string(ago % 60) + "s ago";
  } else if (ago < 86400) {
    age = std::to_string(ago / 3600) + "h" + std::to_string(ago % 3600 / 60) + "m ago";
  } else {
    age = std::to_string(ago / 86400) + "d" + std::to_string(ago % 86400 / 3600) + "h ago";
  }
  return std::string(buf) + " (" + age + ")";
}

std::string render_agent_status(const rundir::AgentView& view,
                                std::chrono::system_clock::time_point now) {
  std::size_t held = 0;
  for (const auto& p : view.pods) held += p.held ? 1 : 0;
  std::ostringstream out;
  out << "node agent on node " << (view.node.empty() ? "(unnamed)" : view.node) << ": "
      << (view.ready ? "ready" : "NOT READY (" + view.not_ready + ")") << "; "
      << view.ztunnel_connections << " ztunnel connection"
      << (view.ztunnel_connections == 1 ? "" : "s") << "; " << held << " pod"
      << (held == 1 ? "" : "s") << " held";
  if (view.pods.size() > held) {
    out << ", " << view.pods.size() - held << " not held after a failed enrolment";
  }
  out << '\n';
  if (view.pods.empty()) return out.str();
  std::vector<std::vector<std::string>> rows = {
      {"NAMESPACE", "POD", "UID", "STATE", "ZTUNNEL", "SINCE", "NETNS", "LAST ERROR"}};
  for (const auto& p : view.pods) {
    std::string ztunnel = "-";
    if (p.held) {
      ztunnel = p.ztunnel_acked ? "acked (connection " + std::to_string(p.ztunnel_connection) + ")"
                                : "not acked";
    }
    rows.push_back({p.namespace_, p.name, p.uid, p.state, ztunnel, when(p.since, now),
                    p.netns.empty() ? "-" : p.netns,
                    p.last_error.empty() ? "-" : when(p.last_error_at, now) + " " + p.last_error});
  }
  out << '\n' << render_table(rows);
  return out.str();
}

}  // namespace ambient::node
