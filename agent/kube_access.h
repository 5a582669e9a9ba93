// The agent's use of the Kubernetes API: a small pool of clients (each kube::Client is
// single-threaded and keeps its connection warm) and the pod status annotation.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/enrolment.h"
#include "kube/client.h"

namespace ambient::agent {

class ApiPool {
 public:
  ApiPool(kube::Kubeconfig config, kube::ClientOptions options);

  // Runs fn with a client nobody else is using; clients are created on demand and reused, at most
  // kMaxClients at a time (a caller waits for one to be free). Never call with() inside fn.
  template <class F>
  auto with(F&& fn) {
    auto client = acquire();
    struct Return {
      ApiPool& pool;
      std::unique_ptr<kube::Client>& c;
      ~Return() { pool.release(std::move(c)); }
    } give_back{*this, client};
    return fn(*client);
  }

 private:
  std::unique_ptr<kube::Client> acquire();
  void release(std::unique_ptr<kube::Client> c);

  // A burst of 110 ADDs (a full node) needs 220 reads and 110 patches: over 8 warm connections
  // they take ~100 ms; over a new connection each, 300 TLS handshakes (1-3 ms of CPU apiece)
  // made the burst's p99 1.1 s.
  static constexpr std::size_t kMaxClients = 8;

  kube::Kubeconfig config_;
  kube::ClientOptions options_;
  std::mutex mu_;
  std::condition_variable free_;
  std::size_t in_use_ = 0;
  std::vector<std::unique_ptr<kube::Client>> idle_;
};

// ambient.istio.io/redirection on the pods/status subresource (JSON merge patch): istiod sends
// HBONE to a pod only once it reads "enabled".
class StatusAnnotator final : public StatusStep {
 public:
  explicit StatusAnnotator(ApiPool& api) : api_(api) {}
  // The patch carries metadata.uid: the API refuses it (422, uid is immutable) for a pod that
  // was replaced under the same name, so the annotation never lands on another pod.
  void set(const std::string& ns, const std::string& name, const std::string& uid,
           std::string_view value) override;  // ApiError
  // Removes the annotation; a pod that no longer exists, or was replaced, is fine. Throws
  // ApiError otherwise.
  void clear(const std::string& ns, const std::string& name, const std::string& uid) override;

 private:
  ApiPool& api_;
};

}  // namespace ambient::agent
