#include "tests/standins/apiserver/table.h"

#include <ctime>
#include <iomanip>
#include <sstream>

namespace ambient::testing {
namespace {

using json = nlohmann::json;

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t") + 1);
  return s;
}

json column(const std::string& name, const std::string& type, const std::string& format,
            const std::string& description, int priority) {
  return {{"name", name},
          {"type", type},
          {"format", format},
          {"description", description},
          {"priority", priority}};
}

long long age_seconds(const json& object) {
  const std::string created = object["metadata"].value("creationTimestamp", "");
  std::tm tm{};
  std::istringstream in(created);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail()) return -1;
  return static_cast<long long>(std::time(nullptr) - timegm(&tm));
}

std::string age_of(const json& object) {
  const long long seconds = age_seconds(object);
  return seconds < 0 ? "<unknown>" : human_age(seconds);
}

json namespace_cells(const json& ns) {
  return {ns["metadata"].value("name", ""), ns.value("status", json::object()).value("phase", ""),
          age_of(ns)};
}

json pod_cells(const json& pod) {
  const json spec = pod.value("spec", json::object());
  const json status = pod.value("status", json::object());
  const size_t containers = spec.value("containers", json::array()).size();
  size_t ready = 0;
  long long restarts = 0;
  for (const auto& c : status.value("containerStatuses", json::array())) {
    ready += c.value("ready", false) ? 1 : 0;
    restarts += c.value("restartCount", 0LL);
  }
  std::string phase = status.value("phase", "");
  if (pod["metadata"].contains("deletionTimestamp")) phase = "Terminating";
  return {pod["metadata"].value("name", ""),
          std::to_string(ready) + "/" + std::to_string(containers),
          phase,
          std::to_string(restarts),
          age_of(pod),
          status.value("podIP", "<none>"),
          spec.value("nodeName", "<none>")};
}

}  // namespace

TableRequest table_request(const std::string& accept, const std::string& include_object) {
  TableRequest request;
  // Accept is a list of media ranges with parameters; kubectl lists Table v1, v1beta1, then
  // plain JSON. Only v1 is served.
  std::stringstream ranges(accept);
  for (std::string range; std::getline(ranges, range, ',');) {
    std::stringstream parts(range);
    std::string part;
    bool table = false, v1 = false, group = false;
    while (std::getline(parts, part, ';')) {
      part = trim(part);
      table = table || part == "as=Table";
      v1 = v1 || part == "v=v1";
      group = group || part == "g=meta.k8s.io";
    }
    if (table && v1 && group) request.wanted = true;
  }
  if (include_object == "None") request.include = TableRequest::Include::kNone;
  if (include_object == "Object") request.include = TableRequest::Include::kObject;
  return request;
}

json make_table(const std::string& kind, const std::vector<const json*>& objects,
                const TableRequest& request, const json& list_metadata) {
  const std::string name_doc =
      "Name must be unique within a namespace. Is required when creating resources, although "
      "some resources may allow a client to request the generation of an appropriate name "
      "automatically.";
  const std::string age_doc =
      "CreationTimestamp is a timestamp representing the server time when this object was "
      "created.";
  json columns;
  if (kind == "Pod") {
    columns = {column("Name", "string", "name", name_doc, 0),
               column("Ready", "string", "",
                      "The aggregate readiness state of this pod for "
                      "accepting traffic.",
                      0),
               column("Status", "string", "",
                      "The aggregate status of the containers in this "
                      "pod.",
                      0),
               column("Restarts", "string", "",
                      "The number of times the containers in this pod "
                      "have been restarted.",
                      0),
               column("Age", "string", "", age_doc, 0),
               column("IP", "string", "", "IP address allocated to the pod.", 1),
               column("Node", "string", "", "Name of the node the pod is assigned to.", 1)};
  } else {
    columns = {column("Name", "string", "name", name_doc, 0),
               column("Status", "string", "", "The status of the namespace", 0),
               column("Age", "string", "", age_doc, 0)};
  }
  json rows = json::array();
  for (const json* object : objects) {
    json row = {{"cells", kind == "Pod" ? pod_cells(*object) : namespace_cells(*object)}};
    if (request.include == TableRequest::Include::kMetadata) {
      row["object"] = {{"kind", "PartialObjectMetadata"},
                       {"apiVersion", "meta.k8s.io/v1"},
                       {"metadata", (*object)["metadata"]}};
    } else if (request.include == TableRequest::Include::kObject) {
      row["object"] = *object;
    }
    rows.push_back(std::move(row));
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", list_metadata},
          {"columnDefinitions", columns},
          {"rows", rows}};
}

std::string human_age(long long seconds) {
  auto n = [](long long v) { return std::to_string(v); };
  if (seconds < 0) return "0s";
  if (seconds < 120) return n(seconds) + "s";
  const long long minutes = seconds / 60;
  if (minutes < 10) return n(minutes) + "m" + (seconds % 60 ? n(seconds % 60) + "s" : "");
  if (minutes < 180) return n(minutes) + "m";
  const long long hours = minutes / 60;
  if (hours < 8) return n(hours) + "h" + (minutes % 60 ? n(minutes % 60) + "m" : "");
  if (hours < 48) return n(hours) + "h";
  const long long days = hours / 24;
  if (days < 8) return n(days) + "d" + (hours % 24 ? n(hours % 24) + "h" : "");
  if (days < 365 * 2) return n(days) + "d";
  if (days < 365 * 8) return n(days / 365) + "y" + (days % 365 ? n(days % 365) + "d" : "");
  return n(days / 365) + "y";
}

}  // namespace ambient::testing
