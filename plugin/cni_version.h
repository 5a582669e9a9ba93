// CNI spec versions and result conversion between them.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::plugin {

inline constexpr std::array<std::string_view, 5> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0",
                                                                       "1.0.0", "1.1.0"};
inline constexpr std::string_view kLatestVersion = "1.1.0";

bool is_supported_version(std::string_view version);

// Compares dotted versions numerically; an unparsable version sorts lowest. <0, 0, >0.
int compare_versions(std::string_view a, std::string_view b);

// Converts a result (a prevResult) to `to_version`, keeping every field it does not know:
// 0.3.x/0.4.0 carry ips[].version ("4"/"6"), 1.x does not. The source version is the result's
// own cniVersion, else `from_version`. Throws CniError (code 1) for results it cannot convert.
nlohmann::json convert_result(const nlohmann::json& result, std::string_view from_version,
                              std::string_view to_version);

// The IPs of a CNI result (prevResult), without prefix lengths.
std::vector<std::string> result_ips(const nlohmann::json& result);

}  // namespace ambient::plugin
