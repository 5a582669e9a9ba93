// File I/O of the installer: atomic writes (temp file + fsync + rename in the same directory,
// then fsync of the directory), the binary copy, reading the CNI conf dir, applying a Plan.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/file.h"
#include "install/conflist.h"

namespace ambient::install {

// Our temp files (base::write_file_atomic's) are named <kTempPrefix><target>.<pid>.<n>: hidden,
// and never ending in .conf or .conflist, so no runtime ever loads a half-written one.
using base::kTempPrefix;

// base::write_file_atomic, failures as InstallError naming the path.
void write_file_atomic(const std::filesystem::path& path, std::string_view content, mode_t mode);

// The whole file, or nullopt when it does not exist. Throws InstallError for other failures.
std::optional<std::string> read_file(const std::filesystem::path& path);

// Copies `from` to `to` atomically with `mode`, unless `to` already has the same bytes and mode.
// Neither file is ever held in memory whole (chunked compare and copy). Returns whether it
// wrote. Throws InstallError (a missing source names the source).
bool install_file(const std::filesystem::path& from, const std::filesystem::path& to, mode_t mode);

// What stat says of a file: any write, chmod or replacement changes it (ctime cannot be set from
// user space), so an unchanged identity means unchanged bytes.
struct FileIdentity {
  dev_t dev;
  ino_t ino;
  off_t size;
  mode_t mode;
  long long mtime_ns;
  long long ctime_ns;
  bool operator==(const FileIdentity&) const = default;
};
std::optional<FileIdentity> identity_of(const std::filesystem::path& path);

// base::same_content, failures as InstallError.
bool same_content(const std::filesystem::path& a, const std::filesystem::path& b);

// Removes our temp files left in `dir` by an earlier process that died mid-write. Returns how
// many were removed.
std::size_t remove_stale_temps(const std::filesystem::path& dir);

// The regular *.conf / *.conflist files of the conf dir (symlinks followed), sorted by name.
// A missing directory reads as empty. Throws InstallError when it cannot be listed.
std::vector<ConfFile> read_conf_dir(const std::filesystem::path& dir);

// Applies a plan to the directory: writes (mode 0644) in order, then removals (missing = done).
void apply_to_dir(const std::filesystem::path& dir, const Plan& plan);

// Removes `path` if it exists; returns whether it did. Throws InstallError on other failures.
bool remove_file(const std::filesystem::path& path);

}  // namespace ambient::install
