/* log.h - JSON logging, one object a line.
 *
 * Each line carries time, level, program, pid and the current request id.
 * Lines are written with a single write(2) on an O_APPEND descriptor, so
 * the processes of a pool can share one file without interleaving. Never
 * pass passwords, tokens or secrets to these functions: the message is
 * escaped, not redacted. */
#ifndef STOA_LOG_H
#define STOA_LOG_H

#include "stoa/core.h"

enum {
    STOA_LOG_DEBUG = 0,
    STOA_LOG_INFO,
    STOA_LOG_NOTICE,
    STOA_LOG_WARN,
    STOA_LOG_ERR,
    STOA_LOG_CRIT
};

extern int stoa_log_level;

/* Opens <dir>/<program>.log (dir NULL or "-": standard error). */
STOA_MUSTCHECK int stoa_log_open(const char *program, const char *dir,
                                 int level);
void stoa_log_close(void);
/* Frees the calling thread's line buffer (threads call it before they
 * end; stoa_log_close does it for the thread that closes the log). */
void stoa_log_thread_done(void);

/* Parses "debug".."crit"; returns -1 when the name is unknown. */
int stoa_log_level_parse(const char *name);

/* The request id to stamp on following lines (NULL to clear). Borrowed:
 * must stay valid until cleared. */
void stoa_log_set_request(const char *request_id);

/* Checks the level before the arguments are formatted. */
#define stoa_log(level, ...)                                                   \
    do {                                                                       \
        if ((level) >= stoa_log_level)                                         \
            stoa_log_write((level), __VA_ARGS__);                              \
    } while (0)

void stoa_log_write(int level, const char *fmt, ...) STOA_PRINTF(2, 3);

/* Access lines below err are kept in a per-thread buffer and written in
 * batches (16 KiB, or whenever stoa_log_flush runs: the pools' transport
 * calls it every 200 ms and before exiting), which saves a write(2) per
 * request. Other lines are written at once, after the thread's buffered
 * ones. A process killed with -9 loses at most that buffer. */
void stoa_log_buffer_access(bool on);
void stoa_log_flush(void);

/* The access line of one request. user_id and route may be NULL. */
void stoa_log_access(const char *method, const char *route, int status,
                     uint64_t latency_us, const char *user_id);

#endif
