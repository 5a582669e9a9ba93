// Text the node CLI prints for people: tables and times (`status`, `explain`). Pure functions of
// their input (and of `now`), so tests pin them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "rundir/messages.h"

namespace ambient::node {

// Columns padded to the widest cell; the last column is not padded.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// "2026-12-01T10:00:00Z (5m12s ago)"; "-" for 0.
std::string when(std::int64_t unix_seconds, std::chrono::system_clock::time_point now);

// `ambient-cni-node status`: a summary line, then one row per pod.
std::string render_agent_status(
    const rundir::AgentView& view,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace ambient::node
