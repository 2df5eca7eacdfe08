/* analytics.h - the analytics pool's handlers (routes: routes.manifest).
 *
 * Only the probes are served so far; the events and dashboard routes are
 * declared at the edge ahead of their handlers (SPEC §7). */
#ifndef STOA_ANALYTICS_H
#define STOA_ANALYTICS_H

#include "stoa/app.h"

#endif
