/* rss_probe OUT TARGET [ARGS...]: runs TARGET with this process's stdin/stdout/stderr and
 * environment, then writes the child's peak RSS (KiB) to OUT. Static and tiny on purpose: a
 * child's ru_maxrss starts from the RSS of the process image it exec()s from, so measuring from
 * a big benchmark process would report the benchmark, not the plugin. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rss_probe OUT TARGET [ARGS...]\n");
    return 2;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    execv(argv[2], argv + 2);
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) return 2;
  FILE* out = fopen(argv[1], "w");
  if (out != NULL) {
    fprintf(out, "%ld\n", ru.ru_maxrss);
    fclose(out);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
