/* generate_h5.c: the output of olmoe-capture --generate --out FILE, format
 * "olmoe-generate" version 1 (layout in olmoe-capture(1)): root attributes
 * for provenance, then /generate/<i>/ per prompt. The generic olmoe_h5_*
 * helpers write everything but the two integer kinds they lack (uint8
 * counts, int16 expert ids), written here directly. */
#include "generate.h"

#include "traces.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* a new dataset of rank <= 3 of an integer type the helpers lack */
static int write_int(const char *path, hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                     const int64_t *dims, const void *data) {
    hid_t sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t d[3];
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) d[i] = (hsize_t)dims[i], n *= d[i];
    H5_CHECK(sp = H5Screate_simple(rank, d, NULL), "%s: %s", path, name);
    H5_CHECK(ds = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "%s: %s", path, name);
    if (n > 0) H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "%s: %s", path, name);
    H5_CHECK(H5Dclose(ds), "%s: %s", path, name);
    H5_CHECK(H5Sclose(sp), "%s: %s", path, name);
    return 0;
fail:
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return -1;
}

static int write_root(hid_t f, const olmoe_generate_meta *m, int n_prompts) {
    char now[32];
    time_t sec = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&sec, &tm));
    const struct {
        const char *name, *value;
    } strs[] = {
        {"format", OLMOE_GENERATE_FORMAT}, {"tool_version", OLMOE_VERSION}, {"command", m->command},
        {"created", now}, {"model_dir", m->model_dir}, {"model_checksum", m->model_checksum},
        {"tokenizer_checksum", m->tokenizer_checksum}, {"config_json", m->config_json},
        {"policy", m->policy}, {"device", m->device}, {"compute_dtype", m->compute_dtype},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (olmoe_h5_set_attr_str(f, ".", strs[i].name, strs[i].value ? strs[i].value : "") != 0) return -1;
    const struct {
        const char *name;
        long value;
    } ints[] = {
        {"format_version", OLMOE_GENERATE_FORMAT_VERSION}, {"n_layers", m->n_layers},
        {"n_experts", m->n_experts}, {"max_k", m->max_k}, {"n_new", m->n_new}, {"n_prompts", n_prompts},
        {"stop_at_eos", m->stop_at_eos}, {"eos_id", m->eos_id}, {"kv_cache", m->kv_cache},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (olmoe_h5_set_attr_i32(f, ".", ints[i].name, (int32_t)ints[i].value) != 0) return -1;
    return 0;
}

static int write_prompt(const char *path, hid_t f, int i, const olmoe_prompt *p, const olmoe_generation *g,
                        const char *continuation) {
    char grp[48], name[64];
    snprintf(grp, sizeof grp, "generate/%d", i);
    if (olmoe_h5_make_groups(f, grp) != 0) return -1;
    int64_t n = g->n, L = g->L, K = g->max_k;
    double sum_k = 0;
    for (int64_t j = 0; j < n * L; j++) sum_k += g->n_experts[j];
    int64_t d1 = p->n, d2[2] = {n, L}, d3[3] = {n, L, K};
    snprintf(name, sizeof name, "%s/prompt", grp);
    if (olmoe_h5_write(f, name, OLMOE_H5_I32, 1, &d1, p->ids) != 0) return -1;
    snprintf(name, sizeof name, "%s/generated", grp);
    if (olmoe_h5_write(f, name, OLMOE_H5_I32, 1, &n, g->tokens) != 0) return -1;
    snprintf(name, sizeof name, "%s/weights", grp);
    if (olmoe_h5_write(f, name, OLMOE_H5_F32, 3, d3, g->weights) != 0) return -1;
    snprintf(name, sizeof name, "%s/experts", grp);
    if (write_int(path, f, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, d2, g->n_experts) != 0) return -1;
    snprintf(name, sizeof name, "%s/chosen", grp);
    if (write_int(path, f, name, H5T_STD_I16LE, H5T_NATIVE_INT16, 3, d3, g->experts) != 0) return -1;
    if (olmoe_h5_set_attr_str(f, grp, "text", p->text ? p->text : "") != 0 ||
        olmoe_h5_set_attr_str(f, grp, "continuation", continuation ? continuation : "") != 0 ||
        olmoe_h5_set_attr_i32(f, grp, "line", (int32_t)p->line) != 0 ||
        olmoe_h5_set_attr_i32(f, grp, "n_prompt", p->n) != 0 ||
        olmoe_h5_set_attr_i32(f, grp, "n_generated", g->n) != 0 ||
        olmoe_h5_set_attr_i32(f, grp, "stopped_at_eos", g->stopped) != 0 ||
        olmoe_h5_set_attr_f64(f, grp, "mean_k", n ? sum_k / (double)(n * L) : 0.0) != 0 ||
        olmoe_h5_set_attr_f64(f, grp, "seconds", g->seconds) != 0)
        return -1;
    return 0;
}

int olmoe_generate_write(const char *path, const olmoe_generate_meta *m, const olmoe_prompts *ps,
                         const olmoe_generation *gens, char *const *continuations) {
    hid_t f = olmoe_h5_create(path);
    if (f < 0) return -1;
    int rc = write_root(f, m, ps->n);
    for (int i = 0; i < ps->n && rc == 0; i++)
        rc = write_prompt(path, f, i, &ps->items[i], &gens[i], continuations ? continuations[i] : NULL);
    char *why = rc != 0 ? xstrdup(olmoe_error()) : NULL; /* close must not replace it */
    if (olmoe_h5_close(f) != 0 && rc == 0) rc = -1;
    if (why) olmoe_errorf("%s", why);
    free(why);
    if (rc != 0 && strncmp(olmoe_error(), path, strlen(path)) != 0) olmoe_error_prefix("%s", path);
    return rc;
}
