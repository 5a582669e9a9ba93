// The string forms of label and field selectors as the API server parses them from a query
// (`labelSelector=a=b,c notin (x),!d`, `fieldSelector=spec.nodeName=n1`). Written apart from
// config/labels.h on purpose: the stand-in is the peer the production code is tested against.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::testing {

struct SelectorRequirement {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Op op = Op::kExists;
  std::vector<std::string> values;
};

class LabelSelectorQuery {
 public:
  // Throws std::invalid_argument with the reason on a syntax error.
  static LabelSelectorQuery parse(std::string_view text);
  bool matches(const nlohmann::json& object) const;  // object.metadata.labels
  bool empty() const { return requirements_.empty(); }

 private:
  std::vector<SelectorRequirement> requirements_;
};

class FieldSelectorQuery {
 public:
  // `kind` is "Pod", "Namespace", "Event" or "ConfigMap": each supports its own field labels,
  // like the real server.
  // Throws std::invalid_argument ("field label not supported: x") on anything else.
  static FieldSelectorQuery parse(std::string_view text, std::string_view kind);
  bool matches(const nlohmann::json& object) const;

 private:
  struct Term {
    std::string field;
    bool equal = true;
    std::string value;
  };
  std::vector<Term> terms_;
};

// The value of a supported field label of an object as the API server renders it ("" when
// absent, "true"/"false" for booleans).
std::string field_value(const nlohmann::json& object, std::string_view field);

}  // namespace ambient::testing
