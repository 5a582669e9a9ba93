// CNI_ARGS: "K=V;K=V" as libcni's LoadArgs reads it.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace ambient::plugin {

struct CniArgs {
  std::string pod_namespace;       // K8S_POD_NAMESPACE
  std::string pod_name;            // K8S_POD_NAME
  std::string pod_uid;             // K8S_POD_UID
  std::string infra_container_id;  // K8S_POD_INFRA_CONTAINER_ID
  bool ignore_unknown = false;
  std::map<std::string, std::string> unknown;  // kept for logs; allowed only with IgnoreUnknown
};

// Splits on ';' then '='. A pair without exactly one '=' is an error, keys are case-sensitive,
// the last duplicate wins, unknown keys are an error unless IgnoreUnknown=1|true (in any
// position). Empty segments ("a=b;;c=d", a trailing ';') carry nothing and are skipped.
// Throws CniError (code 4) naming CNI_ARGS and the offending pair.
CniArgs parse_cni_args(std::string_view text);

}  // namespace ambient::plugin
