#include "plugin/plugin.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>

#include "config/decision.h"
#include "config/errors.h"
#include "plugin/cni_args.h"
#include "plugin/cni_error.h"
#include "plugin/cni_version.h"

#ifndef AMBIENT_VERSION
#define AMBIENT_VERSION "dev"
#endif

namespace ambient::plugin {
namespace {

struct Invocation {
  Verb verb;
  const CniEnv& env;
  const config::PluginConfig& config;
  const CniArgs& args;
  const PluginDeps& deps;
  spdlog::logger& log;
};

std::string supported_list() {
  std::string s;
  for (const auto v : kSupportedVersions) {
    if (!s.empty()) s += ", ";
    s += v;
  }
  return s;
}

config::PluginConfig parse_config(std::string_view stdin_text) {
  try {
    return config::parse_plugin_config(stdin_text);
  } catch (const config::ConfigError& e) {
    const int code = e.kind() == config::ConfigError::Kind::kDecode ? cni_code::kDecodeFailure
                                                                    : cni_code::kInvalidConfig;
    throw CniError(code, e.what());
  }
}

void require_version(const config::PluginConfig& c, std::string_view minimum, Verb verb) {
  if (compare_versions(c.cni_version, minimum) < 0) {
    throw CniError(cni_code::kIncompatibleVersion,
                   std::string(verb_name(verb)) + " needs cniVersion " + std::string(minimum) +
                       " or later; the configuration has " + c.cni_version);
  }
}

// CNI_NETNS must exist and must not be the plugin's own network namespace (code 8).
void check_netns(const std::string& path) {
  struct stat target {};
  if (::stat(path.c_str(), &target) != 0) {
    throw CniError(cni_code::kInvalidEnvironment,
                   "CNI_NETNS " + path + " cannot be opened: " + std::strerror(errno));
  }
  struct stat own {};
  if (::stat("/proc/self/ns/net", &own) == 0 && own.st_dev == target.st_dev &&
      own.st_ino == target.st_ino) {
    throw CniError(cni_code::kInvalidNetns,
                   "CNI_NETNS " + path + " is the plugin's own network namespace");
  }
}

void print(std::ostream& out, const nlohmann::json& j) {
  out << j.dump() << '\n';
}

void pass_through(const Invocation& in, std::ostream& out) {
  if (in.config.prev_result.is_null()) {
    print(out, {{"cniVersion", in.config.cni_version}});
    return;
  }
  print(out, convert_result(in.config.prev_result, in.config.cni_version, in.config.cni_version));
}

std::string pod_ref(const CniArgs& args) {
  return args.pod_namespace + "/" + args.pod_name;
}

rundir::RunDir run_dir(const Invocation& in) {
  return rundir::RunDir(in.config.run_dir);
}

void report(const Invocation& in, const std::vector<rundir::Problem>& problems) {
  for (const auto& p : problems) in.log.warn("run dir: ignoring {}: {}", p.path, p.error);
}

rundir::PodRecord pod_record(const Invocation& in) {
  rundir::PodRecord r;
  r.container_id = in.env.container_id;
  r.netns = in.env.netns;
  r.ifname = in.env.ifname;
  r.uid = in.args.pod_uid;
  r.name = in.args.pod_name;
  r.namespace_ = in.args.pod_namespace;
  r.ips = result_ips(in.config.prev_result);
  r.network = in.config.name;
  return r;
}

// A lookup (by the agent or by the plugin itself) failed: the failure policy says whether the pod
// may start outside the mesh. Returns normally only for failure_policy=open.
void apply_failure_policy(const Invocation& in, const std::string& why) {
  if (in.config.failure_policy == config::FailurePolicy::kOpen) {
    in.log.warn("pod {}: {}; failure_policy=open, so the pod starts outside the mesh",
                pod_ref(in.args), why);
    return;
  }
  throw CniError(cni_code::kTryAgainLater,
                 "cannot decide ambient enrolment (failure_policy=closed): " + why);
}

// No node agent runs: the plugin reads the API and decides itself with the same function. An
// untouched pod starts; one that must be enrolled waits (the agent enrols, so the kubelet retries).
void decide_without_agent(const Invocation& in, const AgentNotRunning& why) {
  PodMetadata meta;
  try {
    meta = in.deps.metadata(in.config)->fetch(in.args.pod_namespace, in.args.pod_name);
  } catch (const MetadataError& e) {
    return apply_failure_policy(in, e.what());
  }
  if (!in.args.pod_uid.empty() && meta.pod.uid != in.args.pod_uid) {
    throw CniError(cni_code::kTryAgainLater, "pod " + pod_ref(in.args) + " in the API has uid " +
                                                 meta.pod.uid + ", but the sandbox is for uid " +
                                                 in.args.pod_uid +
                                                 " (a pod of the same name that was replaced?)");
  }
  const auto decision = config::decide(in.config.policy, meta.pod, meta.ns);
  for (const auto& w : decision.warnings) in.log.warn("pod {}: {}", pod_ref(in.args), w);
  if (decision.enrol) {
    throw CniError(cni_code::kTryAgainLater, "pod " + pod_ref(in.args) +
                                                 " is selected for ambient (" + decision.reason +
                                                 ") but " + why.what());
  }
  in.log.info("pod {} untouched: {} (decided without the node agent)", pod_ref(in.args),
              decision.reason);
}

void cmd_add(const Invocation& in, std::ostream& out) {
  check_netns(in.env.netns);
  if (auto early =
          config::decide_from_names(in.config.policy, in.args.pod_namespace, in.args.pod_name)) {
    in.log.info("pod {} untouched: {}", pod_ref(in.args), early->reason);  // nothing to record
    pass_through(in, out);
    return;
  }
  // Every Kubernetes pod that may ever be enrolled is recorded, so a later label change can
  // find its netns without scanning /proc.
  const auto record = pod_record(in);
  const auto dir = run_dir(in);
  try {
    dir.write_record(record);
  } catch (const std::exception& e) {
    in.log.warn("pod {}: {} (a later label change will scan /proc instead)", pod_ref(in.args),
                e.what());
  }
  try {
    // One round trip: the agent reads the pod fresh, decides, and enrols when selected.
    const auto reply = in.deps.agent(in.config)->call({"add", record});
    if (!reply.ok && reply.undecided) {
      apply_failure_policy(in, reply.msg);
    } else if (!reply.ok) {
      throw CniError(reply.code, reply.msg, reply.details);
    } else {
      in.log.info("pod {} {}: {}", pod_ref(in.args), reply.enrolled ? "enrolled" : "untouched",
                  reply.reason);
    }
  } catch (const AgentNotRunning& e) {
    try {
      decide_without_agent(in, e);
    } catch (const CniError&) {
      dir.remove_record(record.container_id);
      throw;
    }
  } catch (const CniError&) {
    // A failed ADD is followed by a DEL, but don't leave a record claiming a running pod.
    dir.remove_record(record.container_id);
    throw;
  }
  pass_through(in, out);
}

// Best effort: the agent forgets the pod (ztunnel del, rules, probe entry); when it cannot be
// reached, a tombstone tells it at its next start.
void release(const Invocation& in, const rundir::PodRecord& record) {
  try {
    const auto reply = in.deps.agent(in.config)->call({"del", record});
    if (!reply.ok) in.log.warn("DEL {}: agent: {}", record.container_id, reply.msg);
  } catch (const CniError& e) {
    in.log.warn("DEL {}: {}; leaving a tombstone", record.container_id, e.what());
    try {
      run_dir(in).write_tombstone(record);
    } catch (const std::exception& t) {
      // DEL never fails; the agent's startup reconcile finds the pod gone anyway.
      in.log.warn("DEL {}: cannot leave a tombstone: {}", record.container_id, t.what());
    }
  }
}

void cmd_del(const Invocation& in) {
  // The record of this container's ADD names the pod even when this DEL's CNI_ARGS do not (a
  // runtime's cleanup DEL may carry fewer keys than its ADD).
  const auto dir = run_dir(in);
  std::vector<rundir::Problem> problems;
  const auto added = dir.read_record(in.env.container_id, &problems);
  report(in, problems);
  dir.remove_record(in.env.container_id);
  rundir::PodRecord record = pod_record(in);
  if (added) {
    if (record.namespace_.empty() || record.name.empty()) {
      record.namespace_ = added->namespace_;
      record.name = added->name;
    }
    if (record.uid.empty()) record.uid = added->uid;
    if (record.ips.empty()) record.ips = added->ips;
  }
  if (record.namespace_.empty() || record.name.empty()) return;  // never a Kubernetes pod of ours
  if (config::decide_from_names(in.config.policy, record.namespace_, record.name)) {
    return;  // never enrolled: excluded namespace or our own agent
  }
  release(in, record);
}

void cmd_check(const Invocation& in) {
  require_version(in.config, "0.4.0", in.verb);
  check_netns(in.env.netns);
  if (config::decide_from_names(in.config.policy, in.args.pod_namespace, in.args.pod_name)) {
    return;
  }
  try {
    const auto reply = in.deps.agent(in.config)->call({"check", pod_record(in)});
    if (!reply.ok) throw CniError(reply.code, reply.msg, reply.details);
  } catch (const AgentNotRunning& e) {
    decide_without_agent(in, e);  // an untouched pod is fine; one to enrol is not served now
  }
}

// STATUS: can an ADD be served now? With status_checks_agent (the default), only once the node
// agent is ready to enrol pods: a runtime that calls STATUS (containerd >= 2.0.1, CRI-O) then
// holds the node's pods back instead of starting them outside the mesh after a reboot.
// docs/decisions/011-status.md
void cmd_status(const Invocation& in) {
  require_version(in.config, "1.1.0", in.verb);
  struct stat st {};
  if (::stat(in.config.kubeconfig.c_str(), &st) != 0) {
    throw CniError(
        cni_code::kStatusPluginNotAvailable,
        "kubeconfig " + in.config.kubeconfig + " is not readable: " + std::strerror(errno));
  }
  if (!in.config.status_checks_agent) return;
  auto quick = in.config;  // a ready agent answers at once; a hung one must not hold STATUS long
  quick.agent_timeout_ms = std::min(quick.agent_timeout_ms, 2000);
  rundir::AgentReply reply;
  try {
    reply = in.deps.agent(quick)->call({"status", {}});
  } catch (const CniError& e) {
    throw CniError(cni_code::kStatusPluginNotAvailable, e.what());
  }
  if (!reply.ok) throw CniError(cni_code::kStatusPluginNotAvailable, reply.msg, reply.details);
}

void cmd_gc(const Invocation& in, std::string_view stdin_text) {
  require_version(in.config, "1.1.0", in.verb);
  const auto doc = nlohmann::json::parse(stdin_text);  // already validated by parse_config
  std::set<std::string> valid;
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    const auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) continue;
    if (!it->is_array()) {
      throw CniError(cni_code::kInvalidConfig, std::string(key) + " must be an array");
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& a = (*it)[i];
      const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
      if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string()) {
        throw CniError(cni_code::kInvalidConfig, where + " needs a string containerID");
      }
      if (a.contains("ifname") && !a["ifname"].is_string()) {
        throw CniError(cni_code::kInvalidConfig, where + ".ifname must be a string");
      }
      valid.insert(a["containerID"].get<std::string>());
    }
  }
  std::size_t removed = 0;
  const auto dir = run_dir(in);
  std::vector<rundir::Problem> problems;
  const auto records = dir.records(&problems);
  report(in, problems);
  for (const auto& record : records) {
    // Only this network's attachments: a GC of another network sharing the run dir lists none of
    // ours as valid, and must not release them. (Records of older plugins name no network.)
    if (!record.network.empty() && record.network != in.config.name) continue;
    if (valid.contains(record.container_id)) continue;
    in.log.info("GC: {} ({}/{}) is no longer a valid attachment", record.container_id,
                record.namespace_, record.name);
    dir.remove_record(record.container_id);
    release(in, record);
    ++removed;
  }
  in.log.debug("GC: {} valid attachments, {} stale records removed", valid.size(), removed);
}

int run_verb(Verb verb, const CniEnv& env, std::string_view stdin_text, std::ostream& out,
             const PluginDeps& deps, std::string& error_version) {
  spdlog::logger& log = *deps.log;
  if (verb == Verb::kVersion) {
    std::string version(kLatestVersion);
    const auto doc = nlohmann::json::parse(stdin_text, nullptr, false);
    if (doc.is_object() && doc.contains("cniVersion") && doc["cniVersion"].is_string()) {
      version = doc["cniVersion"].get<std::string>();
    }
    print(out, {{"cniVersion", version}, {"supportedVersions", kSupportedVersions}});
    return 0;
  }
  const auto config = parse_config(stdin_text);
  error_version = config.cni_version;
  log.set_level(spdlog::level::from_str(config.log_level == "none" ? "off" : config.log_level));
  if (!is_supported_version(config.cni_version)) {
    throw CniError(cni_code::kIncompatibleVersion,
                   "cniVersion \"" + config.cni_version +
                       "\" is not supported (supported: " + supported_list() + ")");
  }
  const auto args = parse_cni_args(env.args);
  const Invocation in{verb, env, config, args, deps, log};
  switch (verb) {
    case Verb::kAdd:
      cmd_add(in, out);
      break;
    case Verb::kCheck:
      cmd_check(in);
      break;
    case Verb::kStatus:
      cmd_status(in);
      break;
    case Verb::kGc:
      cmd_gc(in, stdin_text);
      break;
    case Verb::kDel:
      cmd_del(in);
      break;
    case Verb::kVersion:
      break;
  }
  return 0;
}

}  // namespace

std::string about_text() {
  return std::string("ambient-cni ") + AMBIENT_VERSION +
         ": chained CNI plugin enrolling pods into Istio's ambient mesh; CNI protocol versions "
         "supported: " +
         supported_list();
}

int run_plugin(const CniEnv& env, std::string_view stdin_text, std::ostream& out,
               const PluginDeps& deps) {
  std::string error_version(kLatestVersion);
  // Known before validation, so that even a DEL with a broken environment succeeds.
  const bool is_del = env.command == "DEL";
  try {
    return run_verb(validate_env(env), env, stdin_text, out, deps, error_version);
  } catch (const CniError& e) {
    if (is_del) {
      deps.log->warn("DEL {}: {} (ignored: DEL always succeeds)", env.container_id, e.what());
      return 0;
    }
    deps.log->error("{} {}: {}", env.command, env.container_id, e.what());
    print(out, e.to_json(error_version));
    return 1;
  } catch (const std::exception& e) {
    if (is_del) {
      deps.log->warn("DEL {}: {} (ignored: DEL always succeeds)", env.container_id, e.what());
      return 0;
    }
    deps.log->error("{} {}: internal error: {}", env.command, env.container_id, e.what());
    print(out, CniError(cni_code::kInternal, std::string("internal error: ") + e.what())
                   .to_json(error_version));
    return 1;
  }
}

}  // namespace ambient::plugin
