/* email.c - `email.send` jobs: render an embedded template, build a MIME
 * message, deliver it over SMTP with libcurl or into a directory
 * (smtp_url = file:///dir, the dev default). */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs.h"
#include "jobs_templates.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/mail.h"
#include "stoa/markdown.h"
#include "stoa/metrics.h"

static const jobs_template_t *find_template(const char *name)
{
    for (size_t i = 0; i < jobs_templates_len; i++)
        if (strcmp(jobs_templates[i].name, name) == 0)
            return &jobs_templates[i];
    return NULL;
}

/* Replaces {{key}} with data[key], or else extra[key] (a string or an
 * integer; extra may be NULL); html escapes values, except {{{key}}}'s
 * (HTML parts only); one_line drops CR/LF (headers). A missing key is an
 * error. */
static int render(const char *tmpl, const stoa_json_t *data,
                  const stoa_json_t *extra, bool html, bool one_line,
                  stoa_buf_t *out, char *err, size_t errlen)
{
    const char *p = tmpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            stoa_buf_puts(out, p);
            break;
        }
        stoa_buf_append(out, p, (size_t)(open - p));
        /* {{{key}}}: a value that is HTML already (of our own making, such
         * as an update's rendered body), inserted as is; HTML parts only. */
        bool raw = open[2] == '{';
        if (raw && !html) {
            snprintf(err, errlen, "raw placeholder outside an HTML part");
            return STOA_DECLINED;
        }
        if (raw)
            open++;
        const char *close = strstr(open + 2, raw ? "}}}" : "}}");
        if (!close) {
            snprintf(err, errlen, "unterminated placeholder in template");
            return STOA_DECLINED;
        }
        char key[64];
        size_t klen = (size_t)(close - open - 2);
        if (klen == 0 || klen >= sizeof(key)) {
            snprintf(err, errlen, "bad placeholder in template");
            return STOA_DECLINED;
        }
        memcpy(key, open + 2, klen);
        key[klen] = '\0';
        const stoa_json_t *v = stoa_json_get(data, key);
        if (!v)
            v = stoa_json_get(extra, key);
        char number[32];
        const char *value = stoa_json_string(v);
        int64_t n;
        if (!value && stoa_json_integer(v, &n)) {
            snprintf(number, sizeof(number), "%lld", (long long)n);
            value = number;
        }
        if (!value) {
            snprintf(err, errlen, "template value '%s' missing", key);
            return STOA_DECLINED;
        }
        if (raw) {
            stoa_buf_puts(out, value);
            close++;
        } else if (html) {
            stoa_markdown_escape(out, value, strlen(value));
        } else if (one_line) {
            for (const char *c = value; *c; c++)
                if (*c != '\r' && *c != '\n')
                    stoa_buf_append(out, c, 1);
        } else {
            stoa_buf_puts(out, value);
        }
        p = close + 2;
    }
    return STOA_OK;
}

/* "Name <addr@host>" or "addr@host" -> the address. */
static bool mailbox_address(const char *from, char *out, size_t cap)
{
    const char *lt = strchr(from, '<');
    const char *start = lt ? lt + 1 : from;
    size_t len = lt ? strcspn(start, ">") : strlen(start);
    if (len == 0 || len >= cap || !memchr(start, '@', len))
        return false;
    memcpy(out, start, len);
    out[len] = '\0';
    return true;
}

static bool header_safe(const char *s)
{
    return !strpbrk(s, "\r\n");
}

static bool ascii_only(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Appends base64 in lines of 76 characters, CRLF-terminated. */
static void base64_lines(stoa_buf_t *out, const char *data, size_t len)
{
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        char line[80];
        stoa_b64_encode(data + off, n, line);
        stoa_buf_puts(out, line);
        stoa_buf_puts(out, "\r\n");
    }
}

/* Text to CRLF line endings, as SMTP and RFC 5322 require. */
static void crlf(stoa_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            stoa_buf_puts(out, "\r\n");
        else if (*s != '\r')
            stoa_buf_append(out, s, 1);
    }
}

static void wipe_free(stoa_buf_t *b)
{
    if (b->data)
        stoa_wipe(b->data, b->len);
    stoa_buf_free(b);
}

static int build_message(const jobs_thread_t *t, const jobs_template_t *tp,
                         const char *to, const stoa_json_t *data,
                         const stoa_json_t *extra, const char *message_key,
                         stoa_buf_t *msg, char *err, size_t errlen)
{
    stoa_buf_t subject, text, html, text_crlf, html_crlf;
    stoa_buf_init(&subject);
    stoa_buf_init(&text);
    stoa_buf_init(&html);
    stoa_buf_init(&text_crlf);
    stoa_buf_init(&html_crlf);
    int rc = STOA_DECLINED;
    if (render(tp->subject, data, extra, false, true, &subject, err, errlen) !=
            STOA_OK ||
        render(tp->text, data, extra, false, false, &text, err, errlen) !=
            STOA_OK ||
        render(tp->html, data, extra, true, false, &html, err, errlen) !=
            STOA_OK)
        goto out;
    char from_addr[256];
    const char *at = NULL;
    if (!mailbox_address(t->conf->mail_from, from_addr, sizeof(from_addr)) ||
        !header_safe(t->conf->mail_from) || !header_safe(to)) {
        snprintf(err, errlen, "bad mail_from or recipient");
        goto out;
    }
    at = strchr(from_addr, '@');
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    uint8_t rnd[12];
    char boundary[40];
    stoa_random_bytes(rnd, sizeof(rnd));
    stoa_hex_encode(rnd, sizeof(rnd), boundary);

    stoa_buf_printf(msg, "Date: %s\r\nFrom: %s\r\nTo: %s\r\n", date,
                    t->conf->mail_from, to);
    if (ascii_only(subject.data ? subject.data : "")) {
        stoa_buf_printf(msg, "Subject: %s\r\n",
                        subject.data ? subject.data : "");
    } else {
        /* RFC 2047 encoded word for non-ASCII subjects. */
        char *enc = stoa_xmalloc(stoa_b64_encoded_len(subject.len) + 1);
        stoa_b64_encode(subject.data, subject.len, enc);
        stoa_buf_printf(msg, "Subject: =?UTF-8?B?%s?=\r\n", enc);
        free(enc);
    }
    stoa_buf_printf(msg,
                    "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: multipart/alternative; boundary=\"%s\"\r\n"
                    "\r\n",
                    message_key, at + 1, boundary);
    crlf(&text_crlf, text.data ? text.data : "");
    crlf(&html_crlf, html.data ? html.data : "");
    stoa_buf_printf(msg,
                    "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n",
                    boundary);
    base64_lines(msg, text_crlf.data, text_crlf.len);
    stoa_buf_printf(msg,
                    "--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n",
                    boundary);
    base64_lines(msg, html_crlf.data, html_crlf.len);
    stoa_buf_printf(msg, "--%s--\r\n", boundary);
    rc = STOA_OK;
out:
    /* A mailed link's token lives in these: none outlives the message. */
    wipe_free(&subject);
    wipe_free(&text);
    wipe_free(&html);
    wipe_free(&text_crlf);
    wipe_free(&html_crlf);
    return rc;
}

/* file:///dir: one <message_key>.eml per message, written atomically, so
 * a retried job rewrites the same file instead of adding a second. */
static int deliver_file(const char *dir, const char *message_key,
                        const stoa_buf_t *msg, char *err, size_t errlen)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, message_key);
    snprintf(path, sizeof(path), "%s/%s.eml", dir, message_key);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot write to %s: %s", dir, strerror(errno));
        return STOA_AGAIN;
    }
    bool ok = fwrite(msg->data, 1, msg->len, f) == msg->len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s", path);
        return STOA_AGAIN;
    }
    return STOA_OK;
}

typedef struct {
    const stoa_buf_t *msg;
    size_t off;
} upload_t;

static size_t upload_read(char *buf, size_t size, size_t nitems, void *arg)
{
    upload_t *u = arg;
    size_t room = size * nitems, left = u->msg->len - u->off;
    size_t n = left < room ? left : room;
    memcpy(buf, u->msg->data + u->off, n);
    u->off += n;
    return n;
}

static int deliver_smtp(const stoa_conf_t *conf, const char *to,
                        const stoa_buf_t *msg, char *err, size_t errlen)
{
    char from_addr[256];
    if (!mailbox_address(conf->mail_from, from_addr, sizeof(from_addr))) {
        snprintf(err, errlen, "mail_from has no address");
        return STOA_DECLINED;
    }
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(err, errlen, "curl init failed");
        return STOA_AGAIN;
    }
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    char from_arg[260];
    snprintf(from_arg, sizeof(from_arg), "<%s>", from_addr);
    upload_t u = {msg, 0};
    /* smtp://host:port?starttls asks for STARTTLS; smtps:// is TLS from
     * the first byte. The query is ours, not the server's: strip it. */
    char url[2048];
    snprintf(url, sizeof(url), "%s", conf->smtp_url);
    char *q = strchr(url, '?');
    bool starttls = q && strstr(q, "starttls");
    if (q)
        *q = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    if (starttls)
        curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from_arg);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OK)
        return STOA_OK;
    snprintf(err, errlen, "smtp: %s (reply %ld)", curl_easy_strerror(rc), code);
    /* 5xx replies are permanent (bad recipient, refused); others retry. */
    return code >= 500 && code < 600 ? STOA_DECLINED : STOA_AGAIN;
}

static int mail_send(jobs_thread_t *t, const char *name, const char *to,
                     const stoa_json_t *data, const stoa_json_t *extra,
                     const char *message_key, char *err, size_t errlen)
{
    const jobs_template_t *tp = find_template(name);
    if (!tp) {
        snprintf(err, errlen, "no mail template '%.64s'", name);
        return STOA_DECLINED;
    }
    if (!stoa_json_is_object(data)) {
        snprintf(err, errlen, "mail data is not an object");
        return STOA_DECLINED;
    }
    stoa_buf_t msg;
    stoa_buf_init(&msg);
    int rc =
        build_message(t, tp, to, data, extra, message_key, &msg, err, errlen);
    if (rc == STOA_OK) {
        const char *url = t->conf->smtp_url;
        if (strncmp(url, "file://", 7) == 0)
            rc = deliver_file(url + 7, message_key, &msg, err, errlen);
        else
            rc = deliver_smtp(t->conf, to, &msg, err, errlen);
        stoa_metrics_count(rc == STOA_OK ? STOA_METRIC_MAIL_SENT
                                         : STOA_METRIC_MAIL_FAILED);
    }
    wipe_free(&msg);
    return rc;
}

int jobs_mail_send(jobs_thread_t *t, const char *name, const char *to,
                   const stoa_json_t *data, const char *message_key, char *err,
                   size_t errlen)
{
    return mail_send(t, name, to, data, NULL, message_key, err, errlen);
}

/* A mail that carries a single-use link: the token is made here, stored
 * as its hash in the transaction, and the transaction commits only once
 * the mail is out. A failed send rolls the token back; a retry makes a
 * new one. So the token is never in the outbox, and no link is live that
 * no mail carries (but for a commit lost after the send, which leaves a
 * dead link in that mail and sends a working one on the retry). */
static int send_with_link(jobs_thread_t *t, const char *tmpl, const char *to,
                          const stoa_json_t *data, const stoa_mail_link_t *link,
                          const char *user_id, const char *message_key,
                          char *err, size_t errlen)
{
    if (strcmp(tmpl, link->purpose) != 0) {
        snprintf(err, errlen, "a %s link in a %.64s mail", link->purpose, tmpl);
        return STOA_DECLINED;
    }
    char *token = stoa_random_token(t->arena, 32);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", link->ttl_s);
    const char *params[] = {stoa_mail_link_token_hash(t->arena, token), user_id,
                            link->purpose, ttl};
    stoa_db_result_t *res;
    int rc = stoa_db_begin(t->db);
    if (rc == STOA_OK)
        rc = stoa_db_exec(t->db, t->arena, JOBS_SQL(MAIL_LINK_INSERT), params,
                          &res);
    if (rc != STOA_OK) {
        snprintf(err, errlen, "could not store the link: %s",
                 stoa_db_last_error(t->db));
        stoa_db_rollback(t->db);
        return rc == STOA_DECLINED ? STOA_DECLINED : STOA_AGAIN;
    }
    if (stoa_db_rows(res) == 0) {
        /* The account is gone or suspended since: nothing to send. */
        stoa_db_rollback(t->db);
        stoa_log(STOA_LOG_INFO, "no %s link: the account is not active",
                 link->purpose);
        return STOA_OK;
    }
    stoa_buf_t extra_text;
    stoa_buf_init(&extra_text);
    stoa_jw_t *w = stoa_jw_new(&extra_text);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "link");
    stoa_jw_string(w,
                   stoa_arena_sprintf(t->arena, "%s%s?token=%s",
                                      t->conf->public_url, link->path, token));
    stoa_jw_kv_integer(w, "expires_in_minutes", link->ttl_s / 60);
    stoa_jw_kv_integer(w, "expires_in_hours", link->ttl_s / 3600);
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    stoa_json_t *extra = NULL;
    char perr[128];
    if (!ok || stoa_json_parse(t->arena, extra_text.data, extra_text.len,
                               STOA_JSON_MAX_DEPTH, &extra, perr,
                               sizeof(perr)) != STOA_OK) {
        snprintf(err, errlen, "could not build the link");
        rc = STOA_ERROR;
    } else {
        rc = mail_send(t, tmpl, to, data, extra, message_key, err, errlen);
    }
    wipe_free(&extra_text);
    stoa_wipe(token, strlen(token));
    if (rc != STOA_OK) {
        stoa_db_rollback(t->db);
        return rc == STOA_ERROR ? STOA_AGAIN : rc;
    }
    if (stoa_db_commit(t->db) != STOA_OK) {
        snprintf(err, errlen, "sent, but the link was not stored: %s",
                 stoa_db_last_error(t->db));
        return STOA_AGAIN;
    }
    return STOA_OK;
}

int jobs_email_send(jobs_thread_t *t, const jobs_job_t *job, char *err,
                    size_t errlen)
{
    /* The payload's shape is stoa/mail.h's, whoever wrote it. */
    stoa_mail_job_t mail;
    const char *why = NULL;
    if (stoa_mail_read(job->payload, &mail, &why) != STOA_OK) {
        snprintf(err, errlen, "%s", why);
        return STOA_DECLINED;
    }
    /* The job names the message: a retry is the same message (same
     * Message-ID, same file), and ids of other databases do not clash. */
    char *key =
        stoa_arena_sprintf(t->arena, "stoa-%s-%s", job->id, job->created);
    if (mail.link)
        return send_with_link(t, mail.template_name, mail.to, mail.data,
                              mail.link, mail.link_user_id, key, err, errlen);
    return jobs_mail_send(t, mail.template_name, mail.to, mail.data, key, err,
                          errlen);
}
