/* test_fuzz_regress.c: replays every saved fuzz input without libFuzzer, so
 * what `make fuzz` found stays fixed under `make test` and `make asan-test`.
 *
 * Every target tests/fuzz/fuzz_<name>.c is compiled in here (FUZZ_REPLAY
 * turns off its libFuzzer entry point) and fed each file of
 * tests/fuzz/corpus/<name>/ (the seeds) and tests/fuzz/regress/<name>/ (the
 * crashes found, minimised). The same invariants as in fuzzing apply, so a
 * parser that crashes, trips ASan/UBSan, exits (die() inside a library),
 * hangs (60 s) or breaks a target's checks fails here, naming the input.
 *
 * Each target runs in a child process, the inputs one after another; before
 * each input the child writes its index to a pipe, so when the child dies the
 * parent knows which input killed it, and goes on from the next one in a new
 * child. A PASS line per target, or a FAIL line per failing input. */
#define FUZZ_REPLAY
#include "check.h"

#include "fuzz/fuzz_config.c"
#include "fuzz/fuzz_corpus.c"
#include "fuzz/fuzz_kde_null.c"
#include "fuzz/fuzz_policy.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_st_index.c"
#include "fuzz/fuzz_sweep.c"
#include "fuzz/fuzz_token_ids.c"
#include "fuzz/fuzz_tokenize.c"
#include "fuzz/fuzz_tokenizer_json.c"
#include "fuzz/fuzz_trace.c"
#include "fuzz/fuzz_trace_image.c"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

typedef struct {
    const char *name;
    int (*fn)(const uint8_t *data, size_t size);
} regress_target;

/* one row per tests/fuzz/fuzz_*.c: test_targets_listed checks none is missing */
static const regress_target regress_targets[] = {
    {"config", fuzz_config},
    {"corpus", fuzz_corpus},
    {"kde_null", fuzz_kde_null},
    {"policy", fuzz_policy},
    {"safetensors", fuzz_safetensors},
    {"st_index", fuzz_st_index},
    {"sweep", fuzz_sweep},
    {"token_ids", fuzz_token_ids},
    {"tokenize", fuzz_tokenize},
    {"tokenizer_json", fuzz_tokenizer_json},
    {"trace", fuzz_trace},
    {"trace_image", fuzz_trace_image},
};
#define N_TARGETS ((int)(sizeof regress_targets / sizeof regress_targets[0]))

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the files of dir (sorted; dot files and README* skipped), appended to list */
static void list_files(const char *dir, char ***list, int *n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    int first = *n;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0) continue;
        char *p = olmoe_path_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        *list = xrealloc(*list, (size_t)(*n + 1) * sizeof **list);
        (*list)[(*n)++] = p;
    }
    closedir(d);
    qsort(*list + first, (size_t)(*n - first), sizeof **list, cmp_str);
}

/* child: every input in turn, its index to fd first */
static void replay_child(const regress_target *t, char **files, int n, int fd) {
    for (int i = 0; i < n; i++) {
        if (write(fd, &i, sizeof i) != (ssize_t)sizeof i) _exit(3);
        char *data;
        size_t size;
        if (olmoe_read_file(files[i], &data, &size) != 0) {
            fprintf(stderr, "%s\n", olmoe_error());
            _exit(4);
        }
        alarm(60);
        t->fn((const uint8_t *)data, size);
        alarm(0);
        free(data);
    }
    fflush(NULL);
    _exit(0);
}

/* runs inputs [from, n) in a child; returns the index of the input that
 * killed it (why in why[]), or -1 when all passed */
static int replay_from(const regress_target *t, char **files, int n, int from, char *why,
                       size_t why_n) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        replay_child(t, files + from, n - from, fds[1]);
    }
    close(fds[1]);
    int last = -1, k;
    while (read(fds[0], &k, sizeof k) == (ssize_t)sizeof k) last = k;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return -1;
    if (WIFSIGNALED(st))
        snprintf(why, why_n, "%s", WTERMSIG(st) == SIGALRM ? "hung for 60 s"
                                   : WTERMSIG(st) == SIGABRT ? "aborted (a check or ASan)"
                                                             : strsignal(WTERMSIG(st)));
    else
        snprintf(why, why_n, "exited with %d (die() in a library?)", WEXITSTATUS(st));
    return last < 0 ? from : from + last;
}

/* one PASS line, or a FAIL line per input that fails (the replay goes on
 * after each, in a fresh child) */
static void replay_target(const regress_target *t) {
    char **files = NULL;
    int n = 0;
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", t->name);
    list_files(dir, &files, &n);
    int seeds = n;
    snprintf(dir, sizeof dir, "tests/fuzz/regress/%s", t->name);
    list_files(dir, &files, &n);
    int failed = 0;
    if (n == 0) {
        printf("FAIL test_fuzz_regress/%s: no inputs in tests/fuzz/corpus/%s\n", t->name, t->name);
        failed = 1;
    }
    for (int from = 0; from < n;) {
        char why[96];
        int bad = replay_from(t, files, n, from, why, sizeof why);
        if (bad < 0) break;
        printf("FAIL test_fuzz_regress/%s: %s: %s\n", t->name, files[bad], why);
        fflush(stdout);
        failed++;
        from = bad + 1;
    }
    if (failed) {
        check_fail_total += failed;
    } else {
        printf("PASS test_fuzz_regress/%s (%d seeds, %d regressions)\n", t->name, seeds, n - seeds);
        check_pass_total++;
    }
    fflush(stdout);
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

/* every tests/fuzz/fuzz_<name>.c has its row above */
static void test_targets_listed(void) {
    DIR *d = opendir("tests/fuzz");
    CHECK(d != NULL, "tests/fuzz: run from the repository root");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "fuzz_", 5) != 0 || n < 8 || strcmp(e->d_name + n - 2, ".c") != 0)
            continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(n - 7), e->d_name + 5);
        int found = 0;
        for (int i = 0; i < N_TARGETS; i++) found |= strcmp(regress_targets[i].name, name) == 0;
        CHECK(found, "tests/fuzz/%s is not replayed: add it to test_fuzz_regress.c", e->d_name);
    }
    closedir(d);
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_set_quiet(1);
    fuzz_dir(); /* made here, so the children share it and the parent removes it */
    RUN(test_targets_listed);
    for (int i = 0; i < N_TARGETS; i++)
        if (argc < 2 || strcmp(argv[1], regress_targets[i].name) == 0)
            replay_target(&regress_targets[i]);
    return check_summary();
}
