/* The sandbox ("pause") process of every pod: holds the pod's namespaces open, reaps the zombies
 * re-parented to it (it is PID 1 when the pod shares its PID namespace) and exits 0 on SIGINT or
 * SIGTERM. Built static by scripts/images.sh into registry.k8s.io/pause:3.10. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int signo) {
  (void)signo;
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  const int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    static const char version[] = "pause (ambient-cni) 3.10\n";
    return write(1, version, sizeof version - 1) < 0;
  }
  struct sigaction stop = {.sa_handler = on_stop};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  sigemptyset(&stop.sa_mask);
  sigemptyset(&child.sa_mask);
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    static const char failed[] = "pause: sigaction failed\n";
    (void)!write(2, failed, sizeof failed - 1);
    return 1;
  }
  for (;;) pause();
}
