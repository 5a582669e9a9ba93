#include "tests/runtime/containerd_harness.h"

#include <signal.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/support/process.h"

namespace ambient::runtime_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kContainerd = "/usr/bin/containerd";
constexpr const char* kCtr = "/usr/bin/ctr";

}  // namespace

PrivateContainerd::PrivateContainerd(ContainerdOptions options)
    : options_(std::move(options)), tag_(owned_tag(options_.role)), dir_(owned_dir(tag_)) {}

PrivateContainerd::~PrivateContainerd() {
  stop();
}

json PrivateContainerd::conflist() const {
  json ambient = options_.plugin_entry;
  ambient["type"] = "ambient-cni";
  return {{"cniVersion", "1.0.0"},
          {"name", tag_},
          {"plugins",
           {{{"type", "bridge"},
             {"bridge", options_.bridge},
             {"isGateway", true},
             {"ipMasq", false},
             {"ipam",
              {{"type", "host-local"},
               {"dataDir", (dir_ / "cni" / "ipam").string()},
               {"ranges", {{{{"subnet", options_.subnet}}}}}}}},
            ambient}}};
}

void PrivateContainerd::write_config() const {
  const fs::path cni = dir_ / "cni";
  make_cni_bin_dir(cni / "bin", options_.plugin_binary, calls_log());
  fs::create_directories(cni / "net.d");
  std::ofstream(cni / "net.d" / "10-ambient.conflist") << conflist().dump(2) << '\n';

  const std::string d = dir_.string();
  std::ofstream toml(dir_ / "config.toml");
  toml << "version = 2\n"
       << "root = \"" << d << "/root\"\n"
       << "state = \"" << d << "/state\"\n"
       << "[grpc]\n  address = \"" << d << "/containerd.sock\"\n"
       << "[ttrpc]\n  address = \"" << d << "/containerd.sock.ttrpc\"\n"
       << "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" << d << "/opt\"\n"
       << "[plugins.\"io.containerd.grpc.v1.cri\"]\n"
       << "  sandbox_image = \"" << options_.sandbox_image
       << "\"\n"
       // No CAP_SYS_RESOURCE here: never lower a process's oom_score_adj.
       << "  restrict_oom_score_adj = true\n"
       // Sandbox netns files under our state dir instead of the machine's /var/run/netns.
       << "  netns_mounts_under_state_dir = true\n"
       // Not what these tests are about, and a host with AppArmor would need apparmor_parser.
       << "  disable_apparmor = true\n"
       << "  stream_server_address = \"127.0.0.1\"\n"
       << "  stream_server_port = \"0\"\n"
       << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
       << "    snapshotter = \"overlayfs\"\n"
       << "    default_runtime_name = \"runc\"\n"
       << "    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
       << "      runtime_type = \"io.containerd.runc.v2\"\n"
       << "      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
       << "        SystemdCgroup = false\n"
       << "        Root = \"" << d << "/runc\"\n"
       << "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
       << "    bin_dir = \"" << (cni / "bin").string() << "\"\n"
       << "    conf_dir = \"" << (cni / "net.d").string() << "\"\n"
       << "    max_conf_num = 1\n";
  if (!toml) throw std::runtime_error("cannot write " + (dir_ / "config.toml").string());
}

std::string PrivateContainerd::log_tail(std::size_t bytes) const {
  std::ifstream in(log());
  std::ostringstream s;
  s << in.rdbuf();
  const std::string all = s.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

void PrivateContainerd::start() {
  require_programs({kContainerd, kCtr, "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc",
                    "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
                    "/bin/busybox", options_.plugin_binary});
  release_owned(tag_);  // a reused pid's leftovers
  fs::create_directories(dir_);
  write_config();
  const fs::path image = build_sandbox_image(dir_ / "image-build", options_.sandbox_image);

  process_ = std::make_unique<testing::BackgroundProcess>(
      std::vector<std::string>{kContainerd, "--config", (dir_ / "config.toml").string()},
      log().string());
  const std::string socket = (dir_ / "containerd.sock").string();
  // Connect once the socket exists: a gRPC channel that failed to connect backs off for
  // seconds before it tries again.
  wait_until([&] { return !process_->running() || fs::exists(socket); }, 30s);
  cri_ = std::make_unique<CriClient>(socket, 60s);
  std::string last_error;
  const bool up = wait_until(
      [&] {
        if (!process_->running()) return true;
        try {
          cri_->version(1s);
          return true;
        } catch (const CriError& e) {
          last_error = e.what();
          return false;
        }
      },
      30s);
  if (!up || !process_->running()) {
    throw std::runtime_error("containerd did not serve CRI on " + socket + " (" + last_error +
                             "); its log ends:\n" + log_tail());
  }
  const auto imported = run_command(
      {kCtr, "--address", socket, "--namespace", "k8s.io", "images", "import", image.string()}, {},
      60s);
  if (imported.exit_code != 0) {
    throw std::runtime_error("ctr images import: " + imported.out);
  }
  // The CRI image store learns about the import from an event: wait for it, or the first
  // RunPodSandbox would try to pull the image from the network.
  if (!wait_until([&] { return cri_->image_present(options_.sandbox_image); }, 20s)) {
    throw std::runtime_error("CRI does not see " + options_.sandbox_image + " after the import");
  }
}

void PrivateContainerd::stop() {
  if (process_ && process_->running() && cri_) {
    try {
      for (const auto& id : cri_->list_pod_sandboxes()) {
        try {
          cri_->stop_pod_sandbox(id);
          cri_->remove_pod_sandbox(id);
        } catch (const CriError&) {
        }
      }
    } catch (const CriError&) {
    }
  }
  cri_.reset();
  if (process_) process_->stop(SIGTERM, 10s);
  process_.reset();
  release_owned(tag_);
}

SandboxSpec PrivateContainerd::sandbox(const std::string& ns, const std::string& name,
                                       const std::string& uid) const {
  SandboxSpec s;
  s.ns = ns;
  s.name = name;
  s.uid = uid;
  s.cgroup_parent = "/" + tag_ + "/pod" + uid;
  // What the kubelet labels every sandbox with.
  s.labels = {{"io.kubernetes.pod.name", name},
              {"io.kubernetes.pod.namespace", ns},
              {"io.kubernetes.pod.uid", uid}};
  return s;
}

}  // namespace ambient::runtime_test
