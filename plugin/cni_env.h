// The CNI_* environment a runtime execs the plugin with, and its validation per verb.
#pragma once

#include <string>

namespace ambient::plugin {

enum class Verb { kAdd, kDel, kCheck, kVersion, kStatus, kGc };

struct CniEnv {
  std::string command;
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string args;
  std::string path;
  bool command_set = false;

  static CniEnv from_process();
};

// Throws CniError (code 4) naming the variable: unknown CNI_COMMAND, a variable the verb needs
// that is missing, a malformed container id or interface name. VERSION validates nothing.
Verb validate_env(const CniEnv& env);

const char* verb_name(Verb verb);

}  // namespace ambient::plugin
