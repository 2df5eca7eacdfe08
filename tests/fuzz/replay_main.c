/* replay_main.c - runs a fuzz target over every file of a corpus directory,
 * so each harness is built and exercised by `make test` without libFuzzer.
 *
 * Each input is handed over in a buffer of exactly its size (no trailing
 * NUL), as libFuzzer does, so sanitizers catch any read past the end. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input being replayed, so a crash names the corpus file. */
static char current_path[4096];

static void on_crash(int sig)
{
    static const char prefix[] = "replay: crashed on ";
    ssize_t ignored = write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
    ignored = write(STDERR_FILENO, current_path, strlen(current_path));
    ignored = write(STDERR_FILENO, "\n", 1);
    (void)ignored;
    raise(sig); /* the handler was reset: die of the same signal */
}

static void install_crash_handlers(void)
{
#ifdef __SANITIZE_ADDRESS__
    /* ASan owns the fault signals and prints a better report; it names
     * no file, but abort() from an oracle is still caught here. */
    static const int signals[] = {SIGABRT};
#else
    static const int signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#endif
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        sigaction(signals[i], &sa, NULL);
}

/* Reads path whole; returns 0 on success. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fprintf(stderr, "%s: cannot stat\n", path);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    snprintf(current_path, sizeof(current_path), "%s", path);
    uint8_t *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        return -1;
    }
    size_t got = size ? fread(data, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        fprintf(stderr, "%s: short read\n", path);
        free(data);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 1;
    }
    install_crash_handlers();
    struct dirent **names;
    int n = scandir(argv[1], &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int replayed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char path[4096];
        struct stat st;
        if (name[0] != '.' &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", argv[1], name) <
                sizeof(path) &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(path) == 0)
                replayed++;
            else
                failed++;
        }
        free(names[i]);
    }
    free(names);
    printf("%s: replayed %d inputs\n", argv[1], replayed);
    /* An empty corpus would let a harness rot unnoticed. */
    if (replayed == 0) {
        fprintf(stderr, "%s: no inputs\n", argv[1]);
        return 1;
    }
    return failed ? 1 : 0;
}
