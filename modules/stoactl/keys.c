/* keys.c - `stoactl keys ensure|rotate`: the token signing keys. */
#include <stdio.h>
#include <string.h>

#include "stoa/keys.h"
#include "stoactl.h"

int stoactl_keys(stoactl_t *ctl, int argc, char **argv)
{
    char err[512] = "";
    if (argc == 1 && strcmp(argv[0], "ensure") == 0) {
        if (stoa_keys_ensure(ctl->conf->keys_dir, ctl->conf->access_token_ttl,
                             err, sizeof(err)) != STOA_OK) {
            fprintf(stderr, "stoactl keys ensure: %s\n", err);
            return 1;
        }
        printf("signing key present in %s\n", ctl->conf->keys_dir);
        return 0;
    }
    if (argc == 1 && strcmp(argv[0], "rotate") == 0) {
        char kid[STOA_JWT_KID_MAX + 1];
        if (stoa_keys_rotate(ctl->conf->keys_dir, ctl->conf->access_token_ttl,
                             kid, err, sizeof(err)) != STOA_OK) {
            fprintf(stderr, "stoactl keys rotate: %s\n", err);
            return 1;
        }
        printf("new signing key %s; previous keys stay published until "
               "their tokens expire\n",
               kid);
        return 0;
    }
    fprintf(stderr, "usage: stoactl keys ensure|rotate\n");
    return 2;
}
