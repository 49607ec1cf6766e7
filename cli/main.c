/* ktlsx: command-line front end of the ktlsx TLS engine. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char main_usage[] =
    "usage: ktlsx COMMAND [options]\n"
    "\n"
    "Commands:\n"
    "  client HOST:PORT         connect, handshake, relay stdin/stdout\n"
    "  server --listen ADDR:PORT --cert FILE --key FILE\n"
    "                           accept connections (echo, fixed reply, file\n"
    "                           or stdio)\n"
    "  probe                    report what this host supports (kernel TLS, ...)\n"
    "  adopt --fd N             continue a connection handed over on unix socket\n"
    "                           N (see client --handoff)\n"
    "\n"
    "  --version                print the version\n"
    "  --help                   show this help; COMMAND --help for its options\n";

int main(int argc, char **argv)
{
    const char *command;

    /* A peer that closes early must surface as a write error (EPIPE),
     * reported and turned into an exit status, not kill the process. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        fputs(main_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    command = argv[1];
    if (strcmp(command, "--version") == 0 || strcmp(command, "-V") == 0) {
        printf("ktlsx %s\n", KTLSX_VERSION_STRING);
        return CLI_EXIT_OK;
    }
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
        strcmp(command, "help") == 0) {
        fputs(main_usage, stdout);
        return CLI_EXIT_OK;
    }
    /* Subcommands see their own name as argv[0], as getopt expects. */
    if (strcmp(command, "client") == 0)
        return ktlsx_cmd_client(argc - 1, argv + 1);
    if (strcmp(command, "server") == 0)
        return ktlsx_cmd_server(argc - 1, argv + 1);
    if (strcmp(command, "adopt") == 0)
        return ktlsx_cmd_adopt(argc - 1, argv + 1);
    if (strcmp(command, "probe") == 0)
        return ktlsx_cmd_probe(argc - 1, argv + 1);
    fprintf(stderr, "ktlsx: unknown command '%s'\n", command);
    fputs(main_usage, stderr);
    return CLI_EXIT_USAGE;
}
