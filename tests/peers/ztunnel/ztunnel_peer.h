// Istio's real ztunnel (built by scripts/peers.sh ztunnel) as a test peer: started the way it runs
// on a node, without Kubernetes or istiod (FAKE_CA, XDS off, LOCAL_XDS_PATH), inside a network
// namespace of the test's (its admin, stats and readiness ports then bind there, so concurrent
// tests never collide). Shared mode takes pods from our agent over ZDS (INPOD_UDS); dedicated
// mode is a single workload's own HBONE proxy (a sidecar stand-in).
//
// What it reports is read the way an operator reads it: /healthz/ready (15021), /metrics (15020),
// /config_dump (admin, 127.0.0.1:15000), and its JSON log (LOG_FORMAT=json), with the access log
// at debug so opened and completed connections both show.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/peers/ztunnel/local_config.h"
#include "tests/support/process.h"

namespace ambient::peers {

// The ztunnel binary: $AMBIENT_ZTUNNEL_BIN, else the peers cache path CMake found at configure
// time. Throws std::runtime_error naming `scripts/peers.sh ztunnel` when neither exists.
std::string ztunnel_binary();

// A GET over HTTP/1.0 from a socket opened inside `netns_path`; status 0 when nothing answered.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply http_get_in(const std::string& netns_path, const std::string& ip, int port,
                      const std::string& path,
                      std::chrono::milliseconds timeout = std::chrono::seconds(3));

// One line of ztunnel's JSON log, flattened: "level", "scope", "message" plus every field
// ("src.addr", "dst.identity", "error", …), values as strings without quotes.
using LogLine = std::map<std::string, std::string>;

class ZtunnelPeer {
 public:
  struct Options {
    // Where ztunnel itself runs (the node's netns, or a pod's); "" = the caller's own (a test
    // harness that runs inside a node's namespaces, scripts/cluster.sh node).
    std::string netns_path;
    std::filesystem::path dir;  // config, log
    std::string inpod_uds;      // shared mode: our agent's ZDS socket
    std::string node_name;      // NODE_NAME; workloads of the local config carry the same node
    bool dedicated = false;     // PROXY_MODE=dedicated
    std::string workload_info;  // dedicated: "<ns>/<name>/<sa>"
    bool socks5 = false;        // dedicated: 127.0.0.1:15080 (how a client hands it connections)
    std::map<std::string, std::string> env;  // extra environment
    std::string name = "ztunnel";            // file names under dir
  };

  explicit ZtunnelPeer(Options options);
  ~ZtunnelPeer();  // stops it
  ZtunnelPeer(const ZtunnelPeer&) = delete;
  ZtunnelPeer& operator=(const ZtunnelPeer&) = delete;

  // Writes the config and starts ztunnel (stopping a running one first: the file is read once,
  // at start). Throws when it exits at once.
  void start(const LocalConfig& config);
  void stop();  // SIGTERM, then SIGKILL after 5 s
  void kill();  // SIGKILL, as a node losing the process
  bool running();
  // The config it runs with, as rendered.
  const std::string& config_text() const { return config_text_; }
  // Restarts only when `config` renders differently; true when it did.
  bool apply(const LocalConfig& config);

  // /healthz/ready answers 200 (our snapshot arrived and no proxy is pending).
  bool ready();
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  nlohmann::json config_dump();  // admin /config_dump; null when unreachable
  std::string metrics();         // /metrics text; "" when unreachable
  // Sum of every sample of `name` whose labels include all of `labels` (k="v" pairs).
  double metric(const std::string& name, const std::map<std::string, std::string>& labels = {});
  // UIDs in workloadState with state "Up".
  std::vector<std::string> proxies_up();

  std::filesystem::path log_path() const;
  std::vector<LogLine> log();  // every JSON line so far (non-JSON lines are skipped)
  // Lines whose fields include all of `match` (exact values).
  std::vector<LogLine> log_matching(const std::map<std::string, std::string>& match);
  // Lines at warn or error level, and everything from ztunnel's inpod/ZDS handling at error.
  std::vector<LogLine> problems();
  // The last `lines` lines of the log, the readiness answer and the workload state: what a
  // failing test prints.
  std::string report(std::size_t lines = 60);

  // Waits until `condition` holds (polling), up to `timeout`.
  static bool wait_for(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  Options o_;
  std::string config_text_;
  std::unique_ptr<testing::BackgroundProcess> process_;
  int starts_ = 0;
};

}  // namespace ambient::peers
