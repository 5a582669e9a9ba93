// A small Kubernetes API client over libcurl, shared by the plugin and the node agent.
// libcurl is loaded on first use (dlopen), so binaries that never reach the API never pay for
// loading it (docs/decisions/001-plugin-startup-cost.md).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kube/kubeconfig.h"

namespace ambient::kube {

class ApiError : public std::runtime_error {
 public:
  enum class Kind {
    kClientUnavailable,  // libcurl could not be loaded
    kUnreachable,        // connect/TLS failure
    kTimeout,            // deadline exceeded
    kUnauthorized,       // 401
    kForbidden,          // 403
    kNotFound,           // 404
    kConflict,           // 409
    kGone,               // 410
    kServerError,        // 5xx
    kHttpError,          // any other non-2xx
    kBadResponse,        // body is not the JSON we asked for
  };
  ApiError(Kind kind, long http_status, const std::string& message)
      : std::runtime_error(message), kind_(kind), http_status_(http_status) {}
  Kind kind() const { return kind_; }
  long http_status() const { return http_status_; }

 private:
  Kind kind_;
  long http_status_;
};

struct ClientOptions {
  std::chrono::milliseconds deadline{5000};       // total budget of one call, retries included
  int max_attempts = 3;                           // retries only for 5xx, timeouts, connect errors
  std::chrono::milliseconds initial_backoff{50};  // doubles per retry, with jitter
  std::string user_agent = "ambient-cni";
  // Upper bound for TCP connect + TLS handshake of one attempt (never beyond the deadline), so
  // a lost SYN leaves time for a retry.
  std::chrono::milliseconds connect_timeout{2000};
  // Caps on what the API may send (etcd stores objects of at most 1.5 MiB): a larger answer, or
  // a watch line longer than max_event_bytes without its newline, is a kBadResponse error and is
  // never held in memory whole.
  std::size_t max_body_bytes = 64u << 20;  // one answer (a LIST may hold many objects)
  std::size_t max_event_bytes = 8u << 20;  // one watch event (one object)
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay), for building
// paths such as "/api/v1/pods?labelSelector=" + query_escape("app in (a,b)"). Paths given to
// Client must already be encoded: libcurl rejects spaces in URLs.
std::string query_escape(std::string_view value);

// Why watch() returned.
enum class WatchEnd {
  kStreamEnded,  // the server closed the stream cleanly (e.g. its timeoutSeconds)
  kTimeout,      // the caller's timeout elapsed
  kStopped,      // on_event returned false
};

// Not thread-safe: one Client is used by one thread at a time (it owns one libcurl easy handle
// and the connection cached in it). Threads that call the API concurrently use a Client each.
// Errors never contain the bearer token.
class Client {
 public:
  Client(Kubeconfig config, ClientOptions options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // GET a path such as /api/v1/namespaces/demo/pods/web; the JSON body of a 2xx answer.
  // Consecutive calls reuse one connection. Throws ApiError.
  nlohmann::json get(std::string_view path);

  // PATCH with the given content type (application/merge-patch+json, …). Throws ApiError.
  // Retried like GET (5xx, timeouts, connection failures): send idempotent patches — merge or
  // strategic patches of maps such as labels and annotations are.
  nlohmann::json patch(std::string_view path, const nlohmann::json& body,
                       std::string_view content_type);

  // POST of a JSON object (application/json): the created object, or for subresources such as
  // serviceaccounts/{name}/token the answer object. Retried like GET: only for requests that are
  // safe to repeat (a second TokenRequest mints a second token, which is harmless).
  nlohmann::json create(std::string_view path, const nlohmann::json& body);

  // DELETE with a DeleteOptions body (e.g. {"gracePeriodSeconds": 0}): the answer object (the
  // deleted object, or a Status). Retried like GET; a repeated DELETE of a gone object is a
  // kNotFound error the caller may treat as done.
  nlohmann::json remove(std::string_view path, const nlohmann::json& options);

  // GET of a collection (/api/v1/pods?fieldSelector=…): the List object, checked to have an
  // `items` array (else kBadResponse); metadata.resourceVersion is where a watch resumes.
  nlohmann::json list(std::string_view path);

  // Streams a watch (`watch=true` is appended to the query when absent): on_event receives each
  // newline-delimited event ({"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}) in
  // order, including ERROR events (a 410 Status there means: relist). Returns when the server
  // ends the stream, when `timeout` elapses, or when on_event returns false. Throws ApiError
  // for a non-2xx answer, a connect/TLS failure, a stream broken mid-way (kUnreachable) or a
  // line that is not a JSON event (kBadResponse); exceptions from on_event propagate. No
  // retries: the caller resumes from the last resourceVersion it saw.
  // `cancel`, when given, is polled while the stream is idle (libcurl's progress callback, at
  // least once a second): set from another thread, it ends the watch with kStopped.
  WatchEnd watch(std::string_view path_with_query,
                 const std::function<bool(const nlohmann::json& event)>& on_event,
                 std::chrono::milliseconds timeout, const std::atomic<bool>* cancel = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::kube
