#include "tests/runtime/runtime_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "netns/netns.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

extern char** environ;

namespace ambient::runtime_test {

using testing::read_file;
namespace {

using namespace std::chrono_literals;

constexpr const char* kPrefix = "ambrt-";
constexpr const char* kCniCache = "/var/lib/cni/results";
constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

// "ambrt-<pid>-<role>[-anything]" → (pid, "ambrt-<pid>-<role>").
std::optional<std::pair<pid_t, std::string>> parse_tag(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  std::size_t i = prefix.size();
  const std::size_t pid_begin = i;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) ++i;
  if (i == pid_begin || i >= name.size() || name[i] != '-') return std::nullopt;
  const pid_t pid = static_cast<pid_t>(std::stol(name.substr(pid_begin, i - pid_begin)));
  ++i;
  const std::size_t role_begin = i;
  while (i < name.size() && (std::islower(static_cast<unsigned char>(name[i])) ||
                             std::isdigit(static_cast<unsigned char>(name[i])))) {
    ++i;
  }
  if (i == role_begin || (i < name.size() && name[i] != '-')) return std::nullopt;
  return std::pair{pid, name.substr(0, i)};
}

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

bool is_zombie_or_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z';
}

std::vector<fs::path> cgroup_roots(const std::string& tag) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (fs::is_directory(fs::path(kCgroupRoot) / tag, ec)) out.push_back(fs::path(kCgroupRoot) / tag);
  for (const auto& h : fs::directory_iterator(kCgroupRoot, ec)) {
    const auto p = h.path() / tag;
    if (fs::is_directory(p, ec)) out.push_back(p);
  }
  return out;
}

std::set<pid_t> processes_of(const fs::path& dir, const std::string& tag) {
  std::set<pid_t> out;
  const std::string needle = dir.string() + "/";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;
    std::string cmdline = read_file(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) out.insert(pid);
  }
  for (const auto& root : cgroup_roots(tag)) {
    for (auto it = fs::recursive_directory_iterator(root, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().filename() != "cgroup.procs") continue;
      std::istringstream procs(read_file(it->path()));
      pid_t pid;
      while (procs >> pid) {
        if (pid != ::getpid()) out.insert(pid);
      }
    }
  }
  return out;
}

void kill_processes(const fs::path& dir, const std::string& tag) {
  for (int round = 0; round < 3; ++round) {
    auto victims = processes_of(dir, tag);
    std::erase_if(victims, is_zombie_or_gone);
    if (victims.empty()) return;
    for (const pid_t p : victims) ::kill(p, SIGKILL);
    wait_until([&] { return std::all_of(victims.begin(), victims.end(), is_zombie_or_gone); }, 5s);
  }
}

std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

void unmount_under(const fs::path& dir) {
  const std::string d = dir.string();
  for (int round = 0; round < 5; ++round) {
    std::vector<std::string> mounts;
    std::istringstream info(read_file("/proc/self/mountinfo"));
    std::string line;
    while (std::getline(info, line)) {
      std::istringstream fields(line);
      std::string f;
      for (int i = 0; i < 5 && fields >> f; ++i) {
      }
      const std::string mp = unescape_mountinfo(f);
      if (mp == d || mp.rfind(d + "/", 0) == 0) mounts.push_back(mp);
    }
    if (mounts.empty()) return;
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
  }
}

void remove_cgroups(const std::string& tag) {
  std::error_code ec;
  for (const auto& root : cgroup_roots(tag)) {
    std::vector<fs::path> dirs{root};
    for (auto it = fs::recursive_directory_iterator(root, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) dirs.push_back(it->path());
    }
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
      return a.string().size() > b.string().size();
    });
    for (const auto& d : dirs) ::rmdir(d.c_str());
  }
}

std::string node_tag_of(const std::string& tag) {
  const auto parsed = parse_tag(tag);
  return parsed ? std::string(kPrefix) + std::to_string(parsed->first) + "-node" : "";
}

std::vector<std::string> current_env_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto key = kv.substr(0, kv.find('=') + 1);
    const bool overridden = std::any_of(extra.begin(), extra.end(),
                                        [&](const std::string& x) { return x.rfind(key, 0) == 0; });
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::string hex_digest(const fs::path& file) {
  const auto c = run_command({"/usr/bin/sha256sum", file.string()});
  if (c.exit_code != 0 || c.out.size() < 64) throw std::runtime_error("sha256sum: " + c.out);
  return c.out.substr(0, 64);
}

std::string oci_architecture() {
  utsname u{};
  ::uname(&u);
  const std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

}  // namespace

std::string owned_tag(const std::string& role) {
  return kPrefix + std::to_string(::getpid()) + "-" + role;
}

fs::path owned_dir(const std::string& tag) {
  return fs::temp_directory_path() / tag;
}

void release_owned(const std::string& tag) {
  const fs::path dir = owned_dir(tag);
  std::error_code ec;
  if (fs::exists(dir / "containers.conf", ec) && fs::exists(dir / "storage.conf", ec)) {
    // A podman harness: let podman tear its containers down (network included) first, from
    // the node netns when it still exists.
    std::vector<std::string> argv;
    const fs::path node = fs::path("/var/run/netns") / node_tag_of(tag);
    if (fs::exists(node, ec)) argv = {"/usr/bin/nsenter", "--net=" + node.string()};
    for (const char* a : {"/usr/bin/podman", "rm", "--all", "--force", "--time", "0"}) {
      argv.emplace_back(a);
    }
    run_command(argv,
                {"CONTAINERS_CONF=" + (dir / "containers.conf").string(),
                 "CONTAINERS_STORAGE_CONF=" + (dir / "storage.conf").string()},
                60s);
  }
  // A containerd's sandboxes, for what it names by sandbox id outside its dirs: the loopback
  // attachment cached as cni-loopback-<id>-lo, and each shim's socket
  // /run/containerd/s/<sha256 of "<grpc address>/<namespace>/<id>"> (left behind by a killed shim).
  std::set<std::string> sandboxes;
  for (const auto& sub : {fs::path("root") / "io.containerd.grpc.v1.cri" / "sandboxes",
                          fs::path("state") / "io.containerd.runtime.v2.task" / "k8s.io"}) {
    for (const auto& e : fs::directory_iterator(dir / sub, ec)) {
      sandboxes.insert(e.path().filename().string());
    }
  }
  kill_processes(dir, tag);
  for (const auto& id : sandboxes) {
    const auto hash = testing::run({"/usr/bin/sha256sum"}, {},
                                   (dir / "containerd.sock").string() + "/k8s.io/" + id, 10s);
    if (hash.exit_code == 0 && hash.out.size() >= 64) {
      fs::remove(fs::path("/run/containerd/s") / hash.out.substr(0, 64), ec);
    }
  }
  unmount_under(dir);
  fs::remove_all(dir, ec);
  remove_cgroups(tag);
  for (const auto& e : fs::directory_iterator(kCniCache, ec)) {
    const std::string name = e.path().filename().string();
    const bool loopback = std::any_of(sandboxes.begin(), sandboxes.end(), [&](const auto& id) {
      return name == "cni-loopback-" + id + "-lo";
    });
    if (loopback || name.rfind(tag + "-", 0) == 0) fs::remove(e.path(), ec);
  }
  if (fs::exists(fs::path("/var/run/netns") / tag, ec)) {
    run_command({"/usr/bin/ip", "netns", "del", tag}, {}, 10s);
  }
}

void sweep_leftovers() {
  std::set<std::string> dead;
  const auto consider = [&](const std::string& name) {
    const auto parsed = parse_tag(name);
    if (parsed && !process_alive(parsed->first)) dead.insert(parsed->second);
  };
  std::error_code ec;
  for (const fs::path& dir : {fs::temp_directory_path(), fs::path("/var/run/netns"),
                              fs::path(kCniCache), fs::path(kCgroupRoot)}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) consider(e.path().filename().string());
  }
  for (const auto& h : fs::directory_iterator(kCgroupRoot, ec)) {
    for (const auto& e : fs::directory_iterator(h.path(), ec)) {
      consider(e.path().filename().string());
    }
  }
  // Runtimes first (podman's teardown wants the node netns), nodes last.
  for (const bool nodes : {false, true}) {
    for (const auto& tag : dead) {
      const bool is_node = tag.size() > 5 && tag.compare(tag.size() - 5, 5, "-node") == 0;
      if (is_node != nodes) continue;
      std::fprintf(stderr, "runtime tests: removing leftovers of a dead run: %s\n", tag.c_str());
      release_owned(tag);
    }
  }
}

std::string kernel_gap() {
  std::error_code ec;
  if (!fs::exists("/proc/self/ns/net", ec)) return "the kernel has no network namespaces";
  {
    // Mounting one loads the module if it is one; /proc/filesystems only lists loaded ones.
    const fs::path d = owned_dir(owned_tag("probe"));
    for (const char* sub : {"lower", "upper", "work", "merged"})
      fs::create_directories(d / sub, ec);
    const std::string opts = "lowerdir=" + (d / "lower").string() +
                             ",upperdir=" + (d / "upper").string() +
                             ",workdir=" + (d / "work").string();
    const int rc = ::mount("overlay", (d / "merged").c_str(), "overlay", 0, opts.c_str());
    const int err = errno;
    if (rc == 0) ::umount2((d / "merged").c_str(), MNT_DETACH);
    fs::remove_all(d, ec);
    if (rc != 0 && err == ENODEV) {
      return "the kernel has no overlay filesystem (containerd's and podman's snapshotters need "
             "it)";
    }
  }
  if (!fs::exists(fs::path(kCgroupRoot) / "memory", ec) &&
      !fs::exists(fs::path(kCgroupRoot) / "cgroup.controllers", ec)) {
    return "no cgroup hierarchy is mounted at /sys/fs/cgroup";
  }
  const std::string probe = owned_tag("probe");
  const auto ip = [](const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/usr/bin/ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, {}, 10s);
  };
  if (const auto c = ip({"netns", "add", probe}); c.exit_code != 0) {
    return "cannot create a network namespace: " + c.out;
  }
  std::string gap;
  if (const auto c = ip({"-n", probe, "link", "add", "ambrtprobe0", "type", "bridge"});
      c.exit_code != 0) {
    gap = "the kernel cannot create bridge links: " + c.out;
  } else if (const auto v = ip({"-n", probe, "link", "add", "ambrtprobe1", "type", "veth", "peer",
                                "name", "ambrtprobe2"});
             v.exit_code != 0) {
    gap = "the kernel cannot create veth links: " + v.out;
  } else if (const auto n = run_command({"/usr/bin/ip", "netns", "exec", probe, "/usr/sbin/nft",
                                         "add", "table", "inet", "ambrtprobe"},
                                        {}, 10s);
             n.exit_code != 0) {
    gap = "the kernel has no nf_tables: " + n.out;
  }
  ip({"netns", "del", probe});
  return gap;
}

void require_programs(const std::vector<std::string>& paths) {
  std::string missing;
  for (const auto& p : paths) {
    if (::access(p.c_str(), X_OK) != 0) missing += " " + p;
  }
  if (!missing.empty()) {
    throw std::runtime_error("missing programs:" + missing +
                             " — install the packages listed in scripts/deps.sh");
  }
}

std::string& skip_reason() {
  static std::string reason;
  return reason;
}

NodeNetns::NodeNetns(std::string tag) : tag_(std::move(tag)) {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{"/usr/bin/ip", "netns", "add", tag_},
        std::vector<std::string>{"/usr/bin/ip", "-n", tag_, "link", "set", "lo", "up"}}) {
    const auto c = run_command(argv, {}, 10s);
    if (c.exit_code != 0) {
      run_command({"/usr/bin/ip", "netns", "del", tag_}, {}, 10s);
      throw std::runtime_error("node netns " + tag_ + ": " + c.out);
    }
  }
}

NodeNetns::~NodeNetns() {
  if (original_ >= 0) {
    ::setns(original_, CLONE_NEWNET);
    ::close(original_);
  }
  run_command({"/usr/bin/ip", "netns", "del", tag_}, {}, 10s);
}

void NodeNetns::enter() {
  original_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  const int fd = ::open(path().c_str(), O_RDONLY | O_CLOEXEC);
  if (original_ < 0 || fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
    const std::string err = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot enter " + path() + ": " + err);
  }
  ::close(fd);
}

void build_rootfs_tar(const fs::path& work_dir, const fs::path& tar) {
  const fs::path root = work_dir / "rootfs";
  fs::create_directories(root / "bin");
  fs::copy_file("/bin/busybox", root / "bin" / "busybox", fs::copy_options::overwrite_existing);
  for (const char* applet : {"sleep", "sh"}) {
    std::error_code ec;
    fs::remove(root / "bin" / applet, ec);
    fs::create_symlink("busybox", root / "bin" / applet);
  }
  const auto c =
      run_command({"/usr/bin/tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                   "--mtime=@0", "-C", root.string(), "-cf", tar.string(), "."});
  if (c.exit_code != 0) throw std::runtime_error("tar rootfs: " + c.out);
}

fs::path build_sandbox_image(const fs::path& work_dir, const std::string& ref) {
  const fs::path image = work_dir / "image";
  fs::create_directories(image);
  const fs::path layer_tmp = work_dir / "layer.tar";
  build_rootfs_tar(work_dir, layer_tmp);
  const std::string layer = hex_digest(layer_tmp);
  fs::create_directories(image / layer);
  fs::rename(layer_tmp, image / layer / "layer.tar");

  const nlohmann::json config = {
      {"architecture", oci_architecture()},
      {"os", "linux"},
      {"config", {{"Entrypoint", {"/bin/sleep"}}, {"Cmd", {"2147483647"}}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + layer}}}}};
  const fs::path config_tmp = image / "config.json";
  write_file(config_tmp, config.dump());
  const std::string config_name = hex_digest(config_tmp) + ".json";
  fs::rename(config_tmp, image / config_name);
  const nlohmann::json manifest = nlohmann::json::array(
      {{{"Config", config_name}, {"RepoTags", {ref}}, {"Layers", {layer + "/layer.tar"}}}});
  write_file(image / "manifest.json", manifest.dump());

  const fs::path tar = work_dir / "sandbox-image.tar";
  const auto c = run_command({"/usr/bin/tar", "-C", image.string(), "-cf", tar.string(),
                              "manifest.json", config_name, layer + "/layer.tar"});
  if (c.exit_code != 0) throw std::runtime_error("tar image: " + c.out);
  return tar;
}

void make_cni_bin_dir(const fs::path& dir, const std::string& plugin_binary,
                      const fs::path& calls_log) {
  fs::create_directories(dir);
  for (const char* p : {"bridge", "host-local", "loopback"}) {
    std::error_code ec;
    fs::remove(dir / p, ec);
    fs::create_symlink(fs::path("/usr/lib/cni") / p, dir / p);
  }
  const fs::path script = dir / "ambient-cni";
  write_file(
      script,
      "#!/bin/sh\n"
      "# ambient-cni as the runtime sees it: the built plugin, run unchanged (same\n"
      "# environment, stdin, stdout and exit code); each call is appended to the call log\n"
      "# as verb, exit code, container id, netns, CNI_ARGS and stdout, tab-separated.\n"
      "input=$(cat)\n"
      "out=$(printf '%s' \"$input\" | '" +
          plugin_binary +
          "')\n"
          "rc=$?\n"
          "printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$CNI_COMMAND\" \"$rc\" \"$CNI_CONTAINERID\" "
          "\"$CNI_NETNS\" \"$CNI_ARGS\" \"$(printf '%s' \"$out\" | tr '\\t\\n' '  ')\" >> '" +
          calls_log.string() +
          "'\n"
          "[ -n \"$out\" ] && printf '%s\\n' \"$out\"\n"
          "exit $rc\n");
  fs::permissions(script, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
}

std::vector<CniCall> read_cni_calls(const fs::path& calls_log) {
  std::vector<CniCall> calls;
  std::istringstream in(read_file(calls_log));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::size_t start = 0;
    for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1) {
      f.push_back(line.substr(start, tab - start));
    }
    f.push_back(line.substr(start));
    if (f.size() != 6) continue;
    CniCall c;
    c.verb = f[0];
    c.rc = std::atoi(f[1].c_str());
    c.container_id = f[2];
    c.netns = f[3];
    c.args = f[4];
    c.out = f[5];
    calls.push_back(std::move(c));
  }
  return calls;
}

std::vector<CniCall> cni_calls_for(const fs::path& calls_log, const std::string& container_id,
                                   const std::string& verb) {
  auto calls = read_cni_calls(calls_log);
  std::erase_if(calls, [&](const CniCall& c) {
    return c.container_id != container_id || (!verb.empty() && c.verb != verb);
  });
  return calls;
}

std::vector<std::string> nft_tables(const std::string& netns_path) {
  const auto c = run_command(
      {"/usr/bin/nsenter", "--net=" + netns_path, "/usr/sbin/nft", "list", "tables"}, {}, 10s);
  if (c.exit_code != 0) throw std::runtime_error("nft list tables in " + netns_path + ": " + c.out);
  std::vector<std::string> tables;
  std::istringstream in(c.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("table ", 0) == 0) tables.push_back(line.substr(6));
  }
  return tables;
}

bool has_ambient_tables(const std::string& netns_path) {
  const auto t = nft_tables(netns_path);
  return std::find(t.begin(), t.end(), "inet istio-ambient-nat") != t.end();
}

std::string random_uid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  const auto hex = [](std::uint64_t v, int digits) {
    std::string s;
    for (int i = 0; i < digits; ++i, v >>= 4) s.insert(s.begin(), "0123456789abcdef"[v & 0xf]);
    return s;
  };
  return hex(rng(), 8) + "-" + hex(rng(), 4) + "-4" + hex(rng(), 3) + "-a" + hex(rng(), 3) + "-" +
         hex(rng(), 12);
}

Command run_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                    std::chrono::milliseconds timeout) {
  const auto x = testing::run(argv, current_env_with(extra_env), "", timeout);
  Command c;
  c.exit_code = x.timed_out ? -1 : x.exit_code;
  c.out = x.out + x.err;
  if (x.timed_out) c.out += "\n(timed out)";
  return c;
}

}  // namespace ambient::runtime_test
