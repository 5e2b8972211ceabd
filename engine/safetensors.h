/* safetensors.h (internal to engine/): memory-mapped safetensors files, one
 * or the shards of model.safetensors.index.json, every header checked.
 *
 *   olmoe_checkpoint *ck;
 *   if (olmoe_ckpt_open_dir("models/x", &ck) != 0) die("%s", olmoe_error());
 *   const olmoe_st_tensor *t = olmoe_ckpt_find(ck, "model.norm.weight");
 *   olmoe_ckpt_close(ck);
 *
 * Invariants after a successful open: every tensor's bytes lie inside its
 * file's data area, do not overlap another's, and match dtype size x shape;
 * names are unique over all files; tensors are sorted by name.
 */
#ifndef OLMOE_SAFETENSORS_H
#define OLMOE_SAFETENSORS_H

#include "model.h"

typedef struct {
    olmoe_tensor t; /* t.name points at name below */
    char *name;
    int file; /* index into the checkpoint's files */
    int used; /* bound by the model (the rest are "unexpected") */
} olmoe_st_tensor;

typedef struct {
    char *path;  /* as opened */
    char *label; /* how messages name it: the file name inside the model dir */
    const unsigned char *map;
    size_t size;
} olmoe_st_file;

struct olmoe_checkpoint {
    char *label; /* the whole checkpoint: "model.safetensors" or the index's name */
    olmoe_st_file *files;
    int n_files;
    olmoe_st_tensor *tensors; /* sorted by name */
    int n_tensors;
};

/* one file (label names it in messages) */
int olmoe_ckpt_open_file(const char *path, const char *label, olmoe_checkpoint **out);
/* DIR/model.safetensors, else the shards of DIR/model.safetensors.index.json */
int olmoe_ckpt_open_dir(const char *dir, olmoe_checkpoint **out);
olmoe_st_tensor *olmoe_ckpt_find(olmoe_checkpoint *ck, const char *name);
/* the label of the file holding t */
const char *olmoe_ckpt_file_label(const olmoe_checkpoint *ck, const olmoe_st_tensor *t);
/* XXH3-128 streamed over every file's bytes in file order */
void olmoe_ckpt_checksum(const olmoe_checkpoint *ck, olmoe_hash *out);
size_t olmoe_ckpt_bytes(const olmoe_checkpoint *ck);
void olmoe_ckpt_close(olmoe_checkpoint *ck);

#endif
