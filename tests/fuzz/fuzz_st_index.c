/* fuzz_st_index.c: bytes as model.safetensors.index.json in a directory
 * holding two valid shards of fuzz_tiny.h's model and its config.json:
 * olmoe_ckpt_open_dir (weight_map parsing, shard names, both-way cross
 * checks) and then olmoe_model_open. Shard names that leave the directory
 * must be refused, so the harness puts a bait file one level up. */
#include "fuzz.h"
#include "fuzz_tiny.h"
#include "model.h"
#include "safetensors.h"

#define ST_INDEX_SPLIT 9 /* tensors [0, 9) in shard 1, the rest in shard 2 */

FUZZ_TARGET(st_index) {
    static char dir[300], index[340];
    if (!dir[0]) {
        char p[340];
        fuzz_tiny_model_dir(dir, sizeof dir, "st-index");
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        fuzz_tiny_write(p, fuzz_tiny_tensors, ST_INDEX_SPLIT);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        fuzz_tiny_write(p, fuzz_tiny_tensors + ST_INDEX_SPLIT, FUZZ_TINY_N_TENSORS - ST_INDEX_SPLIT);
        /* outside the model directory: a valid shard no index may reach */
        fuzz_path(p, sizeof p, "x.safetensors");
        fuzz_tiny_write(p, fuzz_tiny_tensors, FUZZ_TINY_N_TENSORS);
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    }
    fuzz_write_file(index, data, size);

    olmoe_checkpoint *ck;
    if (olmoe_ckpt_open_dir(dir, &ck) == 0) {
        FUZZ_ASSERT(ck->n_files >= 1 && ck->n_files <= 2, "%d files", ck->n_files);
        for (int i = 0; i < ck->n_files; i++)
            FUZZ_ASSERT(!strchr(ck->files[i].label, '/'), "shard '%s' outside the directory",
                        ck->files[i].label);
        for (int i = 0; i < ck->n_tensors; i++) {
            const olmoe_tensor *t = &ck->tensors[i].t;
            fuzz_touch(t->data, t->nbytes);
            if (i) FUZZ_ASSERT(strcmp(ck->tensors[i - 1].name, ck->tensors[i].name) < 0, "order");
        }
        olmoe_ckpt_close(ck);
    } else {
        const char *m = olmoe_error();
        FUZZ_MESSAGE_OK();
        /* the file is the index, a shard the index names (any string), or dir */
        if (!strstr(m, ": ")) fuzz_message_finding("names no file", m);
    }

    olmoe_model mo;
    if (olmoe_model_open(dir, &mo) == 0) {
        FUZZ_ASSERT(olmoe_model_load_f32(&mo) == 0, "load_f32: %s", olmoe_error());
        olmoe_model_close(&mo);
    }
    return 0;
}
