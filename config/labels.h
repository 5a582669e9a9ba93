// Kubernetes label selectors (matchLabels + matchExpressions) as the API server evaluates them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ambient::config {

using Labels = std::map<std::string, std::string, std::less<>>;

struct LabelRequirement {
  enum class Operator { kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Operator op = Operator::kExists;
  std::vector<std::string> values;
};

class LabelSelector {
 public:
  LabelSelector() = default;  // {} matches everything
  LabelSelector(Labels match_labels, std::vector<LabelRequirement> match_expressions);

  // Parses a metav1.LabelSelector. `where` names the JSON location for error messages.
  // Throws ConfigError (invalid config) naming `where` and the offending field.
  static LabelSelector parse(const nlohmann::json& j, const std::string& where);

  bool matches(const Labels& labels) const;
  bool matches_everything() const { return match_labels_.empty() && match_expressions_.empty(); }
  // Kubernetes' textual form, e.g. "a=b,c notin (x,y),!d"; "<everything>" for {}.
  std::string to_string() const;

 private:
  Labels match_labels_;
  std::vector<LabelRequirement> match_expressions_;
};

}  // namespace ambient::config
