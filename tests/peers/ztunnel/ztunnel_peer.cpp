#include "tests/peers/ztunnel/ztunnel_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "netns/netns.h"
#include "tests/support/files.h"
#include "tests/support/wait.h"

#ifndef AMBIENT_ZTUNNEL_CACHED_BIN
#define AMBIENT_ZTUNNEL_CACHED_BIN ""
#endif

namespace ambient::peers {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kAdminPort = 15000;
constexpr int kStatsPort = 15020;
constexpr int kReadinessPort = 15021;

// Writes through a temporary name and renames: a reader never sees half a file.
void write_file_atomic(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, p);
}

// Flattens one JSON log object: nested span objects contribute their fields too (their names
// would only shadow nothing we read).
void flatten(const json& obj, LogLine& out) {
  for (const auto& [k, v] : obj.items()) {
    if (v.is_object()) {
      flatten(v, out);
    } else if (v.is_string()) {
      out[k] = v.get<std::string>();
    } else {
      out[k] = v.dump();
    }
  }
}

// Prometheus text: name{a="x",b="y"} value
bool labels_match(const std::string& labels, const std::map<std::string, std::string>& want) {
  for (const auto& [k, v] : want) {
    if (labels.find(k + "=\"" + v + "\"") == std::string::npos) return false;
  }
  return true;
}

}  // namespace

std::string ztunnel_binary() {
  if (const char* env = std::getenv("AMBIENT_ZTUNNEL_BIN"); env && *env) {
    if (::access(env, X_OK) == 0) return env;
    throw std::runtime_error(std::string("AMBIENT_ZTUNNEL_BIN=") + env + " is not executable");
  }
  const std::string cached = AMBIENT_ZTUNNEL_CACHED_BIN;
  if (!cached.empty() && ::access(cached.c_str(), X_OK) == 0) return cached;
  throw std::runtime_error("the real ztunnel is not built (looked for " +
                           (cached.empty() ? std::string("AMBIENT_ZTUNNEL_BIN") : cached) +
                           "): run scripts/peers.sh ztunnel");
}

namespace {

HttpReply http_get_here(const std::string& ip, int port, const std::string& path,
                        std::chrono::milliseconds timeout) {
  HttpReply r;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return r;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return r;
  }
  // HTTP/1.0: the answer is delimited by the close, never chunked.
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return r;
  }
  std::string got;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  const auto sp = got.find(' ');
  const auto head_end = got.find("\r\n\r\n");
  if (sp == std::string::npos || head_end == std::string::npos) return r;
  r.status = std::atoi(got.c_str() + sp + 1);
  r.body = got.substr(head_end + 4);
  return r;
}

}  // namespace

HttpReply http_get_in(const std::string& netns_path, const std::string& ip, int port,
                      const std::string& path, std::chrono::milliseconds timeout) {
  if (netns_path.empty()) return http_get_here(ip, port, path, timeout);
  const auto ns = netns::NetnsHandle::open(netns_path);
  return netns::run_in(ns, [&] { return http_get_here(ip, port, path, timeout); });
}

ZtunnelPeer::ZtunnelPeer(Options options) : o_(std::move(options)) {
  fs::create_directories(o_.dir);
}

ZtunnelPeer::~ZtunnelPeer() {
  stop();
}

fs::path ZtunnelPeer::log_path() const {
  return o_.dir / (o_.name + ".log");
}

void ZtunnelPeer::start(const LocalConfig& config) {
  stop();
  config_text_ = config.render();
  const fs::path config_path = o_.dir / (o_.name + "-local.yaml");
  write_file_atomic(config_path, config_text_);

  std::vector<std::string> argv;
  if (!o_.netns_path.empty()) argv = {"/usr/bin/nsenter", "--net=" + o_.netns_path, "--"};
  argv.insert(argv.end(), {"/usr/bin/env", "-i"});
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"},
      {"FAKE_CA", "true"},
      {"XDS_ADDRESS", ""},  // set and empty: no XDS client at all
      {"LOCAL_XDS_PATH", config_path.string()},
      {"LOG_FORMAT", "json"},
      // access=debug: "connection opened" as well as "complete"; inpod at debug shows netns ids.
      {"RUST_LOG", "info,access=debug,ztunnel::inpod=debug"},
      {"AUTHZ_POLICY_INFO_LOGGING", "true"},  // allow/deny decisions at info
  };
  if (!o_.node_name.empty()) env["NODE_NAME"] = o_.node_name;
  if (o_.dedicated) {
    env["PROXY_MODE"] = "dedicated";
    env["PROXY_WORKLOAD_INFO"] = o_.workload_info;
    if (o_.socks5) env["UNSTABLE_ENABLE_SOCKS5"] = "true";
  } else {
    env["PROXY_MODE"] = "shared";
    env["INPOD_UDS"] = o_.inpod_uds;
  }
  for (const auto& [k, v] : o_.env) env[k] = v;
  for (const auto& [k, v] : env) argv.push_back(k + "=" + v);
  argv.push_back(ztunnel_binary());
  {
    std::ofstream log(log_path(), std::ios::app);
    // A timestamp in ztunnel's own format, so start → ready can be read off the log.
    const auto now = std::chrono::system_clock::now();
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
        1000000;
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
    log << "### start " << ++starts_ << " (" << o_.name << ") " << stamp << "." << std::setw(6)
        << std::setfill('0') << us << "Z\n";
  }
  process_ = std::make_unique<testing::BackgroundProcess>(argv, log_path().string());
  // An invalid config or a refused privilege ends the process at once.
  std::this_thread::sleep_for(50ms);
  if (!process_->running()) {
    process_.reset();
    throw std::runtime_error("ztunnel exited at start:\n" + report(30));
  }
}

void ZtunnelPeer::stop() {
  if (process_) process_->stop(SIGTERM, 5s);
  process_.reset();
}

void ZtunnelPeer::kill() {
  if (process_) process_->stop(SIGKILL);
  process_.reset();
}

bool ZtunnelPeer::running() {
  return process_ && process_->running();
}

bool ZtunnelPeer::apply(const LocalConfig& config) {
  if (running() && config.render() == config_text_) return false;
  start(config);
  return true;
}

bool ZtunnelPeer::ready() {
  return http_get_in(o_.netns_path, "127.0.0.1", kReadinessPort, "/healthz/ready", 1s).status ==
         200;
}

bool ZtunnelPeer::wait_ready(std::chrono::milliseconds timeout) {
  return wait_for([&] { return running() && ready(); }, timeout);
}

json ZtunnelPeer::config_dump() {
  const auto r = http_get_in(o_.netns_path, "127.0.0.1", kAdminPort, "/config_dump");
  if (r.status != 200) return nullptr;
  return json::parse(r.body, nullptr, false);
}

std::string ZtunnelPeer::metrics() {
  const auto r = http_get_in(o_.netns_path, "127.0.0.1", kStatsPort, "/metrics");
  return r.status == 200 ? r.body : "";
}

double ZtunnelPeer::metric(const std::string& name,
                           const std::map<std::string, std::string>& labels) {
  std::istringstream in(metrics());
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto brace = line.find('{');
    const auto space = line.rfind(' ');
    const std::string metric_name = line.substr(0, std::min(brace, space));
    if (metric_name != name) continue;
    const std::string label_text =
        brace == std::string::npos ? "" : line.substr(brace, line.rfind('}') - brace + 1);
    if (!labels_match(label_text, labels)) continue;
    sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  return sum;
}

std::vector<std::string> ZtunnelPeer::proxies_up() {
  std::vector<std::string> out;
  const json dump = config_dump();
  if (!dump.is_object()) return out;
  const auto states = dump.find("workloadState");
  if (states == dump.end() || !states->is_object()) return out;
  for (auto it = states->begin(); it != states->end(); ++it) {
    if (it->is_object() && it->value("state", "") == "Up") out.push_back(it.key());
  }
  return out;
}

std::vector<LogLine> ZtunnelPeer::log() {
  std::vector<LogLine> out;
  std::istringstream in(testing::read_file(log_path()));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    const json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    LogLine l;
    flatten(j, l);
    if (j.contains("message"))
      l["message"] =
          j["message"].is_string() ? j["message"].get<std::string>() : j["message"].dump();
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<LogLine> ZtunnelPeer::log_matching(const std::map<std::string, std::string>& match) {
  std::vector<LogLine> out;
  for (auto& l : log()) {
    bool ok = true;
    for (const auto& [k, v] : match) {
      const auto it = l.find(k);
      if (it == l.end() || it->second != v) {
        ok = false;
        break;
      }
    }
    if (ok) out.push_back(std::move(l));
  }
  return out;
}

std::vector<LogLine> ZtunnelPeer::problems() {
  std::vector<LogLine> out;
  for (auto& l : log()) {
    const std::string& level = l["level"];
    if (level == "warn" || level == "error") out.push_back(std::move(l));
  }
  return out;
}

std::string ZtunnelPeer::report(std::size_t lines) {
  std::vector<std::string> all;
  std::istringstream in(testing::read_file(log_path()));
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out = "---- " + o_.name + " (" + log_path().string() + "), last lines:\n";
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += all[i] + "\n";
  }
  if (running()) {
    const auto r = http_get_in(o_.netns_path, "127.0.0.1", kReadinessPort, "/healthz/ready", 1s);
    out += "---- readiness: " + std::to_string(r.status) + " " + r.body + "\n";
    const json dump = config_dump();
    if (dump.is_object() && dump.contains("workloadState")) {
      out += "---- workloadState: " + dump["workloadState"].dump() + "\n";
    }
  } else {
    out += "---- not running\n";
  }
  return out;
}

bool ZtunnelPeer::wait_for(const std::function<bool()>& condition,
                           std::chrono::milliseconds timeout) {
  return testing::wait_until(condition, timeout, 50ms);
}

}  // namespace ambient::peers
