// How a pod's traffic is redirected: the node defaults (dns_capture, ipv6) with the pod's own
// annotations on top (ambient.istio.io/dns-capture, ambient.istio.io/bypass-inbound-capture,
// istio.io/reroute-virtual-interfaces). One function computes it, for the ADD and for every
// later re-enrolment, so the agent never re-applies other settings right after an ADD.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/kube_objects.h"

namespace ambient::config {

struct RedirectSettings {
  bool dns_capture = true;
  bool ipv6 = true;  // program IPv6 too when the pod has an IPv6 address
  bool bypass_inbound_capture = false;
  std::vector<std::string> reroute_interfaces;
  std::vector<std::string> warnings;  // unparsable annotations (ignored, default kept)

  bool operator==(const RedirectSettings& o) const {
    return dns_capture == o.dns_capture && ipv6 == o.ipv6 &&
           bypass_inbound_capture == o.bypass_inbound_capture &&
           reroute_interfaces == o.reroute_interfaces;
  }
};

RedirectSettings redirect_settings_for(const Labels& pod_annotations, bool default_dns_capture,
                                       bool ipv6_enabled);

nlohmann::json to_json(const RedirectSettings& s);
RedirectSettings redirect_settings_from_json(const nlohmann::json& j);  // throws ConfigError

}  // namespace ambient::config
