#include "install/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/file.h"
#include "base/unique_fd.h"
#include "install/errors.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw InstallError(what + " " + path.string() + ": " + std::strerror(err));
}

void fsync_dir(const fs::path& dir) {
  base::UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) ::fsync(d.get());  // best effort: durability, not correctness
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  try {
    base::write_file_atomic(path, content, mode);
  } catch (const base::FileError& e) {
    throw InstallError(e.what());
  }
}

std::optional<std::string> read_file(const fs::path& path) {
  try {
    return base::read_file(path);
  } catch (const base::FileError& e) {
    throw InstallError(e.what());
  }
}

bool install_file(const fs::path& from, const fs::path& to, mode_t mode) {
  try {
    struct stat st {};
    if (::stat(from.c_str(), &st) != 0) {
      throw InstallError("source " + from.string() + " does not exist");
    }
    if (::stat(to.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
        base::same_content(from, to)) {
      return false;
    }
    base::copy_file_atomic(from, to, mode);
    return true;
  } catch (const base::FileError& e) {
    throw InstallError(e.what());
  }
}

std::optional<FileIdentity> identity_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{st.st_dev,
                      st.st_ino,
                      st.st_size,
                      st.st_mode,
                      st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                      st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec};
}

bool same_content(const fs::path& a, const fs::path& b) {
  try {
    return base::same_content(a, b);
  } catch (const base::FileError& e) {
    throw InstallError(e.what());
  }
}

std::size_t remove_stale_temps(const fs::path& dir) {
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with(kTempPrefix) && ::unlink(entry.path().c_str()) == 0) ++removed;
  }
  return removed;
}

std::vector<ConfFile> read_conf_dir(const fs::path& dir) {
  std::vector<ConfFile> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    throw InstallError("cannot list " + dir.string() + ": " + ec.message());
  }
  for (const auto& entry : it) {
    const auto name = entry.path().filename().string();
    if (!is_cni_config_name(name)) continue;
    std::error_code type_ec;
    if (!fs::is_regular_file(entry.path(), type_ec)) continue;  // follows symlinks
    // Gone between listing and reading: the writer is mid-rename; the watcher comes back.
    if (auto text = read_file(entry.path())) out.push_back({name, std::move(*text)});
  }
  std::sort(out.begin(), out.end(),
            [](const ConfFile& a, const ConfFile& b) { return a.name < b.name; });
  return out;
}

bool remove_file(const fs::path& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  fail("cannot remove", path, errno);
}

void apply_to_dir(const fs::path& dir, const Plan& plan) {
  for (const auto& op : plan.ops) {
    if (op.kind == FileOp::Kind::kWrite) {
      write_file_atomic(dir / op.name, op.text, 0644);
    } else {
      remove_file(dir / op.name);
    }
  }
  fsync_dir(dir);
}

}  // namespace ambient::install
