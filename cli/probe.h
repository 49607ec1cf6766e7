/* `ktlsx probe`: report what this kernel's TLS offload supports. */
#ifndef KTLSX_CLI_PROBE_H
#define KTLSX_CLI_PROBE_H

/* argv[0] is "probe".  Prints one "key: value" line per capability and
 * returns the exit status: 0 when kernel TLS is usable (the tls ULP
 * attaches and TLS 1.3 AES-128-GCM is accepted for TX and RX), 1 when it
 * is not, 2 on a bad command line. */
int ktlsx_cmd_probe(int argc, char **argv);

#endif
