// CNI error objects (SPEC: "Error"). Thrown inside the plugin, printed once by the dispatcher.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "config/constants.h"

namespace ambient::plugin {

namespace cni_code = ::ambient::contract::cni_code;

class CniError : public std::runtime_error {
 public:
  CniError(int code, const std::string& msg, std::string details = {})
      : std::runtime_error(msg), code_(code), details_(std::move(details)) {}
  int code() const { return code_; }
  const std::string& details() const { return details_; }

  nlohmann::json to_json(const std::string& cni_version) const {
    nlohmann::json j = {{"cniVersion", cni_version}, {"code", code_}, {"msg", what()}};
    if (!details_.empty()) j["details"] = details_;
    return j;
  }

 private:
  int code_;
  std::string details_;
};

}  // namespace ambient::plugin
