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

// Creates the temp file beside `path`, lets `fill` write it, then fchmod, fsync, rename, fsync
// of the directory; the temp file is removed on any failure.
template <typename Fill>
void replace_atomically(const fs::path& path, mode_t mode, Fill&& fill) {
  const fs::path tmp = temp_path_for(path);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) fail("cannot create", tmp, errno);
  try {
    if (::fchmod(fd.get(), mode) != 0) fail("cannot chmod", tmp, errno);  // past the umask
    fill(fd.get(), tmp);
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

// Reads up to `size` bytes (fewer only at the end of the file).
std::size_t read_full(int fd, char* buf, std::size_t size, const fs::path& path) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, buf + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read", path, errno);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

constexpr std::size_t kChunk = 65536;

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  replace_atomically(path, mode, [&](int fd, const fs::path& tmp) { write_all(fd, content, tmp); });
}

void copy_file_atomic(const fs::path& from, const fs::path& to, mode_t mode) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) fail("cannot open", from, errno);
  replace_atomically(to, mode, [&](int fd, const fs::path& tmp) {
    std::string buf(kChunk, '\0');
    for (;;) {
      const std::size_t n = read_full(in.get(), buf.data(), buf.size(), from);
      if (n == 0) break;
      write_all(fd, std::string_view(buf.data(), n), tmp);
    }
  });
}

bool same_content(const fs::path& a, const fs::path& b) {
  UniqueFd fa(::open(a.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fa) {
    if (errno == ENOENT) return false;
    fail("cannot open", a, errno);
  }
  UniqueFd fb(::open(b.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fb) {
    if (errno == ENOENT) return false;
    fail("cannot open", b, errno);
  }
  struct stat sa {
  }, sb{};
  if (::fstat(fa.get(), &sa) != 0) fail("cannot stat", a, errno);
  if (::fstat(fb.get(), &sb) != 0) fail("cannot stat", b, errno);
  if (sa.st_size != sb.st_size) return false;
  std::string ba(kChunk, '\0'), bb(kChunk, '\0');
  for (;;) {
    const std::size_t na = read_full(fa.get(), ba.data(), ba.size(), a);
    const std::size_t nb = read_full(fb.get(), bb.data(), bb.size(), b);
    if (na != nb || std::memcmp(ba.data(), bb.data(), na) != 0) return false;
    if (na == 0) return true;
  }
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
