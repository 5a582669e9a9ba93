#include "plugin/cni_args.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw CniError(cni_code::kInvalidEnvironment, "invalid CNI_ARGS: " + what);
}

bool parse_bool(std::string value, const std::string& key) {
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (value == "1" || value == "true") return true;
  if (value == "0" || value == "false") return false;
  invalid(key + "=" + value + " is not a boolean");
}

}  // namespace

CniArgs parse_cni_args(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const auto end = std::min(text.find(';', pos), text.size());
    const auto pair = text.substr(pos, end - pos);
    pos = end + 1;
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || pair.find('=', eq + 1) != std::string_view::npos) {
      invalid("\"" + std::string(pair) + "\" is not a KEY=VALUE pair");
    }
    if (eq == 0) invalid("\"" + std::string(pair) + "\" has an empty key");
    pairs.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
  }

  CniArgs args;
  // IgnoreUnknown governs the whole list wherever it appears (containerd shuffles the order).
  for (const auto& [k, v] : pairs) {
    if (k == "IgnoreUnknown") args.ignore_unknown = parse_bool(v, k);
  }
  for (const auto& [k, v] : pairs) {
    if (k == "K8S_POD_NAMESPACE") {
      args.pod_namespace = v;
    } else if (k == "K8S_POD_NAME") {
      args.pod_name = v;
    } else if (k == "K8S_POD_UID") {
      args.pod_uid = v;
    } else if (k == "K8S_POD_INFRA_CONTAINER_ID") {
      args.infra_container_id = v;
    } else if (k != "IgnoreUnknown") {
      if (!args.ignore_unknown) invalid("unknown key \"" + k + "\" (and no IgnoreUnknown=1)");
      args.unknown[k] = v;
    }
  }
  return args;
}

}  // namespace ambient::plugin
