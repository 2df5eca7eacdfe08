/* conf.h - configuration: one declarative table of keys.
 *
 * Sources, later ones winning: built-in defaults, the file (`key = value`
 * lines, `#` comments), then environment variables STOA_<KEY>. A secret key
 * may instead be given as `<key>_file = path` (file or env), whose contents
 * (one trailing newline removed) become the value. Unknown keys and bad
 * values are errors naming the key. Everything is checked at load time;
 * nothing is parsed per request. */
#ifndef STOA_CONF_H
#define STOA_CONF_H

#include "stoa/core.h"
#include <stdio.h>

typedef struct stoa_conf_s {
    char *database_url;
    char *redis_url;
    char *public_url;
    char *log_dir;
    long log_level;
    char *keys_dir;
    char *host_cache_file;
    char *jwt_issuer;
    char *jwt_audience;
    long access_token_ttl;
    long refresh_token_ttl;
    long refresh_reuse_interval;
    long argon2_memory_kib;
    long argon2_iterations;
    long argon2_parallelism;
    char *mfa_encryption_key; /* 64 hex digits (32 bytes) */
    char *mfa_issuer;
    char *idempotency_seal_key; /* "" or 64 hex digits (32 bytes) */
    char *stripe_api_base;
    char *stripe_secret_key;
    char *stripe_webhook_secret;
    char *smtp_url;
    char *mail_from;
    char *cors_origins;
    char *webhook_allow_hosts;
    /* nginx's live-channel publisher (a unix socket); "": channel off. */
    char *realtime_socket;
    /* The publisher over HTTP instead (another host's nginx): one URL or
     * several, comma-separated, tried in order; used when realtime_socket
     * is "". */
    char *realtime_publish_url;
    char *metrics_listen;
    char *metrics_dir; /* per-program metrics files (metrics.h); "": off */
    long max_body_bytes;
    long max_event_body_bytes;
    long db_statement_timeout_ms;
    long db_connect_timeout_s;
    long redis_timeout_ms;
    long pool_processes;
    long pool_threads;
    /* "on": handler threads run under SCHED_BATCH (fcgi.c). */
    char *pool_batch_scheduling;
    /* A pool on TCP: seconds a silent or vanished nginx host may hold a
     * connection in the middle of a request (fcgi.c). */
    long pool_peer_timeout_s;
    long db_pool_size;
    long redis_pool_size;
    long jobs_concurrency;
    long jobs_poll_interval_ms;
    /* Days of raw events kept (older ones are refused and dropped with
     * their day partitions), days of rollups kept, and seconds between
     * rollup runs. */
    long analytics_retention_days;
    long analytics_rollup_retention_days;
    long analytics_rollup_interval_s;
    /* Backups and restores (stoactl backup|restore, on the database host):
     * the cluster's data directory and binaries, the OS user owning the
     * cluster (the tools run as that user when stoactl runs as root; ""
     * keeps the caller's), and pgBackRest's config file and stanza ("":
     * no backups). */
    char *pg_data_dir;
    char *pg_bin_dir;
    char *pg_os_user;
    char *backup_config;
    char *backup_stanza;
    /* A streaming replica of Postgres (docs/operations.md, "Replica and
     * fail-over"): "on"/"off" for running one (the dev stack) and for
     * synchronous commits; the replica's libpq connection string (""
     * when there is none); the shell commands `stoactl failover` runs to
     * fence the old primary before promoting (a failure stops the
     * fail-over) and, after database_url names the new primary, to make
     * running programs use it. */
    char *replica;
    char *replica_sync;
    char *replica_url;
    char *replica_fence_command;
    char *replica_repoint_command;
} stoa_conf_t;

/* Fills conf with defaults, then reads path (NULL: defaults and env only)
 * and the environment. On failure returns STOA_DECLINED with a message
 * naming the key (and line) in err; conf then holds what was read and must
 * still be freed. */
STOA_MUSTCHECK int stoa_conf_load(stoa_conf_t *conf, const char *path,
                                  char *err, size_t errlen);

/* Same, from a string (for tests and fuzzing); no environment. */
STOA_MUSTCHECK int stoa_conf_parse(stoa_conf_t *conf, const char *text,
                                   size_t len, char *err, size_t errlen);

void stoa_conf_init(stoa_conf_t *conf);
void stoa_conf_free(stoa_conf_t *conf);

/* Writes `key = value` lines, secrets shown as "<redacted>". */
void stoa_conf_dump(const stoa_conf_t *conf, FILE *out);

#endif
