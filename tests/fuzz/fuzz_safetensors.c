/* fuzz_safetensors.c: bytes as a model.safetensors (8-byte header length,
 * JSON header, data), opened twice:
 *   - olmoe_ckpt_open_file: on success every invariant safetensors.h states is
 *     checked independently here (each tensor inside the data area, bytes =
 *     dtype size x shape, no overlaps, names sorted and unique), then every
 *     byte of every tensor is read, so ASan sees any pointer that escapes;
 *   - olmoe_model_open on a directory with fuzz_tiny.h's config.json, so the
 *     binding to the config (names, shapes, layouts, leftovers) and the fp32
 *     conversion run too.
 * Seeds: tests/fuzz/make_seeds.py (the tiny model in F32/BF16/F16, fused). */
#include "fuzz.h"
#include "fuzz_tiny.h"
#include "model.h"
#include "safetensors.h"

static void safetensors_check_ckpt(olmoe_checkpoint *ck) {
    FUZZ_ASSERT(ck->n_files == 1, "%d files", ck->n_files);
    const olmoe_st_file *f = &ck->files[0];
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    const unsigned char *lo = f->map + 8 + hlen, *hi = f->map + f->size;
    for (int i = 0; i < ck->n_tensors; i++) {
        const olmoe_st_tensor *st = &ck->tensors[i];
        const olmoe_tensor *t = &st->t;
        const unsigned char *p = t->data;
        FUZZ_ASSERT(p >= lo && p <= hi && t->nbytes <= (size_t)(hi - p),
                    "tensor '%s' lies outside the data area", st->name);
        unsigned __int128 want = olmoe_st_dtype_size(t->dtype);
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= OLMOE_MAX_DIMS, "ndim %d", t->ndim);
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_ASSERT(t->shape[d] >= 0, "negative dim");
            want *= (uint64_t)t->shape[d];
        }
        FUZZ_ASSERT(want == t->nbytes, "tensor '%s': %zu bytes for its shape", st->name,
                    t->nbytes);
        FUZZ_ASSERT(t->name == st->name, "name pointer");
        if (i) FUZZ_ASSERT(strcmp(ck->tensors[i - 1].name, st->name) < 0, "names not sorted/unique");
        fuzz_touch(p, t->nbytes);
        FUZZ_ASSERT(olmoe_ckpt_find(ck, st->name) == st, "find '%s'", st->name);
    }
    /* no two tensors share a byte (quadratic, but headers here are small) */
    for (int i = 0; i < ck->n_tensors && ck->n_tensors <= 512; i++)
        for (int j = i + 1; j < ck->n_tensors; j++) {
            const olmoe_tensor *a = &ck->tensors[i].t, *b = &ck->tensors[j].t;
            const unsigned char *pa = a->data, *pb = b->data;
            if (!a->nbytes || !b->nbytes) continue;
            FUZZ_ASSERT(pa + a->nbytes <= pb || pb + b->nbytes <= pa, "'%s' and '%s' overlap",
                        ck->tensors[i].name, ck->tensors[j].name);
        }
}

FUZZ_TARGET(safetensors) {
    static char dir[300], file[320];
    if (!dir[0]) {
        fuzz_tiny_model_dir(dir, sizeof dir, "st-model");
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
    }
    fuzz_write_file(file, data, size);

    olmoe_checkpoint *ck;
    if (olmoe_ckpt_open_file(file, "model.safetensors", &ck) == 0) {
        safetensors_check_ckpt(ck);
        olmoe_hash h;
        olmoe_ckpt_checksum(ck, &h);
        FUZZ_ASSERT(olmoe_ckpt_bytes(ck) == size, "bytes %zu of %zu", olmoe_ckpt_bytes(ck), size);
        olmoe_ckpt_close(ck);
    } else {
        FUZZ_ERROR_NAMES("model.safetensors");
    }

    olmoe_model m;
    if (olmoe_model_open(dir, &m) == 0) {
        FUZZ_ASSERT(olmoe_model_load_f32(&m) == 0, "load_f32: %s", olmoe_error());
        /* the fp32 views cover the config's shapes: touch their ends */
        const olmoe_layer_f32 *F = &m.layers_f32[0];
        fuzz_touch(m.embed_f32, 8 * 4 * 4);
        fuzz_touch(m.lm_head_f32, 8 * 4 * 4);
        fuzz_touch(m.final_norm_f32, 4 * 4);
        fuzz_touch(F->wq, 16 * 4), fuzz_touch(F->wk, 8 * 4), fuzz_touch(F->wv, 8 * 4);
        fuzz_touch(F->wo, 16 * 4), fuzz_touch(F->q_norm, 4 * 4), fuzz_touch(F->k_norm, 2 * 4);
        fuzz_touch(F->router, 8 * 4), fuzz_touch(F->input_norm, 4 * 4);
        fuzz_touch(F->post_norm, 4 * 4);
        for (int e = 0; e < 2; e++)
            fuzz_touch(F->gate[e], 8 * 4), fuzz_touch(F->up[e], 8 * 4), fuzz_touch(F->down[e], 8 * 4);
        olmoe_model_close(&m);
    } else {
        const char *msg = olmoe_error();
        FUZZ_MESSAGE_OK();
        if (!strstr(msg, "model.safetensors") && !strstr(msg, dir))
            fuzz_message_finding("names neither the file nor the model", msg);
    }
    return 0;
}
