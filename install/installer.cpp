#include "install/installer.h"

#include <sys/stat.h>

#include "config/constants.h"
#include "config/errors.h"
#include "install/errors.h"
#include "install/files.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kBinaryMode = 0755;
constexpr mode_t kKubeconfigMode = 0600;

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InstallError("cannot create " + dir.string() + ": " + ec.message());
}

std::string op_text(const FileOp& op) {
  return std::string(op.kind == FileOp::Kind::kWrite ? "wrote " : "removed ") + op.name + " (" +
         op.why + ")";
}

}  // namespace

Installer::Installer(InstallerOptions options, std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)), log_(std::move(log)) {
  try {
    entry_ = config::render_plugin_entry(options_.node);
  } catch (const config::ConfigError& e) {
    throw InstallError(std::string("node configuration: ") + e.what());
  }
  const auto& owned = options_.owned_name;
  if (!owned.ends_with(".conflist") || owned.find('/') != std::string::npos ||
      owned.starts_with(".")) {
    throw InstallError("owned conflist name \"" + owned +
                       "\" must be a plain file name ending in .conflist");
  }
  for (const auto* dir : {&options_.cni_bin_dir, &options_.cni_conf_dir}) {
    if (dir->empty()) throw InstallError("CNI directories must be set");
  }
}

fs::path Installer::binary_path() const {
  return options_.cni_bin_dir / std::string(contract::kPluginType);
}

fs::path Installer::kubeconfig_path() const {
  return options_.node.plugin_kubeconfig_path();
}

std::string Installer::wanted_kubeconfig() const {
  auto credentials = read_service_account(options_.service_account_dir);
  if (options_.plugin_token) credentials.token = options_.plugin_token();
  return render_plugin_kubeconfig(credentials);
}

bool Installer::binary_in_place() const {
  const auto installed = identity_of(binary_path());
  const auto source = identity_of(options_.plugin_source);
  if (!installed || !source || (installed->mode & 07777) != kBinaryMode) return false;
  if (binary_verified_ && binary_verified_->first == *installed &&
      binary_verified_->second == *source) {
    return true;
  }
  if (!same_content(binary_path(), options_.plugin_source)) return false;
  binary_verified_.emplace(*installed, *source);
  return true;
}

ReconcileResult Installer::reconcile() {
  std::lock_guard lock(mu_);
  ReconcileResult r;
  // Inputs first: a missing source binary or service account changes nothing on the node.
  std::error_code ec;
  if (options_.plugin_source.empty() || !fs::is_regular_file(options_.plugin_source, ec)) {
    throw InstallError("plugin binary \"" + options_.plugin_source.string() +
                       "\" does not exist or is not a file");
  }
  const auto kubeconfig = wanted_kubeconfig();
  if (!temps_swept_) {
    // A predecessor killed mid-write leaves its temp files; they are ours to remove.
    for (const auto& dir :
         {options_.cni_bin_dir, options_.cni_conf_dir, kubeconfig_path().parent_path()}) {
      if (const auto n = remove_stale_temps(dir); n > 0) {
        log_->info("removed {} stale temp file(s) of ours from {}", n, dir.string());
      }
    }
    temps_swept_ = true;
  }
  make_dir(options_.cni_bin_dir);
  r.binary_written =
      !binary_in_place() && install_file(options_.plugin_source, binary_path(), kBinaryMode);
  if (r.binary_written) log_->info("installed {}", binary_path().string());

  make_dir(kubeconfig_path().parent_path());
  if (read_file(kubeconfig_path()) != kubeconfig) {
    write_file_atomic(kubeconfig_path(), kubeconfig, kKubeconfigMode);
    r.kubeconfig_written = true;
    log_->info("wrote the plugin kubeconfig {}", kubeconfig_path().string());
  } else if (struct stat st{}; ::stat(kubeconfig_path().c_str(), &st) == 0 &&
                               (st.st_mode & 07777) != kKubeconfigMode) {
    // Same bytes, wrong mode (only then: a chmod is an event the watcher would see again).
    if (::chmod(kubeconfig_path().c_str(), kKubeconfigMode) != 0) {
      throw InstallError("cannot chmod " + kubeconfig_path().string());
    }
    r.kubeconfig_written = true;
  }

  const auto plan = plan_install(read_conf_dir(options_.cni_conf_dir), options_.mode,
                                 options_.owned_name, entry_);
  for (const auto& w : plan.warnings)
    log_->warn("CNI config dir {}: {}", options_.cni_conf_dir.string(), w);
  r.primary = plan.primary;
  r.error = plan.error;
  if (!plan.error.empty()) {
    log_->error("CNI config dir {}: {}", options_.cni_conf_dir.string(), plan.error);
  } else if (plan.waiting() && !waiting_) {  // said once per wait, not on every pass
    log_->info("CNI config dir {}: no primary CNI configuration yet; waiting for one",
               options_.cni_conf_dir.string());
  }
  waiting_ = plan.waiting();
  apply_to_dir(options_.cni_conf_dir, plan);
  for (const auto& op : plan.ops) log_->info("CNI config dir: {}", op_text(op));
  r.conf_ops = plan.ops;
  r.installed = plan.installed();
  installed_ = r.installed;
  return r;
}

bool Installer::check_in_place() const {
  std::lock_guard lock(mu_);
  try {
    if (!binary_in_place()) return false;
    if (read_file(kubeconfig_path()) != wanted_kubeconfig()) return false;
    return plan_install(read_conf_dir(options_.cni_conf_dir), options_.mode, options_.owned_name,
                        entry_)
        .in_place();
  } catch (const InstallError&) {
    return false;
  }
}

bool Installer::installed() const {
  std::lock_guard lock(mu_);
  return installed_;
}

void Installer::uninstall() {
  std::lock_guard lock(mu_);
  installed_ = false;
  const auto plan = plan_uninstall(read_conf_dir(options_.cni_conf_dir), options_.owned_name);
  apply_to_dir(options_.cni_conf_dir, plan);
  for (const auto& op : plan.ops) log_->info("CNI config dir: {}", op_text(op));
  if (const auto text = read_file(kubeconfig_path())) {
    if (is_our_kubeconfig(*text)) {
      remove_file(kubeconfig_path());
      log_->info("removed the plugin kubeconfig {}", kubeconfig_path().string());
    } else {
      log_->warn("left {} in place: it was not written by us", kubeconfig_path().string());
    }
  }
  if (remove_file(binary_path())) log_->info("removed {}", binary_path().string());
  for (const auto& dir :
       {options_.cni_bin_dir, options_.cni_conf_dir, kubeconfig_path().parent_path()}) {
    remove_stale_temps(dir);
  }
}

}  // namespace ambient::install
