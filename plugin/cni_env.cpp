#include "plugin/cni_env.h"

#include <cctype>
#include <cstdlib>

#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

std::string getenv_or_empty(const char* name, bool* set = nullptr) {
  const char* v = std::getenv(name);
  if (set != nullptr) *set = v != nullptr;
  return v == nullptr ? std::string() : std::string(v);
}

[[noreturn]] void invalid(const std::string& var, const std::string& what) {
  throw CniError(cni_code::kInvalidEnvironment, var + " " + what);
}

void require(const std::string& value, const char* var) {
  if (value.empty()) invalid(var, "is required but not set");
}

// libcni: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$
void check_container_id(const std::string& id) {
  const auto ok = [](char c, bool first) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           (!first && (c == '_' || c == '.' || c == '-'));
  };
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (!ok(id[i], i == 0))
      invalid("CNI_CONTAINERID", "\"" + id + "\" is not a valid container id");
  }
}

// Linux interface names: at most 15 bytes, no '/', ':' or whitespace, not "." or "..".
void check_ifname(const std::string& name) {
  const auto bad = [&](const std::string& why) {
    invalid("CNI_IFNAME", "\"" + name + "\" is not a valid interface name: " + why);
  };
  if (name.size() > 15) bad("longer than 15 characters");
  if (name == "." || name == "..") bad("reserved name");
  for (char c : name) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) {
      bad("contains '/', ':' or whitespace");
    }
  }
}

}  // namespace

CniEnv CniEnv::from_process() {
  CniEnv env;
  env.command = getenv_or_empty("CNI_COMMAND", &env.command_set);
  env.container_id = getenv_or_empty("CNI_CONTAINERID");
  env.netns = getenv_or_empty("CNI_NETNS");
  env.ifname = getenv_or_empty("CNI_IFNAME");
  env.args = getenv_or_empty("CNI_ARGS");
  env.path = getenv_or_empty("CNI_PATH");
  return env;
}

const char* verb_name(Verb verb) {
  switch (verb) {
    case Verb::kAdd:
      return "ADD";
    case Verb::kDel:
      return "DEL";
    case Verb::kCheck:
      return "CHECK";
    case Verb::kVersion:
      return "VERSION";
    case Verb::kStatus:
      return "STATUS";
    case Verb::kGc:
      return "GC";
  }
  return "?";
}

Verb validate_env(const CniEnv& env) {
  Verb verb;
  if (env.command == "ADD") {
    verb = Verb::kAdd;
  } else if (env.command == "DEL") {
    verb = Verb::kDel;
  } else if (env.command == "CHECK") {
    verb = Verb::kCheck;
  } else if (env.command == "VERSION") {
    return Verb::kVersion;  // runtimes send "dummy" values: validate nothing
  } else if (env.command == "STATUS") {
    verb = Verb::kStatus;
  } else if (env.command == "GC") {
    verb = Verb::kGc;
  } else {
    invalid("CNI_COMMAND", "\"" + env.command + "\" is not a CNI verb");
  }
  if (verb == Verb::kAdd || verb == Verb::kDel || verb == Verb::kCheck) {
    require(env.container_id, "CNI_CONTAINERID");
    check_container_id(env.container_id);
    require(env.ifname, "CNI_IFNAME");
    check_ifname(env.ifname);
  }
  if (verb == Verb::kAdd || verb == Verb::kCheck) require(env.netns, "CNI_NETNS");
  require(env.path, "CNI_PATH");
  return verb;
}

}  // namespace ambient::plugin
