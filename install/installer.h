// Puts the plugin in place on a node and takes it away again: the binary in the CNI bin dir, our
// entry in the CNI configuration (chained into the primary, or an owned copy), the plugin's
// kubeconfig in the run dir. Every pass is idempotent and writes only what differs, so the
// watcher can call reconcile() on every event without feeding its own events back.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/logger.h>
#include <nlohmann/json.hpp>

#include "config/node_config.h"
#include "install/conflist.h"
#include "install/files.h"
#include "install/plugin_kubeconfig.h"
#include "install/plugin_token.h"

namespace ambient::install {

struct InstallerOptions {
  std::filesystem::path cni_bin_dir = "/opt/cni/bin";
  std::filesystem::path cni_conf_dir = "/etc/cni/net.d";
  std::filesystem::path plugin_source;  // the ambient-cni binary to install
  std::filesystem::path service_account_dir = kDefaultServiceAccountDir;  // server, CA (and token)
  // The plugin's token (a TokenRequester of the plugin's own service account); empty: the node
  // component's own token from service_account_dir, with the node's RBAC (warned about).
  PluginTokenSource plugin_token;
  Mode mode = Mode::kChained;
  std::string owned_name{kDefaultOwnedName};
  config::NodeConfig node;  // renders our conflist entry; run_dir and kubeconfig path
};

struct ReconcileResult {
  bool binary_written = false;
  bool kubeconfig_written = false;
  std::vector<FileOp> conf_ops;        // what was done to the conf dir
  std::optional<std::string> primary;  // the primary CNI's file
  std::string error;                   // why the conflist could not be written (plan error)
  bool installed = false;              // binary, kubeconfig and conflist entry all in place
};

class Installer {
 public:
  // Checks the options (the entry renders, the owned name is a plain .conflist name). Throws
  // InstallError naming what is wrong; nothing is written. The source binary is checked by
  // reconcile() (uninstall does not need it).
  Installer(InstallerOptions options, std::shared_ptr<spdlog::logger> log);

  // One pass: binary, kubeconfig, conflist (in that order: the runtime must never find our entry
  // before the binary and credentials it needs). Waits for nothing: with no primary CNI config
  // yet, `installed` is false and the watcher calls again when the directory changes. Throws
  // InstallError when the source binary or the service account cannot be read (before anything
  // is written) or when a write fails. Thread-safe.
  ReconcileResult reconcile();

  // Removes what is ours: our conflist entries (wraps undone) or the owned copy, then the
  // kubeconfig (if we wrote it), then the binary. Nothing else is touched. Thread-safe.
  void uninstall();

  // Whether the last reconcile() left everything in place.
  bool installed() const;
  // Whether everything is in place right now (reads the files; writes nothing).
  bool check_in_place() const;

  const InstallerOptions& options() const { return options_; }
  const nlohmann::ordered_json& entry() const { return entry_; }
  std::filesystem::path binary_path() const;
  std::filesystem::path kubeconfig_path() const;

 private:
  bool binary_in_place() const;
  std::string wanted_kubeconfig() const;

  InstallerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  nlohmann::ordered_json entry_;
  mutable std::mutex mu_;
  bool installed_ = false;
  // The installed binary and its source as they were when last found byte-identical: while both
  // stat the same, the (tens of MiB) comparison is not repeated on every pass.
  mutable std::optional<std::pair<FileIdentity, FileIdentity>> binary_verified_;
  bool temps_swept_ = false;
  bool waiting_ = false;
};

}  // namespace ambient::install
