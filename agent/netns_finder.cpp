#include "agent/netns_finder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ambient::agent {
namespace {

namespace fs = std::filesystem;

std::string read_small(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Field 22 of /proc/PID/stat (after the parenthesised comm, which may contain spaces).
unsigned long long start_time(const fs::path& pid_dir) {
  const auto stat = read_small(pid_dir / "stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return ~0ULL;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return std::stoull(field);
  }
  return ~0ULL;
}

// The container id at the end of a cgroup path: ".../pod<uid>/<id>" (cgroupfs) or
// ".../cri-containerd-<id>.scope" (systemd driver). Empty when the process sits in the pod
// cgroup itself.
std::string container_id_of(std::string_view cgroup_path) {
  auto last = cgroup_path.substr(cgroup_path.rfind('/') + 1);
  if (last.size() > 6 && last.substr(last.size() - 6) == ".scope") last.remove_suffix(6);
  if (const auto dash = last.rfind('-'); dash != std::string_view::npos)
    last.remove_prefix(dash + 1);
  if (last.rfind("pod", 0) == 0 || last.empty()) return {};
  return std::string(last);
}

}  // namespace

NetnsFinder::NetnsFinder(rundir::RunDir run_dir, std::string proc_root, std::uint64_t host_inode)
    : run_dir_(std::move(run_dir)), proc_root_(std::move(proc_root)), host_inode_(host_inode) {}

void NetnsFinder::refresh_records() {
  const auto dir = run_dir_.pods_dir();
  struct stat st {};
  const std::int64_t mtime =
      ::stat(dir.c_str(), &st) == 0 ? st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec : -2;
  if (mtime == records_mtime_ns_) return;  // no record added or removed since the last read
  records_mtime_ns_ = mtime;
  by_uid_.clear();
  // Torn or foreign files are reported where the agent starts and by the plugin's GC; here a
  // record that cannot be read is simply not a way to find a netns.
  for (auto& r : run_dir_.records()) {
    if (!r.uid.empty()) by_uid_[r.uid] = std::move(r);
  }
}

std::optional<rundir::PodRecord> NetnsFinder::record(const std::string& uid) {
  std::lock_guard g(mu_);
  refresh_records();
  const auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) return std::nullopt;
  return it->second;
}

std::optional<FoundNetns> NetnsFinder::find(const std::string& uid) {
  if (const auto r = record(uid); r && !r->netns.empty()) {
    struct stat st {};
    if (::stat(r->netns.c_str(), &st) == 0) return FoundNetns{r->netns, r->container_id, "record"};
  }
  return scan_proc(uid);
}

std::optional<FoundNetns> NetnsFinder::scan_proc(const std::string& uid) const {
  if (uid.empty()) return std::nullopt;
  std::string underscored = uid;  // the systemd cgroup driver writes pod UIDs with '_'
  std::replace(underscored.begin(), underscored.end(), '-', '_');
  std::optional<FoundNetns> best;
  unsigned long long best_start = ~0ULL;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(proc_root_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::istringstream cgroups(read_small(entry.path() / "cgroup"));
    std::string line, match;
    while (std::getline(cgroups, line)) {
      if (line.find("pod" + uid) != std::string::npos ||
          line.find("pod" + underscored) != std::string::npos) {
        match = line.substr(line.rfind(':') + 1);
        break;
      }
    }
    if (match.empty()) continue;
    const auto ns_path = entry.path() / "ns" / "net";
    struct stat st {};
    if (::stat(ns_path.c_str(), &st) != 0 || st.st_ino == host_inode_) continue;
    const auto started = start_time(entry.path());
    if (!best || started < best_start) {
      best_start = started;
      best = FoundNetns{ns_path.string(), container_id_of(match), "proc"};
    }
  }
  return best;
}

}  // namespace ambient::agent
