#include "install/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "install/errors.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw InstallError(what + " " + path.string() + ": " + std::strerror(err));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

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

void fsync_dir(const fs::path& dir) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() >= 0) ::fsync(d.get());  // best effort: durability, not correctness
}

fs::path temp_path_for(const fs::path& path) {
  static std::atomic<unsigned> counter{0};
  return path.parent_path() / (std::string(kTempPrefix) + path.filename().string() + "." +
                               std::to_string(::getpid()) + "." + std::to_string(counter++));
}

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  const fs::path tmp = temp_path_for(path);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) fail("cannot create", tmp, errno);
  try {
    // The umask may have narrowed the mode given to open().
    if (::fchmod(fd.get(), mode) != 0) fail("cannot chmod", tmp, errno);
    write_all(fd.get(), content, tmp);
    if (::fsync(fd.get()) != 0) fail("cannot fsync", tmp, errno);
    if (::close(fd.release()) != 0) fail("cannot close", tmp, errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename into", path, errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(path.parent_path());
}

std::optional<std::string> read_file(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
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

bool install_file(const fs::path& from, const fs::path& to, mode_t mode) {
  const auto source = read_file(from);
  if (!source) throw InstallError("source " + from.string() + " does not exist");
  struct stat st {};
  if (::stat(to.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
      static_cast<std::size_t>(st.st_size) == source->size()) {
    if (read_file(to) == source) return false;
  }
  write_file_atomic(to, *source, mode);
  return true;
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
