// Timing whole process executions the way a container runtime causes them: fork/exec with an
// environment and stdin, wait for exit. Shared by the benchmarks in bench/.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace ambient::bench {

struct Execution {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::nanoseconds elapsed{0};
  long max_rss_kb = 0;  // the child's peak RSS (getrusage of the waited child)
};

// Runs argv[0] with exactly `env` (KEY=VALUE) and `input` on stdin.
Execution run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              const std::string& input);

double median_ms(std::vector<double> samples);
double percentile_ms(std::vector<double> samples, double p);

}  // namespace ambient::bench
