#pragma once

#include <stdexcept>
#include <string>

namespace ambient::config {

// A configuration or input document that cannot be used. `kind` maps to a CNI error code
// (decode → 6, invalid → 7); `key` names what was wrong, e.g. "exclude_namespaces[2]".
class ConfigError : public std::runtime_error {
 public:
  enum class Kind { kDecode, kInvalid };
  ConfigError(Kind kind, std::string key, const std::string& message)
      : std::runtime_error(message), kind_(kind), key_(std::move(key)) {}
  Kind kind() const { return kind_; }
  const std::string& key() const { return key_; }

 private:
  Kind kind_;
  std::string key_;
};

}  // namespace ambient::config
