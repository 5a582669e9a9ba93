#include "agent/http_endpoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/unique_fd.h"

namespace ambient::agent {
namespace {

using Clock = std::chrono::steady_clock;

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

std::string render(const HttpEndpoint::Response& r, bool head_only, const std::string& extra = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += extra;
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

struct HttpEndpoint::Connection {
  base::UniqueFd fd;
  std::string in;   // the request head so far
  std::string out;  // the response not yet sent
  bool answered = false;
  Clock::time_point deadline;
};

HttpEndpoint::~HttpEndpoint() {
  stop();
}

void HttpEndpoint::route(std::string path, Handler handler) {
  routes_[std::move(path)] = [handler = std::move(handler)](const std::string&) {
    return handler();
  };
}

void HttpEndpoint::route(std::string path, QueryHandler handler) {
  routes_[std::move(path)] = std::move(handler);
}

void HttpEndpoint::start(const std::string& address, int port,
                         std::shared_ptr<spdlog::logger> log) {
  if (port < 0) return;
  log_ = std::move(log);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
      inet_pton(AF_INET, address.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
             inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    throw std::runtime_error("listen address " + address + " is not an IPv4 or IPv6 address");
  }
  base::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(fd.get(), 128) != 0) {
    throw std::runtime_error("cannot listen on " + address + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(bound).sin_port
                                           : reinterpret_cast<sockaddr_in6&>(bound).sin6_port);
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
  listen_fd_ = fd.release();
  running_ = true;
  thread_ = std::thread([this] { serve(); });
  log_->info("HTTP on {}:{}", address, port_);
}

void HttpEndpoint::stop() {
  if (!running_.exchange(false)) return;
  (void)!::write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
  listen_fd_ = wake_[0] = wake_[1] = -1;
}

HttpEndpoint::Response HttpEndpoint::answer(const std::string& method, const std::string& path,
                                            const std::string& query) const {
  const auto it = routes_.find(path);
  if (it == routes_.end()) return {404, "text/plain", "not found\n"};
  try {
    return it->second(query);
  } catch (const std::exception& e) {
    log_->error("HTTP {} {}: {}", method, path, e.what());
    return {503, "text/plain", "error\n"};
  }
}

void HttpEndpoint::serve() {
  std::vector<std::unique_ptr<Connection>> conns;
  const auto respond = [&](Connection& c) {
    const auto head_end = c.in.find("\r\n\r\n");
    std::string line = c.in.substr(0, c.in.find("\r\n"));
    const auto sp1 = line.find(' ');
    const auto sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) {
      c.out = render({400, "text/plain", "bad request\n"}, false);
      return;
    }
    const std::string method = line.substr(0, sp1);
    std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto question = path.find('?');
    const std::string query = question == std::string::npos ? "" : path.substr(question + 1);
    path = path.substr(0, question);
    // A body is never read: whoever announces one gets 413 before sending it.
    const std::string headers = lower(c.in.substr(0, head_end));
    const auto cl = headers.find("\r\ncontent-length:");
    const bool has_body =
        headers.find("\r\ntransfer-encoding:") != std::string::npos ||
        (cl != std::string::npos && std::strtoull(headers.c_str() + cl + 17, nullptr, 10) > 0);
    if (has_body) {
      c.out = render({413, "text/plain", "request bodies are not accepted\n"}, false);
    } else if (method != "GET" && method != "HEAD") {
      c.out = render({405, "text/plain", "only GET and HEAD\n"}, false, "Allow: GET, HEAD\r\n");
    } else {
      c.out = render(answer(method, path, query), method == "HEAD");
    }
  };

  while (running_) {
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    auto next = Clock::now() + std::chrono::seconds(1);
    for (const auto& c : conns) {
      fds.push_back({c->fd.get(), static_cast<short>(c->answered ? POLLOUT : POLLIN), 0});
      next = std::min(next, c->deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(0, wait.count()))) < 0 &&
        errno != EINTR) {
      log_->error("HTTP poll: {}", std::strerror(errno));
      continue;
    }
    if (fds[0].revents & POLLIN) break;
    const auto now = Clock::now();
    for (std::size_t i = 0; i < conns.size(); ++i) {
      auto& c = *conns[i];
      const short ev = fds[i + 2].revents;
      if (!c.answered && (ev & (POLLIN | POLLHUP | POLLERR))) {
        char buf[4096];
        const std::size_t room = kMaxHeadBytes + 1 - c.in.size();
        const ssize_t n = ::recv(c.fd.get(), buf, std::min(room, sizeof buf), 0);
        if (n <= 0) {
          if (n == 0 || (errno != EAGAIN && errno != EINTR)) c.fd.reset();
          continue;
        }
        c.in.append(buf, static_cast<std::size_t>(n));
        if (c.in.find("\r\n\r\n") != std::string::npos) {
          respond(c);
          c.answered = true;
        } else if (c.in.size() > kMaxHeadBytes) {
          c.out = render({431, "text/plain", "request head too large\n"}, false);
          c.answered = true;
        }
      }
      if (c.answered && c.fd) {
        const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) c.out.erase(0, static_cast<std::size_t>(n));
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || c.out.empty()) c.fd.reset();
      }
      if (c.fd && now >= c.deadline) c.fd.reset();  // too slow to ask, or to take the answer
    }
    std::erase_if(conns, [](const auto& c) { return !c->fd; });
    if (fds[1].revents & POLLIN) {
      for (;;) {
        base::UniqueFd fd(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) break;
        if (conns.size() >= kMaxConnections) continue;  // closed at once
        auto c = std::make_unique<Connection>();
        c->fd = std::move(fd);
        c->deadline = Clock::now() + kReadTimeout;
        conns.push_back(std::move(c));
      }
    }
  }
}

}  // namespace ambient::agent
