// Shared by the installer's integration tests: a temp "node" (CNI bin dir, conf dir, run dir,
// service-account dir laid out as kubelet does, with ..data symlink swaps) and directory
// snapshots that compare bytes and modes.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include "tests/support/files.h"

namespace ambient::testing {

namespace fs = std::filesystem;

inline void spit(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// Every entry under a directory: relative path → type, mode and content (or link target).
using Snapshot = std::map<std::string, std::string>;
inline Snapshot snapshot(const fs::path& dir) {
  Snapshot out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    const auto rel = fs::relative(it->path(), dir).string();
    std::ostringstream v;
    v << std::oct << (st.st_mode & 07777) << ' ';
    if (S_ISLNK(st.st_mode)) {
      v << "link " << fs::read_symlink(it->path()).string();
    } else if (S_ISDIR(st.st_mode)) {
      v << "dir";
    } else {
      const auto content = read_file(it->path());
      if (content.size() <= 4096) {
        v << "file " << content;
      } else {  // binaries: size and hash keep failure output readable
        v << "file of " << content.size() << " bytes, hash " << std::hash<std::string>{}(content);
      }
    }
    out[rel] = v.str();
  }
  return out;
}

// Polls `done` until it holds or `limit` passes; returns how long it took (or nullopt).
inline std::optional<std::chrono::milliseconds> wait_for(const std::function<bool()>& done,
                                                         std::chrono::milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    if (done()) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
    }
    if (std::chrono::steady_clock::now() - start > limit) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// A node's directories under one temp root.
class NodeDirs {
 public:
  // Short paths: unix socket paths (the agent's, ztunnel's) must fit in 108 bytes.
  explicit NodeDirs(const std::string& tag) : tag_(tag) {
    static int counter = 0;
    root = fs::temp_directory_path() /
           ("ai-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    fs::remove_all(root);
    bin = root / "opt/cni/bin";
    conf = root / "etc/cni/net.d";
    run = root / "var/run/ambient-cni";
    sa = root / "sa";
    netns = root / "var/run/netns";
    for (const auto& d : {bin, conf, run, sa, netns}) fs::create_directories(d);
    ::chmod(conf.c_str(), 0755);
    write_token("token-1", "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n");
  }
  ~NodeDirs() {
    if (!::testing::Test::HasFailure()) {
      fs::remove_all(root);
    } else {
      std::cerr << "kept " << root << " (" << tag_ << ")\n";
    }
  }

  // Kubelet's AtomicWriter: a new timestamped dir, ..data_tmp → it, renamed over ..data.
  void write_token(const std::string& token, const std::string& ca) {
    const auto gen = "..gen_" + std::to_string(++generation_);
    fs::create_directories(sa / gen);
    spit(sa / gen / "token", token);
    spit(sa / gen / "ca.crt", ca);
    fs::create_symlink(gen, sa / "..data_tmp");
    fs::rename(sa / "..data_tmp", sa / "..data");
    if (!fs::is_symlink(sa / "token")) fs::create_symlink("..data/token", sa / "token");
    if (!fs::is_symlink(sa / "ca.crt")) fs::create_symlink("..data/ca.crt", sa / "ca.crt");
    if (generation_ > 1) fs::remove_all(sa / ("..gen_" + std::to_string(generation_ - 1)));
  }

  // The DaemonSet's environment for `ambient-cni-node` on this node (host paths, in-cluster API
  // at 127.0.0.1:api_port), as its ConfigMap would give it; an `extra` KEY=… replaces KEY.
  std::vector<std::string> daemonset_env(int api_port,
                                         const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> e = {
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "KUBERNETES_SERVICE_HOST=127.0.0.1",
        "KUBERNETES_SERVICE_PORT=" + std::to_string(api_port),
        "AMBIENT_CNI_BIN_DIR=" + bin.string(),
        "AMBIENT_CNI_CONF_DIR=" + conf.string(),
        "AMBIENT_RUN_DIR=" + run.string(),
        "AMBIENT_NETNS_DIR=" + netns.string(),
        "AMBIENT_SERVICE_ACCOUNT_DIR=" + sa.string(),
        "AMBIENT_PLUGIN_BINARY=" AMBIENT_PLUGIN_BIN,
        "AMBIENT_ZTUNNEL_SOCKET=" + (run / "ztunnel.sock").string(),
    };
    for (const auto& x : extra) {
      const auto key = x.substr(0, x.find('=') + 1);
      std::erase_if(e, [&](const std::string& d) { return d.starts_with(key); });
      e.push_back(x);
    }
    return e;
  }

  fs::path root, bin, conf, run, sa, netns;

 private:
  std::string tag_;
  int generation_ = 0;
};

}  // namespace ambient::testing
