// Runs a process the way a container runtime does: exec with an environment and stdin, wait
// for exit, capture stdout/stderr, elapsed time and peak RSS. Shared by tests and benchmarks.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace ambient::testing {

struct Execution {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::nanoseconds elapsed{0};
  long max_rss_kb = 0;  // the child's peak RSS (getrusage of the waited child)
  bool timed_out = false;
};

// Runs argv[0] with exactly `env` (KEY=VALUE) and `input` on stdin. A child still running after
// `timeout` (0 = none) is killed and reported as timed out.
Execution run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              const std::string& input,
              std::chrono::milliseconds timeout = std::chrono::milliseconds::zero());

// A long-running child (an agent, a stand-in) with stdout/stderr appended to a log file.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~BackgroundProcess();  // SIGKILL + reap if still running
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;
  int pid() const { return pid_; }
  bool running();
  // Sends sig and waits up to `timeout` for the exit; returns the exit status (or -1).
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  int pid_ = -1;
};

double median_ms(std::vector<double> samples);
double percentile_ms(std::vector<double> samples, double p);

}  // namespace ambient::testing
