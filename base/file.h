// Whole-file reads and durable atomic writes, the one way every layer writes a file that another
// process reads (the installer's conflists, the run dir's records and state).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ambient::base {

// A file operation that failed; the message names the operation, the path and the errno text.
class FileError : public std::runtime_error {
 public:
  FileError(const std::string& message, int err) : std::runtime_error(message), errno_(err) {}
  int error_number() const noexcept { return errno_; }

 private:
  int errno_;
};

// Our temp files are named <kTempPrefix><target>.<pid>.<n> beside their target: hidden, and never
// ending in .json, .conf or .conflist, so no reader ever takes a half-written one.
inline constexpr std::string_view kTempPrefix = ".ambient-cni-tmp.";

// Writes `content` to `path` so that a reader sees the old file or the new one, never a part:
// a temp file in the same directory created with O_EXCL | O_NOFOLLOW, exactly `mode` (whatever
// the umask), fsync, rename over `path`, fsync of the directory. The directory must exist.
// Throws FileError.
void write_file_atomic(const std::filesystem::path& path, std::string_view content,
                       mode_t mode = 0644);

// The whole file, or nullopt when it does not exist. `no_follow` refuses a symlink (ELOOP is an
// error then). Throws FileError for any other failure.
std::optional<std::string> read_file(const std::filesystem::path& path, bool no_follow = false);

// write_file_atomic with the bytes of the file `from`, copied in bounded chunks (a plugin binary
// is tens of MiB: it is never held in memory). Throws FileError (a missing source: ENOENT).
void copy_file_atomic(const std::filesystem::path& from, const std::filesystem::path& to,
                      mode_t mode = 0644);

// Whether two files hold the same bytes, compared in bounded chunks (sizes first). A missing
// file is unequal to anything. Throws FileError for other failures.
bool same_content(const std::filesystem::path& a, const std::filesystem::path& b);

// Creates `dir` (and its parents) if missing, then makes its mode exactly `mode`.
void ensure_dir(const std::filesystem::path& dir, mode_t mode);

// For a socket's directory that may be shared with a peer (ztunnel's /var/run/ztunnel): creates
// it 0700 (whatever the umask) when missing and leaves an existing one alone. Returns a warning
// when the existing directory is writable by group or others ("" otherwise).
std::string ensure_socket_dir(const std::filesystem::path& dir);

}  // namespace ambient::base
