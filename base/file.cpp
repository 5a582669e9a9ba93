#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "base/unique_fd.h"

namespace ambient::base {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw FileError(what + " " + path.string() + ": " + std::strerror(err), err);
}

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

fs::path temp_path_for(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  return path.parent_path() / (std::string(kTempPrefix) + path.filename().string() + "." +
                               std::to_string(::getpid()) + "." + std::to_string(counter++));
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  const fs::path tmp = temp_path_for(path);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) fail("cannot create", tmp, errno);
  try {
    if (::fchmod(fd.get(), mode) != 0) fail("cannot chmod", tmp, errno);  // past the umask
    write_all(fd.get(), content, tmp);
    if (::fsync(fd.get()) != 0) fail("cannot fsync", tmp, errno);
    if (::close(fd.release()) != 0) fail("cannot close", tmp, errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename into", path, errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Durability of the rename itself; a failure here leaves a correct file, so it is not one.
  UniqueFd dir(::open(path.parent_path().empty() ? "." : path.parent_path().c_str(),
                      O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

std::optional<std::string> read_file(const fs::path& path, bool no_follow) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (no_follow ? O_NOFOLLOW : 0)));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    fail("cannot open", path, errno);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read", path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void ensure_dir(const fs::path& dir, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileError("cannot create " + dir.string() + ": " + ec.message(), ec.value());
  if (::chmod(dir.c_str(), mode) != 0) fail("cannot chmod", dir, errno);
}

std::string ensure_socket_dir(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    ensure_dir(dir, 0700);
    return "";
  }
  if (!(st.st_mode & 022)) return "";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "directory " + dir.string() + " is writable by group or others (mode " + mode +
         "): anyone who can write there can replace the socket";
}

}  // namespace ambient::base
