#include "plugin/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "config/errors.h"
#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void unavailable(const std::string& why) {
  throw CniError(cni_code::kTryAgainLater, "node agent unavailable: " + why);
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

 private:
  int fd_;
};

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

class SocketAgentClient final : public AgentClient {
 public:
  SocketAgentClient(std::string path, std::chrono::milliseconds deadline)
      : path_(std::move(path)), deadline_(deadline) {}

  config::AgentReply call(const config::AgentRequest& request) override {
    const auto deadline = Clock::now() + deadline_;
    Fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) unavailable(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof addr.sun_path) unavailable("socket path too long: " + path_);
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      unavailable(path_ + ": " + std::strerror(errno));
    }
    const std::string bytes = config::to_json(request).dump();
    if (::send(sock.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) {
      unavailable("sending to " + path_ + ": " + std::strerror(errno));
    }
    std::string buf(64 * 1024, '\0');
    for (;;) {
      pollfd p{sock.get(), POLLIN, 0};
      const int left = remaining_ms(deadline);
      if (left == 0) {
        unavailable("no answer within " + std::to_string(deadline_.count()) + " ms");
      }
      const int rc = ::poll(&p, 1, left);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) continue;
      const ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) unavailable("the agent closed the connection without an answer");
      try {
        return config::agent_reply_from_json(
            nlohmann::json::parse(std::string_view(buf.data(), static_cast<std::size_t>(n))));
      } catch (const std::exception& e) {
        unavailable(std::string("malformed answer: ") + e.what());
      }
    }
  }

 private:
  std::string path_;
  std::chrono::milliseconds deadline_;
};

void write_atomically(const fs::path& path, const std::string& content) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  const auto tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    if (!out.flush()) {
      throw CniError(cni_code::kIoFailure, "cannot write " + tmp + ": " + std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw CniError(cni_code::kIoFailure,
                   "cannot write " + path.string() + ": " + std::strerror(err));
  }
}

}  // namespace

std::unique_ptr<AgentClient> make_socket_agent_client(const std::string& run_dir,
                                                      std::chrono::milliseconds deadline) {
  return std::make_unique<SocketAgentClient>(config::run_dir::agent_socket(run_dir), deadline);
}

void write_pod_record(const std::string& run_dir, const config::PodRecord& record) {
  write_atomically(fs::path(config::run_dir::pods_dir(run_dir)) / (record.container_id + ".json"),
                   config::to_json(record).dump());
}

void remove_pod_record(const std::string& run_dir, const std::string& container_id) noexcept {
  std::error_code ec;
  fs::remove(fs::path(config::run_dir::pods_dir(run_dir)) / (container_id + ".json"), ec);
}

std::optional<config::PodRecord> read_pod_record(const std::string& run_dir,
                                                 const std::string& container_id) {
  std::ifstream in(fs::path(config::run_dir::pods_dir(run_dir)) / (container_id + ".json"));
  if (!in) return std::nullopt;
  const auto j = nlohmann::json::parse(in, nullptr, false);
  try {
    return config::pod_record_from_json(j);
  } catch (const config::ConfigError&) {
    return std::nullopt;
  }
}

std::vector<config::PodRecord> read_pod_records(const std::string& run_dir) {
  std::vector<config::PodRecord> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config::run_dir::pods_dir(run_dir), ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const auto j = nlohmann::json::parse(in, nullptr, false);
    try {
      out.push_back(config::pod_record_from_json(j));
    } catch (const config::ConfigError&) {
      // A torn or foreign file: not ours to interpret; the agent reports it.
    }
  }
  return out;
}

void write_tombstone(const std::string& run_dir, const config::PodRecord& record) noexcept {
  try {
    write_atomically(
        fs::path(config::run_dir::tombstones_dir(run_dir)) / (record.container_id + ".json"),
        config::to_json(record).dump());
  } catch (...) {
    // DEL never fails; the agent's startup reconcile finds the pod gone anyway.
  }
}

}  // namespace ambient::plugin
