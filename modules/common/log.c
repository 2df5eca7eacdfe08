/* log.c - JSON lines, one write(2) each (or a batch of access lines),
 * O_APPEND so pool processes can share a file. */
#include "stoa/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <stdlib.h>

#include "stoa/buf.h"

int stoa_log_level = STOA_LOG_INFO;

static int log_fd = STDERR_FILENO;
static char log_program[64] = "stoa";
/* getpid(2) is a syscall per call in current glibc: read once. */
static long log_pid;
static _Thread_local const char *log_request_id;

static const char *const level_names[] = {"debug", "info", "notice",
                                          "warn",  "err",  "crit"};

int stoa_log_level_parse(const char *name)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

int stoa_log_open(const char *program, const char *dir, int level)
{
    snprintf(log_program, sizeof(log_program), "%s", program);
    stoa_log_level = level;
    log_pid = (long)getpid();
    if (!dir || !*dir || strcmp(dir, "-") == 0) {
        log_fd = STDERR_FILENO;
        return STOA_OK;
    }
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s.log", dir, program);
    if (n < 0 || (size_t)n >= sizeof(path))
        return STOA_ERROR;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return STOA_ERROR;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    return STOA_OK;
}

void stoa_log_close(void)
{
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
    stoa_log_thread_done();
}

void stoa_log_set_request(const char *request_id)
{
    log_request_id = request_id;
}

/* One reusable line buffer per thread (the jobs worker logs from several):
 * logging does not allocate per line once warm. */
static _Thread_local stoa_buf_t line;

static void pending_forget(void);

void stoa_log_thread_done(void)
{
    pending_forget();
    stoa_buf_free(&line);
}

static void line_begin(int level)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    stoa_buf_reset(&line);
    stoa_buf_printf(&line,
                    "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\","
                    "\"level\":\"%s\",\"program\":\"%s\",\"pid\":%ld",
                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                    tm.tm_min, tm.tm_sec, (long)tv.tv_usec,
                    level_names[level < 0   ? 0
                                : level > 5 ? 5
                                            : level],
                    log_program, log_pid ? log_pid : (long)getpid());
    if (log_request_id) {
        stoa_buf_puts(&line, ",\"request_id\":\"");
        stoa_buf_json_escape(&line, log_request_id, strlen(log_request_id));
        stoa_buf_puts(&line, "\"");
    }
}

static void line_string(const char *key, const char *value)
{
    if (!value)
        return;
    stoa_buf_printf(&line, ",\"%s\":\"", key);
    stoa_buf_json_escape(&line, value, strlen(value));
    stoa_buf_puts(&line, "\"");
}

static void write_all(const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(log_fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere left to report a logging failure */
        off += (size_t)n;
    }
}

/* Buffered access lines: one per thread, all on a list so that
 * stoa_log_flush() can empty them from another thread. */
typedef struct pending_s {
    pthread_mutex_t lock;
    stoa_buf_t buf;
    struct pending_s *next;
} pending_t;

#define PENDING_FLUSH_BYTES 16384

static bool buffering;
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static pending_t *pending_list;
static _Thread_local pending_t *pending;

static void pending_write(pending_t *p)
{
    if (p->buf.len)
        write_all(p->buf.data, p->buf.len);
    stoa_buf_reset(&p->buf);
}

void stoa_log_buffer_access(bool on)
{
    buffering = on;
}

void stoa_log_flush(void)
{
    pthread_mutex_lock(&pending_lock);
    for (pending_t *p = pending_list; p; p = p->next) {
        pthread_mutex_lock(&p->lock);
        pending_write(p);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&pending_lock);
}

static void pending_forget(void)
{
    pending_t *p = pending;
    if (!p)
        return;
    pthread_mutex_lock(&pending_lock);
    for (pending_t **at = &pending_list; *at; at = &(*at)->next)
        if (*at == p) {
            *at = p->next;
            break;
        }
    pthread_mutex_unlock(&pending_lock);
    pending_write(p);
    stoa_buf_free(&p->buf);
    pthread_mutex_destroy(&p->lock);
    free(p);
    pending = NULL;
}

static void line_end(void)
{
    stoa_buf_puts(&line, "}\n");
    /* This thread's buffered access lines go first, to keep its order. */
    if (pending) {
        pthread_mutex_lock(&pending->lock);
        pending_write(pending);
        pthread_mutex_unlock(&pending->lock);
    }
    write_all(line.data, line.len);
}

static void line_end_buffered(void)
{
    stoa_buf_puts(&line, "}\n");
    if (!pending) {
        pending = stoa_xcalloc(1, sizeof(*pending));
        pthread_mutex_init(&pending->lock, NULL);
        stoa_buf_init(&pending->buf);
        pthread_mutex_lock(&pending_lock);
        pending->next = pending_list;
        pending_list = pending;
        pthread_mutex_unlock(&pending_lock);
    }
    pthread_mutex_lock(&pending->lock);
    stoa_buf_append(&pending->buf, line.data, line.len);
    if (pending->buf.len >= PENDING_FLUSH_BYTES)
        pending_write(pending);
    pthread_mutex_unlock(&pending->lock);
}

void stoa_log_write(int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int saved = errno;
    line_begin(level);
    line_string("msg", msg);
    line_end();
    errno = saved;
}

void stoa_log_access(const char *method, const char *route, int status,
                     uint64_t latency_us, const char *user_id)
{
    int level = status >= 500 ? STOA_LOG_ERR : STOA_LOG_INFO;
    if (level < stoa_log_level)
        return;
    line_begin(level);
    line_string("msg", "request");
    line_string("method", method);
    line_string("route", route);
    stoa_buf_printf(&line, ",\"status\":%d,\"latency_us\":%llu", status,
                    (unsigned long long)latency_us);
    line_string("user_id", user_id);
    if (buffering && level < STOA_LOG_ERR)
        line_end_buffered();
    else
        line_end();
}
