// `delete-daemonset`: deletes our DaemonSet with foreground propagation and waits until the API no
// longer has it, i.e. until every agent pod has finished its removal (pods unenrolled, plugin,
// conflist entry and kubeconfig gone) — while its ServiceAccount and RBAC still exist. The Helm
// chart's pre-delete hook runs it in our own image, so `helm uninstall` unenrols every pod first
// and a cluster needs no second image (decision 015).
#include <chrono>
#include <thread>

#include "kube/client.h"
#include "node/commands.h"
#include "node/options.h"

namespace ambient::node {
namespace {

using namespace std::chrono_literals;

struct DeleteDaemonSetCmd {
  std::string namespace_ = "istio-system";
  std::string name = "ambient-cni-node";
  std::string kubeconfig;  // empty: in-cluster
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  int timeout_s = 300;
  std::string log_level = "info";
};

int run_delete(const DeleteDaemonSetCmd& c) {
  auto log = make_logger("delete-daemonset", c.log_level);
  const std::string path = "/apis/apps/v1/namespaces/" + c.namespace_ + "/daemonsets/" + c.name;
  const std::string what = "daemonset " + c.namespace_ + "/" + c.name;
  try {
    kube::Client api(node_kubeconfig(c.kubeconfig, c.service_account_dir),
                     kube::ClientOptions{.deadline = 10s, .user_agent = "ambient-cni-node"});
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(c.timeout_s);
    try {
      // Foreground: the DaemonSet stays (with a deletionTimestamp) until its pods are gone.
      api.remove(
          path,
          {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"propagationPolicy", "Foreground"}});
      log->info("{}: deleting (foreground); waiting for its pods to finish their removal", what);
    } catch (const kube::ApiError& e) {
      if (e.kind() != kube::ApiError::Kind::kNotFound) throw;
      log->info("{}: not found (already deleted)", what);
      return 0;
    }
    for (;;) {
      try {
        api.get(path);
      } catch (const kube::ApiError& e) {
        if (e.kind() != kube::ApiError::Kind::kNotFound) throw;
        log->info("{}: gone", what);
        return 0;
      }
      if (std::chrono::steady_clock::now() >= until) {
        log->error("{}: still there after {} s (its pods have not finished their removal)", what,
                   c.timeout_s);
        return 1;
      }
      std::this_thread::sleep_for(1s);
    }
  } catch (const std::exception& e) {
    log->error("{}: {}", what, e.what());
    return 1;
  }
}

}  // namespace

void add_delete_daemonset_command(CLI::App& app) {
  auto c = std::make_shared<DeleteDaemonSetCmd>();
  auto* cmd = app.add_subcommand(
      "delete-daemonset",
      "Delete the node DaemonSet in the foreground and wait until every agent pod has finished "
      "its removal (the Helm chart's pre-delete hook)");
  cmd->add_option("--namespace,-n", c->namespace_, "the DaemonSet's namespace")
      ->envname("POD_NAMESPACE")
      ->capture_default_str();
  cmd->add_option("--name", c->name, "the DaemonSet")
      ->envname("AMBIENT_DAEMONSET_NAME")
      ->capture_default_str();
  cmd->add_option("--kubeconfig", c->kubeconfig, "API access (default: in-cluster)")
      ->envname("AMBIENT_KUBECONFIG");
  cmd->add_option("--service-account-dir", c->service_account_dir,
                  "in-cluster token and CA (without --kubeconfig)")
      ->envname("AMBIENT_SERVICE_ACCOUNT_DIR")
      ->capture_default_str();
  cmd->add_option("--timeout", c->timeout_s, "seconds to wait for the DaemonSet to go")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  add_log_level_option(cmd, c->log_level);
  cmd->callback([c] { exit_on_failure(run_delete(*c)); });
}

}  // namespace ambient::node
