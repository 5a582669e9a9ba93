// The agent's HTTP endpoints (/healthz, /readyz on one port, /metrics on another): a small
// HTTP/1.1 server for GET and HEAD of fixed routes, on one thread that poll()s every connection.
//
// Anyone who reaches a node IP reaches these ports, so they are built to stay up under abuse
// (decision 012): no thread per connection (a hundred slow clients cannot starve a probe), no
// request body is ever read (a request announcing one is answered 413 and closed), the request
// head is capped (431 past kMaxHeadBytes), a connection that does not complete its request
// within kReadTimeout is closed, and past kMaxConnections new ones are closed at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/logger.h>

namespace ambient::agent {

class HttpEndpoint {
 public:
  struct Response {
    int status = 200;
    std::string content_type = "text/plain";
    std::string body;
  };
  using Handler = std::function<Response()>;
  // Gets the request's query string (what follows '?', undecoded; "" when none).
  using QueryHandler = std::function<Response(const std::string& query)>;

  static constexpr std::size_t kMaxHeadBytes = 8192;
  static constexpr std::chrono::milliseconds kReadTimeout{5000};
  static constexpr std::size_t kMaxConnections = 1024;

  HttpEndpoint() = default;
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  // Before start(): the body of GET (and the head of HEAD) `path`.
  void route(std::string path, Handler handler);
  void route(std::string path, QueryHandler handler);

  // Binds address:port (port 0: any free port; < 0: no endpoint at all) and serves on a thread
  // of its own. Throws std::runtime_error naming the address when it cannot listen.
  void start(const std::string& address, int port, std::shared_ptr<spdlog::logger> log);
  void stop();
  int port() const { return port_; }

 private:
  struct Connection;
  void serve();
  Response answer(const std::string& method, const std::string& path,
                  const std::string& query) const;

  std::map<std::string, QueryHandler> routes_;
  std::shared_ptr<spdlog::logger> log_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = -1;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace ambient::agent
