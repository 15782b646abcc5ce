/*
 * signals.c - SIGINT/SIGTERM for the CLI: set a flag, interrupt the wait.
 */
#include <signal.h>
#include <string.h>

#include "cli.h"

volatile sig_atomic_t cli_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

void cli_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: zmq_poll must return EINTR so the loops look at cli_stop. */
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
