#include "rundir/records.h"

#include "config/json_fields.h"

namespace ambient::rundir {

namespace f = config::fields;

nlohmann::json to_json(const PodRecord& r) {
  return {{"containerID", r.container_id},
          {"netns", r.netns},
          {"ifname", r.ifname},
          {"uid", r.uid},
          {"name", r.name},
          {"namespace", r.namespace_},
          {"ips", r.ips},
          {"network", r.network}};
}

PodRecord pod_record_from_json(const nlohmann::json& j) {
  f::object(j, "record");
  PodRecord r;
  r.container_id = f::string(j, "containerID");
  r.netns = f::string(j, "netns");
  r.ifname = f::string(j, "ifname");
  r.uid = f::string(j, "uid");
  r.name = f::string(j, "name", /*required=*/true);
  r.namespace_ = f::string(j, "namespace", /*required=*/true);
  r.ips = f::strings(j, "ips");
  r.network = f::string(j, "network");
  return r;
}

nlohmann::json to_json(const Enrolment& s) {
  nlohmann::json j = {{"pod", to_json(s.pod)},
                      {"serviceAccount", s.service_account},
                      {"redirect", config::to_json(s.redirect)},
                      {"netnsDev", s.netns_dev},
                      {"netnsInode", s.netns_inode}};
  if (s.enrolled_at != 0) j["enrolledAt"] = s.enrolled_at;
  return j;
}

Enrolment enrolment_from_json(const nlohmann::json& j) {
  f::object(j, "enrolled state");
  Enrolment s;
  const auto pod = j.find("pod");
  if (pod == j.end()) f::bad("pod", "is required");
  s.pod = pod_record_from_json(*pod);
  if (s.pod.uid.empty()) f::bad("pod.uid", "is required");
  s.service_account = f::string(j, "serviceAccount");
  if (const auto red = j.find("redirect"); red != j.end() && !red->is_null()) {
    s.redirect = config::redirect_settings_from_json(*red);
  }
  for (auto [key, into] : {std::pair{"netnsDev", &s.netns_dev}, {"netnsInode", &s.netns_inode}}) {
    if (const auto it = j.find(key); it != j.end() && !it->is_null()) {
      if (!it->is_number_unsigned()) f::bad(key, "must be an unsigned integer");
      *into = it->get<std::uint64_t>();
    }
  }
  if (const auto it = j.find("enrolledAt"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) f::bad("enrolledAt", "must be an integer");
    s.enrolled_at = it->get<std::int64_t>();
  }
  return s;
}

}  // namespace ambient::rundir
