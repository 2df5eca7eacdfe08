/* main.c - stoactl: the operator CLI, built from the common library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stoa/log.h"
#include "stoa/outbox.h"
#include "stoactl.h"

static void usage(void)
{
    fprintf(
        stderr,
        "usage: stoactl [--config FILE] COMMAND ...\n"
        "commands:\n"
        "  migrate [--dir DIR]      apply pending migrations in order\n"
        "  user create --email E --password-file F [--role R] [--name N]\n"
        "                           create an account (exit 3: email taken)\n"
        "  user set-role --email E --role R\n"
        "                           change a role; revokes the user's sessions\n"
        "  user suspend|activate --email E\n"
        "                           suspend (ends sessions, revokes API keys)\n"
        "                           or reactivate an account\n"
        "  keys ensure              create a signing key if there is none\n"
        "  keys rotate              add a signing key; old ones stay published\n"
        "  plan list                the catalogue\n"
        "  plan seed-demo           add the demo plans free, pro, team\n"
        "  jobs list [--kind K] [--state S] [--limit N]\n"
        "  jobs dead [--limit N]    the outbox, for operators\n"
        "  jobs retry ID            run a dead or waiting job again now\n"
        "  check-config             validate the configuration and print it\n"
        "  backup [--type full|diff|incr]\n"
        "                           take a pgBackRest backup (default incr)\n"
        "  backup list              the backups in the repository\n"
        "  backup check             restore the latest backup into a scratch\n"
        "                           server and count its rows\n"
        "  restore [--time T | --latest]\n"
        "                           stop Postgres, restore and replay to T\n"
        "                           (e.g. 2026-12-01T18:30:00Z) or to the end\n"
        "                           of the archived WAL, start it again\n"
        "  mfa reseal --old-key F --new-key F\n"
        "                           seal every TOTP secret under a new\n"
        "                           mfa_encryption_key (key files: 64 hex)\n"
        "  replica status           the streaming replica: state, sync or\n"
        "                           async, lag in bytes and seconds\n"
        "  failover [--fenced] [--timeout S]\n"
        "                           fence the primary, promote the replica,\n"
        "                           point database_url at it\n"
        "The config defaults to run/stoa.conf when present; every key can\n"
        "be overridden by STOA_<KEY> environment variables.\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (i >= argc) {
        usage();
        return 2;
    }
    if (!config && access("run/stoa.conf", R_OK) == 0)
        config = "run/stoa.conf";

    static stoactl_t ctl;
    char err[512];
    const char *command = argv[i];
    bool check = strcmp(command, "check-config") == 0;
    if (stoa_ctx_open(&ctl.ctx, "stoactl", config, stoactl_statements,
                      stoactl_statements_len, 1, 1,
                      STOA_CTX_LOG_STDERR | STOA_CTX_NO_TIMEOUT |
                          (check ? STOA_CTX_CHECK_ONLY : 0),
                      err, sizeof(err)) != STOA_OK) {
        fprintf(stderr, "stoactl: %s\n", err);
        return 1;
    }
    ctl.conf = &ctl.ctx.conf;
    ctl.config_path = config;
    if (check) {
        stoa_conf_dump(ctl.conf, stdout);
        stoa_conf_free(&ctl.ctx.conf);
        return 0;
    }
    ctl.arena = stoa_arena_create(0);
    ctl.conns.ctx = &ctl.ctx;
    ctl.db = stoa_conns_db(&ctl.conns);
    ctl.kv = stoa_conns_kv(&ctl.conns);
    int rc;
    if (strcmp(command, "migrate") == 0) {
        rc = stoactl_migrate(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "plan") == 0) {
        rc = stoactl_plan(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "jobs") == 0) {
        rc = stoactl_jobs(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "keys") == 0) {
        rc = stoactl_keys(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "user") == 0) {
        rc = stoactl_user(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "backup") == 0) {
        rc = stoactl_backup(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "restore") == 0) {
        rc = stoactl_restore(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "mfa") == 0) {
        rc = stoactl_mfa(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "replica") == 0) {
        rc = stoactl_replica(&ctl, argc - i - 1, argv + i + 1);
    } else if (strcmp(command, "failover") == 0) {
        rc = stoactl_failover(&ctl, argc - i - 1, argv + i + 1);
    } else {
        usage();
        rc = 2;
    }
    stoa_conns_release(&ctl.conns);
    stoa_arena_destroy(ctl.arena);
    stoa_ctx_close(&ctl.ctx);
    return rc;
}
