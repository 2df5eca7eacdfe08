/* jobs_templates.h - mail templates embedded at build time from
 * modules/jobs/templates/ (scripts/gen-templates.sh). */
#ifndef JOBS_TEMPLATES_H
#define JOBS_TEMPLATES_H

#include <stddef.h>

typedef struct {
    const char *name;
    const char *subject; /* may hold {{placeholders}} */
    const char *text;
    const char *html;
} jobs_template_t;

extern const jobs_template_t jobs_templates[];
extern const size_t jobs_templates_len;

#endif
