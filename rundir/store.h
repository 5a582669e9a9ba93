// The run dir shared by the plugin and the node agent: its layout, and the one way each side
// reads and writes it. Every write is base::write_file_atomic (a reader never sees half a file);
// every file that cannot be read as ours (torn by a crash, written by something else, unreadable)
// is skipped and reported the same way, as a Problem, for the caller to log.
//
//   <dir>/agent.sock                  the agent's socket for the plugin
//   <dir>/pods/<container id>.json    PodRecord of each sandbox an ADD saw
//   <dir>/enrolled/<pod uid>.json     Enrolment of each pod the agent enrolled
//   <dir>/tombstones/<container id>.json   PodRecord of a DEL that could not reach the agent
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "rundir/records.h"

namespace ambient::rundir {

struct Problem {
  std::string path;
  std::string error;
};

class RunDir {
 public:
  explicit RunDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& path() const noexcept { return dir_; }
  std::string agent_socket() const { return dir_ + "/agent.sock"; }
  std::string pods_dir() const { return dir_ + "/pods"; }
  std::string enrolled_dir() const { return dir_ + "/enrolled"; }
  std::string tombstones_dir() const { return dir_ + "/tombstones"; }

  // Pod records. Writes throw base::FileError naming the path.
  void write_record(const PodRecord& r) const;
  std::optional<PodRecord> read_record(const std::string& container_id,
                                       std::vector<Problem>* problems = nullptr) const;
  void remove_record(const std::string& container_id) const noexcept;
  std::vector<PodRecord> records(std::vector<Problem>* problems = nullptr) const;

  // The agent's enrolled state, one file per pod UID.
  void write_enrolled(const Enrolment& s) const;
  void remove_enrolled(const std::string& uid) const noexcept;
  std::vector<Enrolment> enrolled(std::vector<Problem>* problems = nullptr) const;

  // Tombstones. take_tombstones() returns them and removes the files (unreadable ones too, once
  // reported: nothing could ever act on them).
  void write_tombstone(const PodRecord& r) const;
  std::vector<PodRecord> take_tombstones(std::vector<Problem>* problems = nullptr) const;

 private:
  std::string dir_;
};

}  // namespace ambient::rundir
