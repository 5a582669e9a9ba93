#include "tests/runtime/podman_harness.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ambient::runtime_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPodman = "/usr/bin/podman";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

PrivatePodman::PrivatePodman(PodmanOptions options)
    : options_(std::move(options)), tag_(owned_tag(options_.role)), dir_(owned_dir(tag_)) {}

PrivatePodman::~PrivatePodman() {
  stop();
}

json PrivatePodman::conflist() const {
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

std::string PrivatePodman::cni_args(const std::string& ns, const std::string& uid) {
  return "K8S_POD_NAMESPACE=" + ns + ";K8S_POD_UID=" + uid;
}

void PrivatePodman::start() {
  require_programs({kPodman, "/usr/bin/conmon", "/usr/sbin/runc", "/usr/lib/cni/bridge",
                    "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/bin/busybox",
                    options_.plugin_binary});
  release_owned(tag_);
  fs::create_directories(dir_);
  started_ = true;
  const fs::path cni = dir_ / "cni";
  make_cni_bin_dir(cni / "bin", options_.plugin_binary, calls_log());
  fs::create_directories(cni / "net.d");
  std::ofstream(cni / "net.d" / (tag_ + ".conflist")) << conflist().dump(2) << '\n';

  const std::string d = dir_.string();
  std::ofstream containers(dir_ / "containers.conf");
  containers << "[containers]\n"
             // As for containerd: no AppArmor profile to load on hosts that have AppArmor.
             << "apparmor_profile = \"unconfined\"\n"
             << "default_ulimits = [\"nofile=10000:10000\", \"nproc=10000:10000\"]\n"
             << "[network]\n"
             << "network_backend = \"cni\"\n"
             << "cni_plugin_dirs = [\"" << (cni / "bin").string() << "\"]\n"
             << "network_config_dir = \"" << (cni / "net.d").string() << "\"\n"
             << "[engine]\n"
             // crun refuses this host's hybrid cgroups.
             << "runtime = \"runc\"\n"
             << "cgroup_manager = \"cgroupfs\"\n"
             << "events_logger = \"file\"\n"
             << "events_logfile_path = \"" << d << "/events.log\"\n"
             << "tmp_dir = \"" << d
             << "/tmp\"\n"
             // File locks under tmp_dir rather than the machine-wide /dev/shm/libpod_lock.
             << "lock_type = \"file\"\n";
  std::ofstream storage(dir_ / "storage.conf");
  storage << "[storage]\n"
          << "driver = \"overlay\"\n"
          << "graphroot = \"" << d << "/storage\"\n"
          << "runroot = \"" << d << "/run\"\n";
  containers.close();
  storage.close();
  if (!containers || !storage) throw std::runtime_error("cannot write podman configuration");

  build_rootfs_tar(dir_ / "rootfs-build", dir_ / "rootfs.tar");  // leaves rootfs-build/rootfs
  const auto info = podman({"info", "--format", "{{.Host.NetworkBackend}}"});
  if (info.exit_code != 0 || trim(info.out) != "cni") {
    throw std::runtime_error("podman info (want the cni network backend): " + info.out);
  }
}

void PrivatePodman::stop() {
  if (!started_) return;
  started_ = false;
  release_owned(tag_);  // podman rm --all --force first (network teardown included)
}

Command PrivatePodman::podman(const std::vector<std::string>& args,
                              const std::vector<std::string>& env) const {
  std::vector<std::string> argv{kPodman};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> e{"CONTAINERS_CONF=" + (dir_ / "containers.conf").string(),
                             "CONTAINERS_STORAGE_CONF=" + (dir_ / "storage.conf").string()};
  e.insert(e.end(), env.begin(), env.end());
  return run_command(argv, e, 60s);
}

std::string PrivatePodman::run(const std::string& ns, const std::string& name,
                               const std::string& uid) {
  const auto c =
      podman({"run", "--detach", "--name", name, "--network", tag_, "--cgroup-parent", "/" + tag_,
              "--rootfs", (dir_ / "rootfs-build" / "rootfs").string(), "/bin/sleep", "3600"},
             {"CNI_ARGS=" + cni_args(ns, uid)});
  if (c.exit_code != 0) throw std::runtime_error("podman run " + name + ": " + c.out);
  // stdout is the container id; stderr (after it) may carry warnings.
  std::istringstream lines(c.out);
  std::string line;
  while (std::getline(lines, line)) {
    line = trim(line);
    if (line.size() == 64 && line.find_first_not_of("0123456789abcdef") == std::string::npos) {
      return line;
    }
  }
  throw std::runtime_error("podman run " + name + " printed no container id: " + c.out);
}

std::string PrivatePodman::inspect(const std::string& name, const std::string& format) const {
  const auto c = podman({"inspect", "--format", format, name});
  if (c.exit_code != 0) throw std::runtime_error("podman inspect " + name + ": " + c.out);
  return trim(c.out);
}

std::string PrivatePodman::netns(const std::string& name) const {
  return inspect(name, "{{.NetworkSettings.SandboxKey}}");
}

std::string PrivatePodman::ip(const std::string& name) const {
  return inspect(name, "{{(index .NetworkSettings.Networks \"" + tag_ + "\").IPAddress}}");
}

}  // namespace ambient::runtime_test
