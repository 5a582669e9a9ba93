#include "config/labels.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "config/errors.h"

namespace ambient::config {
namespace {

[[noreturn]] void invalid(const std::string& where, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kInvalid, where, where + ": " + what);
}

std::string string_at(const nlohmann::json& j, const std::string& where) {
  if (!j.is_string()) invalid(where, "must be a string");
  return j.get<std::string>();
}

LabelRequirement::Operator parse_operator(const nlohmann::json& j, const std::string& where) {
  const std::string op = string_at(j, where);
  if (op == "In") return LabelRequirement::Operator::kIn;
  if (op == "NotIn") return LabelRequirement::Operator::kNotIn;
  if (op == "Exists") return LabelRequirement::Operator::kExists;
  if (op == "DoesNotExist") return LabelRequirement::Operator::kDoesNotExist;
  invalid(where, "unknown operator \"" + op + "\" (In, NotIn, Exists, DoesNotExist)");
}

LabelRequirement parse_requirement(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) invalid(where, "must be an object");
  LabelRequirement r;
  const auto key = j.find("key");
  if (key == j.end()) invalid(where + ".key", "is required");
  r.key = string_at(*key, where + ".key");
  if (r.key.empty()) invalid(where + ".key", "must not be empty");
  const auto op = j.find("operator");
  if (op == j.end()) invalid(where + ".operator", "is required");
  r.op = parse_operator(*op, where + ".operator");
  if (const auto values = j.find("values"); values != j.end() && !values->is_null()) {
    if (!values->is_array()) invalid(where + ".values", "must be an array of strings");
    for (std::size_t i = 0; i < values->size(); ++i) {
      r.values.push_back(string_at((*values)[i], where + ".values[" + std::to_string(i) + "]"));
    }
  }
  const bool set_op =
      r.op == LabelRequirement::Operator::kIn || r.op == LabelRequirement::Operator::kNotIn;
  if (set_op && r.values.empty()) invalid(where + ".values", "must not be empty for In/NotIn");
  if (!set_op && !r.values.empty()) {
    invalid(where + ".values", "must be empty for Exists/DoesNotExist");
  }
  return r;
}

bool contains(const std::vector<std::string>& values, const std::string& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

std::string join(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ',';
    out += v;
  }
  return out;
}

}  // namespace

LabelSelector::LabelSelector(Labels match_labels, std::vector<LabelRequirement> match_expressions)
    : match_labels_(std::move(match_labels)), match_expressions_(std::move(match_expressions)) {}

LabelSelector LabelSelector::parse(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return {};
  if (!j.is_object()) invalid(where, "must be an object (a LabelSelector)");
  Labels labels;
  if (const auto ml = j.find("matchLabels"); ml != j.end() && !ml->is_null()) {
    if (!ml->is_object()) invalid(where + ".matchLabels", "must be an object of strings");
    for (const auto& [k, v] : ml->items()) {
      labels.emplace(k, string_at(v, where + ".matchLabels." + k));
    }
  }
  std::vector<LabelRequirement> expressions;
  if (const auto me = j.find("matchExpressions"); me != j.end() && !me->is_null()) {
    if (!me->is_array()) invalid(where + ".matchExpressions", "must be an array");
    for (std::size_t i = 0; i < me->size(); ++i) {
      expressions.push_back(
          parse_requirement((*me)[i], where + ".matchExpressions[" + std::to_string(i) + "]"));
    }
  }
  return LabelSelector(std::move(labels), std::move(expressions));
}

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels_) {
    const auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const auto& r : match_expressions_) {
    const auto it = labels.find(r.key);
    const bool present = it != labels.end();
    switch (r.op) {
      case LabelRequirement::Operator::kIn:
        if (!present || !contains(r.values, it->second)) return false;
        break;
      case LabelRequirement::Operator::kNotIn:
        // Kubernetes: NotIn also matches objects without the key.
        if (present && contains(r.values, it->second)) return false;
        break;
      case LabelRequirement::Operator::kExists:
        if (!present) return false;
        break;
      case LabelRequirement::Operator::kDoesNotExist:
        if (present) return false;
        break;
    }
  }
  return true;
}

std::string LabelSelector::to_string() const {
  if (matches_everything()) return "<everything>";
  std::vector<std::string> parts;
  for (const auto& [k, v] : match_labels_) parts.push_back(k + "=" + v);
  for (const auto& r : match_expressions_) {
    switch (r.op) {
      case LabelRequirement::Operator::kIn:
        parts.push_back(r.key + " in (" + join(r.values) + ")");
        break;
      case LabelRequirement::Operator::kNotIn:
        parts.push_back(r.key + " notin (" + join(r.values) + ")");
        break;
      case LabelRequirement::Operator::kExists:
        parts.push_back(r.key);
        break;
      case LabelRequirement::Operator::kDoesNotExist:
        parts.push_back("!" + r.key);
        break;
    }
  }
  return join(parts);
}

}  // namespace ambient::config
