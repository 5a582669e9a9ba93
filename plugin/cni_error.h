// CNI error objects (SPEC: "Error"). Thrown inside the plugin, printed once by the dispatcher.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace ambient::plugin {

namespace cni_code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kUnknownContainer = 3;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodeFailure = 6;
inline constexpr int kInvalidConfig = 7;
inline constexpr int kInvalidNetns = 8;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kStatusPluginNotAvailable = 50;
inline constexpr int kStatusLimitedConnectivity = 51;
inline constexpr int kInternal = 999;
}  // namespace cni_code

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
