#include "config/enrolment_policy.h"

#include <nlohmann/json.hpp>

#include "config/constants.h"
#include "config/errors.h"

namespace ambient::config {

std::vector<EnablementSelector> EnrolmentPolicy::default_selectors() {
  const std::string key(contract::kDataplaneModeLabel);
  const std::string ambient(contract::kDataplaneModeAmbient);
  const std::string none(contract::kDataplaneModeNone);
  std::vector<EnablementSelector> out;
  out.push_back({LabelSelector(Labels{{key, ambient}}, {}), LabelSelector(), "pod label ambient"});
  out.push_back({LabelSelector({}, {{key, LabelRequirement::Operator::kNotIn, {none}}}),
                 LabelSelector(Labels{{key, ambient}}, {}), "namespace label ambient"});
  return out;
}

std::vector<EnablementSelector> parse_enablement_selectors(const nlohmann::json& j) {
  const std::string key = "enablement_selectors";
  if (!j.is_array()) {
    throw ConfigError(ConfigError::Kind::kInvalid, key, key + ": must be an array");
  }
  std::vector<EnablementSelector> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const std::string where = key + "[" + std::to_string(i) + "]";
    const auto& entry = j[i];
    if (!entry.is_object()) {
      throw ConfigError(ConfigError::Kind::kInvalid, where,
                        where + ": must be an object with podSelector/namespaceSelector");
    }
    EnablementSelector sel;
    if (const auto p = entry.find("podSelector"); p != entry.end()) {
      sel.pod = LabelSelector::parse(*p, where + ".podSelector");
    }
    if (const auto n = entry.find("namespaceSelector"); n != entry.end()) {
      sel.namespace_ = LabelSelector::parse(*n, where + ".namespaceSelector");
    }
    sel.reason = "enablement selector " + std::to_string(i) + " (pod: " + sel.pod.to_string() +
                 "; namespace: " + sel.namespace_.to_string() + ")";
    out.push_back(std::move(sel));
  }
  return out;
}

}  // namespace ambient::config
