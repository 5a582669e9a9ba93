// A Kubernetes API server stand-in: real REST paths over TLS with bearer-token auth, so the
// production API client (and kubectl 1.32) talk to it exactly as to kube-apiserver.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::testing {

// A fault applied to matching requests. `times` < 0 means every matching request.
struct ApiFault {
  std::string path_prefix;  // empty = every path
  int delay_ms = 0;         // delay before answering
  int status = 0;           // answer with this HTTP status and a Status object
  bool drop = false;        // close the connection without an answer
  bool bad_json = false;    // answer 200 with a body that is not JSON
  int times = -1;
};

struct ApiRequest {
  std::string method;
  std::string path;
  std::string query;
  bool authorized = false;
};

class ApiServerStandin {
 public:
  struct Options {
    std::string bind_address = "127.0.0.1";
    int port = 0;  // 0 = pick a free port
    std::string token = "test-token";
  };

  ApiServerStandin();
  explicit ApiServerStandin(Options options);
  ~ApiServerStandin();
  ApiServerStandin(const ApiServerStandin&) = delete;
  ApiServerStandin& operator=(const ApiServerStandin&) = delete;

  void start();  // returns once it accepts connections
  void stop();

  int port() const;
  std::string url() const;  // https://127.0.0.1:<port>
  const std::string& ca_pem() const;
  const std::string& token() const;

  // A kubeconfig for this server: CA data inline, bearer token inline or via tokenFile.
  void write_kubeconfig(const std::filesystem::path& path,
                        const std::filesystem::path& token_file = {}) const;

  // Objects (Namespace or Pod). put() fills uid, resourceVersion and creationTimestamp when
  // missing and notifies watchers.
  void put(nlohmann::json object);
  void remove_object(std::string_view kind, std::string_view ns, std::string_view name);
  std::optional<nlohmann::json> get_object(std::string_view kind, std::string_view ns,
                                           std::string_view name) const;

  void add_fault(ApiFault fault);
  void clear_faults();

  std::vector<ApiRequest> requests() const;
  void clear_requests();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::testing
