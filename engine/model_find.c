/* model_find.c: what --model names, as an absolute checkpoint directory.
 * A directory is taken as it is (made absolute, so that a trace that stores
 * it can be used from anywhere); a bare name such as olmoe-brown is looked
 * up among the bundled models that `make install` puts in
 * PREFIX/share/olmoe-routing/models/ (found from the running command's own
 * path, PREFIX/bin/olmoe-*, so an installed tree can move) and in the
 * directory $OLMOE_DATADIR/models when that is set. */
#include "common.h"
#include "model.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* PREFIX/share/olmoe-routing of the running command (PREFIX/bin/olmoe-x), or NULL */
static char *share_dir(void) {
    const char *env = getenv("OLMOE_DATADIR");
    if (env && *env) return xstrdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0'; /* PREFIX/bin */
    slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = '\0'; /* PREFIX */
    char *share = olmoe_path_join(exe, "share/olmoe-routing");
    return share;
}

char *olmoe_model_bundled_dir(const char *name) {
    char *share = share_dir();
    if (!share) return NULL;
    char *models = olmoe_path_join(share, "models"), *dir = olmoe_path_join(models, name);
    free(share);
    free(models);
    if (is_dir(dir)) return dir;
    free(dir);
    return NULL;
}

char *olmoe_model_find(const char *name) {
    if (!name || !*name) {
        olmoe_errorf("no model given");
        return NULL;
    }
    char abs[PATH_MAX];
    if (is_dir(name)) {
        if (!realpath(name, abs)) {
            olmoe_errorf("%s: %s", name, strerror(errno));
            return NULL;
        }
        return xstrdup(abs);
    }
    if (!strchr(name, '/')) {
        char *dir = olmoe_model_bundled_dir(name);
        if (dir) return dir;
    }
    struct stat st;
    int exists = stat(name, &st) == 0;
    olmoe_errorf("%s: %s; --model needs a local checkpoint directory (config.json, "
                 "*.safetensors, tokenizer.json), e.g. OLMoE from the Hugging Face hub: "
                 "huggingface-cli download allenai/OLMoE-1B-7B-0924 --local-dir DIR "
                 "(or git clone https://huggingface.co/allenai/OLMoE-1B-7B-0924 with git-lfs); "
                 "the bundled model is --model olmoe-brown",
                 name, exists ? "not a directory" : "no such directory (nor a bundled model)");
    return NULL;
}

char *olmoe_model_for_trace(const char *given, const char *recorded, const char *trace_path) {
    if (given) return olmoe_model_find(given);
    if (!recorded || !*recorded) {
        olmoe_errorf("%s records no model directory: give --model DIR", trace_path);
        return NULL;
    }
    char abs[PATH_MAX];
    if (is_dir(recorded) && realpath(recorded, abs)) return xstrdup(abs);
    /* a relative path of an older trace: relative to the trace's directory */
    char *copy = xstrdup(trace_path), *slash = strrchr(copy, '/');
    if (recorded[0] != '/' && slash) {
        *slash = '\0';
        char *joined = olmoe_path_join(copy, recorded);
        int ok = is_dir(joined) && realpath(joined, abs);
        free(joined);
        if (ok) {
            free(copy);
            return xstrdup(abs);
        }
    }
    free(copy);
    olmoe_errorf("%s was captured with the model %s, which is not there: give --model DIR",
                 trace_path, recorded);
    return NULL;
}
