// `explain`: the enrolment decision and its reason for Kubernetes objects as
// `kubectl get -o json` prints them, with the same function the plugin and agent use.
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/decision.h"
#include "config/errors.h"
#include "config/kube_objects.h"
#include "config/plugin_config.h"
#include "node/commands.h"

namespace ambient::node {
namespace {

struct ExplainOptions {
  std::string pod_file;
  std::string namespace_file;
  std::string config_file;
  std::string output = "text";
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json read_json(const std::string& path) {
  auto j = nlohmann::json::parse(read_file(path), nullptr, false);
  if (j.is_discarded()) throw std::runtime_error(path + " is not valid JSON");
  return j;
}

// A conflist (its ambient-cni entry), a bare plugin entry, or nothing (defaults).
config::PluginConfig load_config(const std::string& path) {
  return config::plugin_config_from_document(path.empty() ? nlohmann::json::object()
                                                          : read_json(path));
}

int explain(const ExplainOptions& o) {
  try {
    const auto cfg = load_config(o.config_file);
    const auto pod = config::parse_pod(read_json(o.pod_file));
    config::NamespaceInfo ns;
    if (!o.namespace_file.empty()) {
      ns = config::parse_namespace(read_json(o.namespace_file));
      if (!pod.namespace_.empty() && ns.name != pod.namespace_) {
        throw std::runtime_error("pod is in namespace " + pod.namespace_ + " but " +
                                 o.namespace_file + " describes " + ns.name);
      }
    } else {
      ns.name = pod.namespace_;
    }
    const auto d = config::decide(cfg.policy, pod, ns);
    if (o.output == "json") {
      nlohmann::json j = {{"enrol", d.enrol}, {"reason", d.reason}};
      if (!d.warnings.empty()) j["warnings"] = d.warnings;
      std::cout << j.dump() << '\n';
    } else {
      std::cout << pod.namespace_ << "/" << pod.name << ": " << (d.enrol ? "enrolled" : "untouched")
                << " (" << d.reason << ")\n";
      for (const auto& w : d.warnings) std::cout << "  warning: " << w << '\n';
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "explain: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace

void add_explain_command(CLI::App& app) {
  auto opts = std::make_shared<ExplainOptions>();
  auto* cmd =
      app.add_subcommand("explain", "Show whether a pod would be enrolled into ambient, and why");
  cmd->add_option("--pod", opts->pod_file, "Pod JSON (kubectl get pod -o json)")->required();
  cmd->add_option("--namespace", opts->namespace_file,
                  "Namespace JSON (kubectl get ns -o json); default: an unlabelled namespace");
  cmd->add_option("--config", opts->config_file,
                  "conflist or ambient-cni plugin entry; default: the built-in defaults");
  cmd->add_option("--output,-o", opts->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->callback([opts] {
    if (const int rc = explain(*opts); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ambient::node
