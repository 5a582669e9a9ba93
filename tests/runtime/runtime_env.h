// What the real-runtime tests share: the private "node" network namespace the test process runs
// in, the naming and cleanup of everything the harnesses create, the checks that decide between
// running, skipping (kernel) and failing (packages), the busybox images, the CNI bin dir with its
// call recorder, and traffic helpers that work on a netns path.
//
// Naming: every resource a harness creates carries a tag "ambrt-<pid>-<role>" (role: [a-z0-9]+):
// the directory <tmp>/<tag>, the cgroup /<tag> in every hierarchy, the CNI network <tag> (and so
// its /var/lib/cni/results/<tag>-* cache entries) and, for the node, the netns <tag>. Nothing
// else on the machine is touched, so a sweep can remove whatever a dead process left behind.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/testbed.h"
#include "tests/support/wait.h"

namespace ambient::runtime_test {

namespace fs = std::filesystem;

std::string owned_tag(const std::string& role);  // "ambrt-<our pid>-<role>"
fs::path owned_dir(const std::string& tag);      // <tmp>/<tag>

// Removes everything named by `tag`: runs `podman rm -af` for a podman harness directory, kills
// the processes whose command line names its directory and those in its cgroups, unmounts
// everything under the directory, deletes it, removes its cgroups, its CNI result cache entries
// and the netns of that name. Best effort; never throws.
void release_owned(const std::string& tag);
// release_owned() for every tag whose creating process is gone (crashed earlier runs).
void sweep_leftovers();

// Why these tests cannot run on this kernel ("" when they can): network namespaces, bridge and
// veth links, nf_tables, overlayfs, cgroups. Probed in a scratch netns.
std::string kernel_gap();
// Fails (throws std::runtime_error naming scripts/deps.sh) when a program is missing.
void require_programs(const std::vector<std::string>& paths);

// Set by the test environment (runtime_main.cpp): non-empty when every test must skip.
std::string& skip_reason();

// The test process's own network namespace for the whole run: containerd, podman, the CNI
// plugins they exec (bridge creates its bridge and host-side veths here), the API stand-in,
// the agent and kubectl all live in it, so the machine's own netns is never changed.
class NodeNetns {
 public:
  explicit NodeNetns(std::string tag);  // creates it (lo up) without entering it
  ~NodeNetns();                         // leaves it (if entered) and deletes it
  NodeNetns(const NodeNetns&) = delete;
  NodeNetns& operator=(const NodeNetns&) = delete;
  // Moves the calling thread in; call from the main thread before any other thread exists, so
  // that every later thread and child process is in the node too.
  void enter();
  std::string path() const { return "/var/run/netns/" + tag_; }

 private:
  std::string tag_;
  int original_ = -1;
};

// A rootfs tarball: busybox-static as /bin/busybox with /bin/sleep and /bin/sh links.
void build_rootfs_tar(const fs::path& work_dir, const fs::path& tar);
// A docker-archive (docker save format) of that rootfs whose entrypoint sleeps, tagged `ref`,
// made with tar and hand-written manifest.json / config JSON. Returns the tarball's path.
fs::path build_sandbox_image(const fs::path& work_dir, const std::string& ref);

// A CNI bin dir: links to Debian's bridge, host-local and loopback, and `ambient-cni`, a small
// sh recorder that runs the built plugin unchanged (same env, stdin, stdout, exit code) and
// appends one line per call to `calls_log`.
void make_cni_bin_dir(const fs::path& dir, const std::string& plugin_binary,
                      const fs::path& calls_log);

struct CniCall {
  std::string verb;
  int rc = -1;
  std::string container_id;
  std::string netns;
  std::string args;  // CNI_ARGS as received
  std::string out;   // what the plugin printed (result or error object)
};
std::vector<CniCall> read_cni_calls(const fs::path& calls_log);
// The calls for one container, in order; verb empty = all verbs.
std::vector<CniCall> cni_calls_for(const fs::path& calls_log, const std::string& container_id,
                                   const std::string& verb = "");

// nft tables in a netns ("inet istio-ambient-nat", ...).
std::vector<std::string> nft_tables(const std::string& netns_path);
bool has_ambient_tables(const std::string& netns_path);

// Traffic between sandboxes: tests/support/testbed.h (tcp_exchange, TcpServer) with the
// sandboxes' netns paths.

// A fresh pod UID (RFC 4122 version 4 form, as the API server assigns them).
std::string random_uid();

// Polls `condition` every 50 ms until it holds or `timeout` passes; returns its last value.
using testing::wait_until;

// Runs a command (no shell), returns exit code and combined output; bounded by `timeout`.
struct Command {
  int exit_code = -1;
  std::string out;
};
Command run_command(const std::vector<std::string>& argv,
                    const std::vector<std::string>& extra_env = {},
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace ambient::runtime_test
