#include "rundir/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/file.h"
#include "config/errors.h"

namespace ambient::rundir {
namespace {

namespace fs = std::filesystem;

void write_json(const std::string& dir, const std::string& name, const nlohmann::json& j) {
  base::ensure_dir(dir, 0700);
  base::write_file_atomic(fs::path(dir) / (name + ".json"), j.dump(), 0600);
}

// Parses one file with `decode`; anything that is not ours becomes a Problem.
template <class T, class Decode>
std::optional<T> read_one(const fs::path& path, Decode decode, std::vector<Problem>* problems) {
  const auto report = [&](const std::string& error) {
    if (problems) problems->push_back({path.string(), error});
    return std::nullopt;
  };
  // Only files we (root, on a node) wrote ourselves: anyone else who can drop a file here must
  // not be able to name a netns for the agent to enter or a pod for it to release.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && st.st_uid != ::geteuid()) {
    return report("owned by uid " + std::to_string(st.st_uid) + ", not by us (uid " +
                  std::to_string(::geteuid()) + ")");
  }
  std::optional<std::string> text;
  try {
    text = base::read_file(path, /*no_follow=*/true);
  } catch (const base::FileError& e) {
    return report(e.what());
  }
  if (!text) return std::nullopt;  // gone meanwhile: a DEL or a release raced us
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) return report("not JSON (torn or foreign file)");
  try {
    return decode(j);
  } catch (const config::ConfigError& e) {
    return report(e.what());
  }
}

template <class T, class Decode>
std::vector<T> read_all(const std::string& dir, Decode decode, std::vector<Problem>* problems) {
  std::vector<T> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(base::kTempPrefix, 0) == 0) continue;  // a write in flight
    if (entry.path().extension() != ".json") {
      if (problems) problems->push_back({entry.path().string(), "not a .json file of ours"});
      continue;
    }
    if (auto v = read_one<T>(entry.path(), decode, problems)) out.push_back(std::move(*v));
  }
  if (ec && ec != std::errc::no_such_file_or_directory && problems) {
    problems->push_back({dir, "cannot list: " + ec.message()});
  }
  return out;
}

void remove_quietly(const fs::path& p) noexcept {
  std::error_code ec;
  fs::remove(p, ec);
}

}  // namespace

void RunDir::write_record(const PodRecord& r) const {
  write_json(pods_dir(), r.container_id, to_json(r));
}

std::optional<PodRecord> RunDir::read_record(const std::string& container_id,
                                             std::vector<Problem>* problems) const {
  return read_one<PodRecord>(fs::path(pods_dir()) / (container_id + ".json"), pod_record_from_json,
                             problems);
}

void RunDir::remove_record(const std::string& container_id) const noexcept {
  remove_quietly(fs::path(pods_dir()) / (container_id + ".json"));
}

std::vector<PodRecord> RunDir::records(std::vector<Problem>* problems) const {
  return read_all<PodRecord>(pods_dir(), pod_record_from_json, problems);
}

void RunDir::write_enrolled(const Enrolment& s) const {
  write_json(enrolled_dir(), s.pod.uid, to_json(s));
}

void RunDir::remove_enrolled(const std::string& uid) const noexcept {
  remove_quietly(fs::path(enrolled_dir()) / (uid + ".json"));
}

std::vector<Enrolment> RunDir::enrolled(std::vector<Problem>* problems) const {
  return read_all<Enrolment>(enrolled_dir(), enrolment_from_json, problems);
}

void RunDir::write_tombstone(const PodRecord& r) const {
  write_json(tombstones_dir(), r.container_id, to_json(r));
}

std::vector<PodRecord> RunDir::take_tombstones(std::vector<Problem>* problems) const {
  std::vector<PodRecord> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tombstones_dir(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(base::kTempPrefix, 0) == 0) continue;
    if (auto r = read_one<PodRecord>(entry.path(), pod_record_from_json, problems)) {
      out.push_back(std::move(*r));
    }
    remove_quietly(entry.path());
  }
  return out;
}

}  // namespace ambient::rundir
