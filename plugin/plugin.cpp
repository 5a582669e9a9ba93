#include "plugin/plugin.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <optional>

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

void print(std::ostream& out, const nlohmann::json& j) { out << j.dump() << '\n'; }

void pass_through(const Invocation& in, std::ostream& out) {
  if (in.config.prev_result.is_null()) {
    print(out, {{"cniVersion", in.config.cni_version}});
    return;
  }
  print(out, convert_result(in.config.prev_result, in.config.cni_version,
                            in.config.cni_version));
}

std::string pod_ref(const CniArgs& args) { return args.pod_namespace + "/" + args.pod_name; }

// Decides with the least work: rules that need no API first, then the pod's metadata.
// Returns nullopt when the lookup failed and the failure policy says pass through.
std::optional<config::EnrollmentDecision> decide(const Invocation& in) {
  const auto& policy = in.config.policy;
  if (auto early = config::decide_from_names(policy, in.args.pod_namespace, in.args.pod_name)) {
    return early;
  }
  PodMetadata meta;
  try {
    meta = in.deps.metadata(in.config)->fetch(in.args.pod_namespace, in.args.pod_name);
  } catch (const MetadataError& e) {
    if (in.config.failure_policy == config::FailurePolicy::kOpen) {
      in.log.warn("pod {}: {}; failure_policy=open, so the pod starts outside the mesh",
                  pod_ref(in.args), e.what());
      return std::nullopt;
    }
    throw CniError(cni_code::kTryAgainLater,
                   "cannot decide ambient enrolment (failure_policy=closed): " +
                       std::string(e.what()));
  }
  auto decision = config::decide(policy, meta.pod, meta.ns);
  for (const auto& w : decision.warnings) in.log.warn("pod {}: {}", pod_ref(in.args), w);
  return decision;
}

void enroll(const Invocation& in, const config::EnrollmentDecision& decision) {
  // In-pod redirection and the ztunnel handoff belong to the node agent; until one answers,
  // an ambient pod must not start uncaptured.
  in.log.warn("pod {} must be enrolled ({}) but no node agent is available", pod_ref(in.args),
              decision.reason);
  throw CniError(cni_code::kTryAgainLater, "node agent unavailable",
                 "pod " + pod_ref(in.args) + " is selected for ambient (" + decision.reason +
                     ") and cannot start uncaptured");
}

void cmd_add(const Invocation& in, std::ostream& out) {
  check_netns(in.env.netns);
  const auto decision = decide(in);
  if (decision && decision->enroll) {
    enroll(in, *decision);
    return;
  }
  if (decision) in.log.info("pod {} untouched: {}", pod_ref(in.args), decision->reason);
  pass_through(in, out);
}

void cmd_check(const Invocation& in) {
  require_version(in.config, "0.4.0", in.verb);
  check_netns(in.env.netns);
  const auto decision = decide(in);
  if (decision && decision->enroll) {
    throw CniError(cni_code::kTryAgainLater, "node agent unavailable",
                   "cannot verify the ambient redirection of pod " + pod_ref(in.args));
  }
}

void cmd_status(const Invocation& in) {
  require_version(in.config, "1.1.0", in.verb);
  struct stat st {};
  if (::stat(in.config.kubeconfig.c_str(), &st) != 0) {
    throw CniError(cni_code::kStatusPluginNotAvailable,
                   "kubeconfig " + in.config.kubeconfig + " is not readable: " +
                       std::strerror(errno));
  }
}

void cmd_gc(const Invocation& in, std::string_view stdin_text) {
  require_version(in.config, "1.1.0", in.verb);
  const auto doc = nlohmann::json::parse(stdin_text);  // already validated by parse_config
  std::size_t valid = 0;
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
      ++valid;
    }
  }
  in.log.debug("GC: {} valid attachments", valid);
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
                   "cniVersion \"" + config.cni_version + "\" is not supported (supported: " +
                       supported_list() + ")");
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
